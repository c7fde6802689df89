"""Verify a batch, one outcome each: python verify_batch.py SCOPE ROOT_SHA256 CACHE_DIR REFERENCE..."""
import sys

from tufoci import Verifier, fetch_root_by_sha256, make_pin

scope, root_sha256, cache, *references = sys.argv[1:]
root = fetch_root_by_sha256(scope, root_sha256)  # the registry says where the root is, the hash whether to trust it
pin = make_pin(scope, root, directory=cache, expected_sha256=root_sha256)
with Verifier(pins=[pin], cache=cache) as verifier:
    outcomes = verifier.verify(references)  # never raises for one reference: each outcome has an image or an error
for o in outcomes:
    print(f"{o.reference}: deploy {o.image.pinned}" if o.image else f"{o.reference}: refused: {o.error}")
sys.exit(next((o.error.exit_code for o in outcomes if o.error), 0))
