"""Pushing metadata versions in the order that keeps every publish atomic for readers.

Layout §4: (1) upload every blob, (2) write the immutable versioned manifests,
(3) re-read ``timestamp`` and refuse to go on if someone else moved it since we
read it, (4) move ``timestamp``. Until (4) readers keep seeing the previous
timestamp, hence the previous consistent state; a publish that dies anywhere
before (4) changes nothing a client trusts, and running it again completes it.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from tufoci.errors import ConcurrentPublishError, NotFoundError
from tufoci.layout_spec import (
    EMPTY_CONFIG,
    MANIFEST_MEDIA_TYPE,
    TIMESTAMP_TAG,
    build_metadata_manifest,
    metadata_tag,
)
from tufoci.store.base import RepositoryStore

CRASH_ENV = "TUFOCI_TEST_CRASH_AT"
INTERRUPT_ENV = "TUFOCI_TEST_INTERRUPT_AT"  # the same steps, with Ctrl-C (SIGINT) instead of SIGKILL
STEPS = ("blobs", "manifests", "timestamp-check", "timestamp")  # before each, nothing is live yet


@dataclass(frozen=True)
class MetadataFile:
    role: str
    version: int
    data: bytes


def _crash_point(step: str) -> None:
    """Test hook: SIGKILL ourselves before ``step`` when TUFOCI_TEST_CRASH_AT names it (SIGINT for
    TUFOCI_TEST_INTERRUPT_AT)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(INTERRUPT_ENV) == step:
        os.kill(os.getpid(), signal.SIGINT)


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
) -> str:
    """Publish ``files`` then ``timestamp``; returns the new timestamp manifest digest.

    ``expected_timestamp`` is the digest of the ``timestamp`` manifest this
    publish started from (None for a new repository). ``snapshot_data`` (the
    snapshot the timestamp lists) rides on the timestamp manifest as a hint;
    by default the snapshot among ``files``.
    """
    if snapshot_data is None:
        snapshot_data = next((f.data for f in files if f.role == "snapshot"), None)
    _check_unchanged(store, expected_timestamp)
    _crash_point("blobs")
    store.put_blobs([EMPTY_CONFIG, *(item.data for item in [*files, timestamp])])
    _crash_point("manifests")
    # roots first: a reader that sees a new snapshot may need the new root.
    # A tag already at one of these versions is an orphan of a publish that
    # never moved the timestamp (we start from the live versions): overwrite it.
    for item in sorted(files, key=lambda f: (f.role != "root", f.version)):
        manifest = build_metadata_manifest(item.role, item.version, item.data)
        store.put_manifest(metadata_tag(item.role, item.version), manifest, MANIFEST_MEDIA_TYPE)
    _crash_point("timestamp-check")
    _check_unchanged(store, expected_timestamp)
    _crash_point("timestamp")
    manifest = build_metadata_manifest(TIMESTAMP_TAG, timestamp.version, timestamp.data, root_version=root_version,
                                       snapshot_data=snapshot_data)
    digest = store.replace_manifest(TIMESTAMP_TAG, manifest, MANIFEST_MEDIA_TYPE, expected_timestamp)
    # layout §4: refuse to overwrite a timestamp this publish did not start
    # from, and make sure ours is what stays live
    if digest is None or current_timestamp_digest(store) != digest:
        raise ConcurrentPublishError(_CONCURRENT)
    _crash_point("after-timestamp")
    return digest


_CONCURRENT = (
    "concurrent publish: someone else moved the timestamp while this publish ran; nothing of this publish "
    "is live and the staged changes are kept — run the command again to publish on top of the new state"
)


def _check_unchanged(store: RepositoryStore, expected: str | None) -> None:
    if current_timestamp_digest(store) != expected:
        raise ConcurrentPublishError(_CONCURRENT)
