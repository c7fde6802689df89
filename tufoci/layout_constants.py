"""The names and caps of the tufoci OCI layout that the warm verify needs (docs/layout.md), nothing else.

They live here, not in tufoci/layout_spec.py (which re-exports them), so that the warm
``tufoci verify`` (client/fast_verify.py) can use them without importing the layout's parsers
and value classes (``dataclasses``, regular expressions: several milliseconds of start-up).
"""

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MEDIA_TYPES = (MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)

TIMESTAMP_TAG = "timestamp"  # layout §3: the only moving pointer

# Caps on what is read from a store (DESIGN §3: cap every read).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# a metadata manifest holds two descriptors and (timestamp only) the inline
# timestamp, whose own limit in python-tuf is 16 KiB
MAX_METADATA_MANIFEST_BYTES = 128 * 1024
