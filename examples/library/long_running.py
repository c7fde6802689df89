"""A long-running verifier (a webhook's): python long_running.py SCOPE ROOT_FILE CACHE_DIR SECONDS < REFERENCES"""
import sys

from tufoci import RegistryOptions, Verifier, make_pin

scope, root_file, cache, seconds = sys.argv[1:5]
with open(root_file, "rb") as f:
    pin = make_pin(scope, f.read(), directory=cache)
# freshness: answers stand for up to SECONDS without asking the registry (never past an expiry); 0 asks every time
with Verifier(pins=[pin], cache=cache, freshness=float(seconds), registry=RegistryOptions(read_timeout=5.0)) as v:
    for line in sys.stdin:  # one reference per line, as requests arrive
        (o,) = v.verify([line.strip()], check_registry=False)  # the signed digest; no tag check at the registry
        print(o.image.pinned if o.image else f"refused: {o.error}", flush=True)
