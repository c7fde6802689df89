"""Verify one reference, raising on failure: python verify_one.py SCOPE ROOT_FILE CACHE_DIR REFERENCE"""
import sys

from tufoci import TufociError, Verifier, make_pin

scope, root_file, cache, reference = sys.argv[1:5]
with open(root_file, "rb") as f:  # the root, handed out of band by the scope's maintainers
    pin = make_pin(scope, f.read(), directory=cache)
try:
    with Verifier(pins=[pin], cache=cache) as verifier:
        print(verifier.verify_one(reference).pinned)  # deploy this: repository@sha256:…
except TufociError as e:  # NotSignedError, DigestMismatchError, RegistryError …: each has its exit code
    sys.exit(f"{reference}: {e} (exit {e.exit_code})")
