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

The record is lines of tab-separated fields, each field escaped with Python's
``unicode_escape`` codec (so no field holds a tab, a newline or a byte outside
ASCII), not JSON: the warm path would pay ~1 ms for the json package's import
alone (docs/performance.md). Format 2; a format-1 (JSON) record is not read, and
the next full refresh writes its successor.
"""

from __future__ import annotations

import os

from tufoci.ownership import ownership_problem
from tufoci.sha256 import sha256_hex
from tufoci.tuf_compat import cached_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import datetime
    from collections.abc import Mapping

    from tufoci.state import Pin

RECORD_FORMAT = 2
_FIRST_LINE = f"tufoci verified record {RECORD_FORMAT}"
MAX_RECORD_BYTES = 4 * 1024 * 1024  # 1,024 names at most (MAX_REMEMBERED_NAMES), ~200 bytes each: far below


def cache_dir(home: str, pin: Pin) -> str:
    """The pin's ngclient cache, keyed by the pinned root and the scope.

    DESIGN §4 keys it by the root alone; two scopes that happen to have
    byte-identical roots (same keys, same second) would then mix their metadata
    and trip each other's rollback checks, so the scope is part of the key.
    """
    digest = sha256_hex(f"{pin.scope}\n{pin.root_sha256}".encode())
    return os.path.join(home, "cache", f"{pin.root_sha256[:16]}-{digest[:16]}")


def file_sha256(path: str) -> str | None:
    """sha256 (hex) of a file's bytes, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return sha256_hex(f.read())
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

    lines = [[_FIRST_LINE], ["pin", pin.scope, pin.root_sha256, pin.metadata],
             ["timestampManifest", timestamp_manifest], ["trustedTimestamp", trusted_timestamp],
             # whole seconds, rounded down: the record ends no later than the role that expires first
             ["expires", str(int(expires.timestamp() // 1))]]
    for name, (digest, length, media_type) in sorted(targets.items()):
        lines.append(["target", name, digest, str(length)] + ([] if media_type is None else [media_type]))
    data = "".join("\t".join(_escape(field) for field in line) + "\n" for line in lines).encode("ascii")
    with cache_lock(cache):
        if file_sha256(cached_file(cache, "timestamp")) != trusted_timestamp:
            return False
        atomic_write(record_path(cache), data, mode=0o600)
    return True


def read_record(cache: str, pin: Pin) -> dict | None:
    """The record of ``pin``'s cache, checked for shape and pin; None when there is none to rely on.

    As a dict: ``pin`` (scope, rootSha256, metadata), ``timestampManifest``, ``trustedTimestamp``, ``expires``
    (seconds since the epoch) and ``targets`` (name → digest, length, mediaType or None).
    """
    path = record_path(cache)
    try:
        with open(path, "rb") as f:
            if ownership_problem(path, os.fstat(f.fileno()), "verify record"):
                return None
            raw = f.read(MAX_RECORD_BYTES + 1)
        record = _parse(raw) if len(raw) <= MAX_RECORD_BYTES else None
    except (OSError, ValueError):  # ValueError: not ASCII, an escape that does not decode, a number too long
        return None
    if record is None or record["pin"] != {"scope": pin.scope, "rootSha256": pin.root_sha256, "metadata": pin.metadata}:
        return None  # damaged, or written under another pin (a root re-pinned, another metadata repository)
    return record


def _escape(field: str) -> str:
    return field.encode("unicode_escape").decode("ascii")


def _unescape(field: str) -> str:
    return field.encode("ascii").decode("unicode_escape")


def _parse(raw: bytes) -> dict | None:
    """A record's bytes as ``read_record`` returns them; None for anything but exactly what ``write_record`` writes.

    Raises:
        ValueError: bytes that are not ASCII, or a field whose escapes do not decode.
    """
    first, *lines = raw.decode("ascii").split("\n")
    if first != _FIRST_LINE or not lines or lines.pop() != "":
        return None
    record: dict = {"targets": {}}
    for line in lines:
        key, *fields = [_unescape(field) for field in line.split("\t")]
        if key == "target" and len(fields) in (3, 4):
            name, digest, length, *media_type = fields
            if name in record["targets"] or not _is_digest(digest) or not _is_count(length):
                return None
            record["targets"][name] = {"digest": digest, "length": int(length),
                                       "mediaType": media_type[0] if media_type else None}
        elif key == "pin" and len(fields) == 3 and key not in record:
            record["pin"] = dict(zip(("scope", "rootSha256", "metadata"), fields, strict=True))
        elif key in ("timestampManifest", "trustedTimestamp") and len(fields) == 1 and key not in record:
            record[key] = fields[0]
        elif key == "expires" and len(fields) == 1 and key not in record and _is_count(fields[0]):
            record[key] = int(fields[0])
        else:
            return None
    if not all(key in record for key in ("pin", "timestampManifest", "trustedTimestamp", "expires")):
        return None
    return record


def _is_digest(text: str) -> bool:
    hex_part = text.removeprefix("sha256:")
    return len(text) == 71 and len(hex_part) == 64 and all(c in "0123456789abcdef" for c in hex_part)


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit()


def target_names(cache: str, pin: Pin) -> list[str]:
    """The names the last full refresh resolved, for the next one to resolve again (never their answers)."""
    record = read_record(cache, pin)
    return sorted(record["targets"]) if record else []
