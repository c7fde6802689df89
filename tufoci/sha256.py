"""SHA-256 on the warm verify path, without loading OpenSSL.

``import hashlib`` loads OpenSSL's libcrypto and builds a constructor for every
algorithm it offers: ~2 ms of a ~20 ms warm ``tufoci verify`` (docs/performance.md).
The interpreter's own SHA-256 (``_sha2`` since Python 3.12, ``_sha256`` in 3.11,
the module hashlib itself falls back to) computes the same function and loads
nothing; what the warm path hashes is a few kilobytes (a timestamp file,
manifests), where the two are equally fast. Everything else uses hashlib.
"""

from __future__ import annotations

try:
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python 3.11
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # an interpreter built without it
        from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, as lowercase hex."""
    return _sha256(data).hexdigest()


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``: ``sha256:`` and the hex."""
    return "sha256:" + _sha256(data).hexdigest()
