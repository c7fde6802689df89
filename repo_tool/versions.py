"""Building the next version of each role with python-tuf's Metadata API.

A publish bumps a chain: changed targets (or delegated roles) → snapshot →
timestamp. Snapshot and timestamp always record ``length`` and ``hashes`` of
what they list: readers then fetch every file after the timestamp by blob
digest (layout §5), and mix-and-match is caught by hash, not only by version.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from tufoci.layout_spec import meta_key
from tufoci.repo_tool.expiry import expiry_for

_SERIALIZER = JSONSerializer(compact=True)


def to_bytes(metadata: Metadata) -> bytes:
    """Compact canonical-ordered JSON: the exact bytes that are pushed and hashed."""
    return metadata.to_bytes(_SERIALIZER)


def meta_file(version: int, data: bytes) -> MetaFile:
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


def bump(metadata: Metadata, periods: dict[str, str], now: datetime.datetime) -> None:
    """Next version: version + 1, fresh expiry, no signatures (they covered the old bytes)."""
    metadata.signed.version += 1
    metadata.signed.expires = expiry_for(periods, metadata.signed.type, now)
    metadata.signatures.clear()


def next_snapshot(
    current: Metadata[Snapshot],
    changed: dict[str, tuple[int, bytes]],
    periods: dict[str, str],
    now: datetime.datetime,
    *,
    without_hashes: Callable[[str], bool] = lambda role: False,
) -> Metadata[Snapshot]:
    """The next snapshot listing ``changed`` roles (role -> (version, bytes)).

    ``without_hashes`` names roles listed by version and length only: hashed
    bins, where a snapshot of a thousand 64-hex hashes would outweigh the one bin
    a client needs (they are then fetched by tag, one request more; versions
    still prevent mix-and-match).
    """
    snapshot = Metadata[Snapshot].from_bytes(to_bytes(current))
    for role, (version, data) in changed.items():
        meta = meta_file(version, data)
        if without_hashes(role):
            meta.hashes = None
        snapshot.signed.meta[meta_key(role)] = meta
    bump(snapshot, periods, now)
    return snapshot


def next_timestamp(
    current: Metadata[Timestamp],
    snapshot_version: int,
    snapshot_data: bytes,
    periods: dict[str, str],
    now: datetime.datetime,
) -> Metadata[Timestamp]:
    timestamp = Metadata[Timestamp].from_bytes(to_bytes(current))
    timestamp.signed.snapshot_meta = meta_file(snapshot_version, snapshot_data)
    bump(timestamp, periods, now)
    return timestamp
