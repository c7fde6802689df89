"""Pushing metadata versions in the order that keeps every publish atomic for readers.

Layout §4: (1) upload every blob, (2) write the immutable versioned manifests,
(3) re-read ``timestamp`` and refuse to go on if someone else moved it since we
read it, (4) move ``timestamp``. Until (4) readers keep seeing the previous
timestamp, hence the previous consistent state; a publish that dies anywhere
before (4) changes nothing a client trusts, and running it again completes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from tufoci.errors import ConcurrentPublishError, NotFoundError, TufociError
from tufoci.layout_spec import (
    EMPTY_CONFIG,
    MANIFEST_MEDIA_TYPE,
    TIMESTAMP_TAG,
    build_metadata_manifest,
    meta_key,
    metadata_tag,
    parse_metadata_manifest,
)
from tufoci.store.base import RepositoryStore


@dataclass(frozen=True)
class MetadataFile:
    role: str
    version: int
    data: bytes


def current_timestamp_digest(store: RepositoryStore) -> str | None:
    try:
        return store.get_manifest(TIMESTAMP_TAG).digest
    except NotFoundError:
        return None


def push_metadata(
    store: RepositoryStore,
    files: list[MetadataFile],
    timestamp: MetadataFile,
    *,
    root_version: int,
    expected_timestamp: str | None,
    snapshot_data: bytes | None = None,
    settle: float = 0.0,
) -> str:
    """Publish ``files`` then ``timestamp``; returns the new timestamp manifest digest.

    ``settle`` (seconds) closes most of the re-read-then-write window the
    distribution API leaves (layout §4): after moving ``timestamp``, wait and
    read it again; a racer who checked before our write and wrote after it has
    overwritten us by then, so exactly one of two racing publishers reports
    success (the online services use it: a proposal is promoted once). A
    timestamp written since that still lists our snapshot (a refresh built on
    our state) leaves our publish live.

    Raises:
        ConcurrentPublishError: ``timestamp`` is not (or no longer) the one this publish started from or wrote.

    ``expected_timestamp`` is the digest of the ``timestamp`` manifest this
    publish started from (None for a new repository). ``snapshot_data`` (the
    snapshot the timestamp lists) rides on the timestamp manifest as a hint;
    by default the snapshot among ``files``.
    """
    if snapshot_data is None:
        snapshot_data = next((f.data for f in files if f.role == "snapshot"), None)
    _check_unchanged(store, expected_timestamp)
    store.put_blobs([EMPTY_CONFIG, *(item.data for item in [*files, timestamp])])
    # roots first: a reader that sees a new snapshot may need the new root.
    # A tag already at one of these versions is an orphan of a publish that
    # never moved the timestamp (we start from the live versions): overwrite it.
    for item in sorted(files, key=lambda f: (f.role != "root", f.version)):
        manifest = build_metadata_manifest(item.role, item.version, item.data)
        store.put_manifest(metadata_tag(item.role, item.version), manifest, MANIFEST_MEDIA_TYPE)
    _check_unchanged(store, expected_timestamp)
    manifest = build_metadata_manifest(TIMESTAMP_TAG, timestamp.version, timestamp.data, root_version=root_version,
                                       snapshot_data=snapshot_data)
    digest = store.replace_manifest(TIMESTAMP_TAG, manifest, MANIFEST_MEDIA_TYPE, expected_timestamp)
    # layout §4: refuse to overwrite a timestamp this publish did not start
    # from, and make sure ours is what stays live
    if digest is None or current_timestamp_digest(store) != digest:
        raise ConcurrentPublishError(_CONCURRENT)
    if settle:
        time.sleep(settle)
        if not _still_live(store, digest, snapshot_data):
            raise ConcurrentPublishError(_CONCURRENT)
    return digest


def _still_live(store: RepositoryStore, digest: str, snapshot_data: bytes | None) -> bool:
    """Whether ``timestamp`` is still ours, or a later one listing our snapshot (built on our state).

    Only decides what a publisher reports (nothing here is trusted by anyone:
    clients verify every byte); unreadable means "not ours".
    """
    try:
        current = store.get_manifest(TIMESTAMP_TAG)
        if current.digest == digest:
            return True
        if snapshot_data is None:
            return False
        inline = parse_metadata_manifest(current.data).inline_data
        listed = json.loads(inline)["signed"]["meta"][meta_key("snapshot")]["hashes"]["sha256"] if inline else None
    except (TufociError, ValueError, KeyError, TypeError):
        return False
    return listed == hashlib.sha256(snapshot_data).hexdigest()


_CONCURRENT = (
    "concurrent publish: someone else moved the timestamp while this publish ran; nothing of this publish "
    "is live and the staged changes are kept — run the command again to publish on top of the new state"
)


def _check_unchanged(store: RepositoryStore, expected: str | None) -> None:
    if current_timestamp_digest(store) != expected:
        raise ConcurrentPublishError(_CONCURRENT)
