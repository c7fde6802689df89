"""The record a full refresh leaves for the next ``tufoci verify`` process (standard library only).

``Verifier`` answers again, without re-verifying, when the registry serves the
timestamp manifest (same digest) its last full refresh verified (client/verify.py,
``Verifier._unchanged``). The record carries that across processes: after each
successful full refresh it holds, for one trust pin (scope, root sha256, metadata
repository), the digest of the timestamp manifest that refresh verified, the
sha256 of the timestamp it left in the trusted cache, the earliest expiry among
the roles it trusted, and the targets it resolved (digest, length, media type).

It is written only by a successful full refresh, under the cache's lock, after
that refresh committed, and only while the cache still holds the timestamp that
refresh verified; atomically, mode 0600, beside the cache in the owner-checked
``$TUFOCI_HOME/cache`` (the same trust as the cache files themselves). Reading
it (``read_record``) is all or nothing: any doubt — unreadable, another shape,
another pin, another owner, mode writable by others — and it is not there.
docs/security.md ("The warm verify record") says what it trusts.
"""

from __future__ import annotations

import hashlib
import json
import os

from tufoci.ownership import ownership_problem
from tufoci.tuf_compat import cached_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping

    from tufoci.state import Pin

RECORD_FORMAT = 1
MAX_RECORD_BYTES = 4 * 1024 * 1024  # 1,024 names at most (MAX_REMEMBERED_NAMES), ~200 bytes each: far below


def cache_dir(home: str, pin: Pin) -> str:
    """The pin's ngclient cache, keyed by the pinned root and the scope.

    DESIGN §4 keys it by the root alone; two scopes that happen to have
    byte-identical roots (same keys, same second) would then mix their metadata
    and trip each other's rollback checks, so the scope is part of the key.
    """
    digest = hashlib.sha256(f"{pin.scope}\n{pin.root_sha256}".encode()).hexdigest()
    return os.path.join(home, "cache", f"{pin.root_sha256[:16]}-{digest[:16]}")


def file_sha256(path: str) -> str | None:
    """sha256 (hex) of a file's bytes, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def record_path(cache: str) -> str:
    """Beside the cache (hidden, like its lock), not in it: the cache holds TUF metadata only."""
    return os.path.join(os.path.dirname(cache), f".{os.path.basename(cache)}.verified")


def write_record(
    cache: str,
    pin: Pin,
    *,
    timestamp_manifest: str,
    trusted_timestamp: str,
    expires: datetime.datetime,
    targets: Mapping[str, tuple[str, int, str | None]],
) -> bool:
    """Record what a full refresh of ``pin`` just verified and committed; False when the cache has moved on.

    ``targets``: target name → (digest, length, media type). Called after the
    refresh committed its copy: the cache must still hold ``trusted_timestamp``
    (another process's refresh may have committed a newer one since, and its own
    record is the one that counts).

    Raises:
        TimedOutError: the cache lock was not free within the command's budget.
        OSError: the record could not be written.
    """
    from tufoci.atomic_file import atomic_write
    from tufoci.client.refresh import cache_lock  # the full path has python-tuf loaded already

    data = json.dumps({
        "format": RECORD_FORMAT,
        "pin": {"scope": pin.scope, "rootSha256": pin.root_sha256, "metadata": pin.metadata},
        "timestampManifest": timestamp_manifest,
        "trustedTimestamp": trusted_timestamp,
        "expires": expires.timestamp(),
        "targets": {name: {"digest": digest, "length": length, "mediaType": media_type}
                    for name, (digest, length, media_type) in sorted(targets.items())},
    }, sort_keys=True).encode()
    with cache_lock(cache):
        if file_sha256(cached_file(cache, "timestamp")) != trusted_timestamp:
            return False
        atomic_write(record_path(cache), data, mode=0o600)
    return True


def read_record(cache: str, pin: Pin) -> dict | None:
    """The record of ``pin``'s cache, checked for shape and pin; None when there is none to rely on."""
    path = record_path(cache)
    try:
        with open(path, "rb") as f:
            if ownership_problem(path, os.fstat(f.fileno()), "verify record"):
                return None
            raw = f.read(MAX_RECORD_BYTES + 1)
        record = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
    if len(raw) > MAX_RECORD_BYTES or not _well_formed(record):
        return None
    if record["pin"] != {"scope": pin.scope, "rootSha256": pin.root_sha256, "metadata": pin.metadata}:
        return None  # written under another pin (a root re-pinned, another metadata repository)
    return record


def _well_formed(record: object) -> bool:
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return False
    pin, targets = record.get("pin"), record.get("targets")
    if not isinstance(pin, dict) or not all(isinstance(pin.get(k), str) for k in ("scope", "rootSha256", "metadata")):
        return False
    if not all(isinstance(record.get(k), str) for k in ("timestampManifest", "trustedTimestamp")):
        return False
    if not isinstance(record.get("expires"), (int, float)) or isinstance(record["expires"], bool):
        return False
    if not isinstance(targets, dict):
        return False
    for name, info in targets.items():
        if not (isinstance(name, str) and isinstance(info, dict) and isinstance(info.get("digest"), str)
                and info["digest"].startswith("sha256:") and len(info["digest"]) == 71
                and isinstance(info.get("length"), int) and not isinstance(info["length"], bool)
                and (info.get("mediaType") is None or isinstance(info["mediaType"], str))):
            return False
    return True


def target_names(cache: str, pin: Pin) -> list[str]:
    """The names the last full refresh resolved, for the next one to resolve again (never their answers)."""
    record = read_record(cache, pin)
    return sorted(record["targets"]) if record else []
