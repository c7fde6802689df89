"""Fault injection for the publish crash tests: a store wrapper that stops the process before a publish step.

The production publish path (repo_tool/push.py) knows nothing of tests. The
steps of layout §4 are recognised here from the store calls a publish makes,
in order, on its metadata store:

    blobs            before the first ``put_blobs``/``put_blob``
    manifests        before the first ``put_manifest`` (the versioned tags)
    timestamp-check  before the re-read of ``timestamp`` that follows them
    timestamp        before ``replace_manifest("timestamp", …)``
    after-timestamp  after the read of ``timestamp`` that confirms the move

A test in the same process installs a callback with ``install``; a test that
needs the process to die runs the real CLI through this module instead of the
console script:

    python -m tests.support.crash kill|interrupt STEP [tufoci arguments…]

which installs the wrapper and then calls ``tufoci.entry.main`` exactly as the
``tufoci`` script does; ``kill`` sends SIGKILL to the process before STEP,
``interrupt`` SIGINT (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import tufoci.store
from tufoci.layout_spec import MAX_MANIFEST_BYTES, TIMESTAMP_TAG
from tufoci.store.base import Manifest, Readable, RepositoryStore

STEPS = ("blobs", "manifests", "timestamp-check", "timestamp")  # before each, nothing is live yet
AFTER_TIMESTAMP = "after-timestamp"  # the new state is live
SIGNALS = {"kill": signal.SIGKILL, "interrupt": signal.SIGINT}


class Trigger:
    """Calls ``on_step(step)`` the first time any store reaches publish step ``step``, never again (a callback
    may itself publish)."""

    def __init__(self, step: str, on_step: Callable[[str], None]):
        if step not in (*STEPS, AFTER_TIMESTAMP):
            raise ValueError(f"unknown publish step {step!r}")
        self._step, self._on_step = step, on_step

    def reached(self, step: str) -> None:
        if step == self._step:
            self._step = ""
            self._on_step(step)


class SteppingStore(RepositoryStore):
    """``inner``, telling ``trigger`` which publish step each call is about to take."""

    def __init__(self, inner: RepositoryStore, trigger: Trigger):
        self._inner, self._reached = inner, trigger.reached
        self._wrote_manifest = self._replaced_timestamp = False

    def __str__(self) -> str:
        return str(self._inner)

    def __getattr__(self, name: str) -> Any:  # anything a backend offers beyond the interface
        return getattr(self._inner, name)

    def get_manifest(self, reference: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        if reference == TIMESTAMP_TAG and self._wrote_manifest and not self._replaced_timestamp:
            self._reached("timestamp-check")
        manifest = self._inner.get_manifest(reference, max_bytes=max_bytes)
        if reference == TIMESTAMP_TAG and self._replaced_timestamp:
            self._reached(AFTER_TIMESTAMP)
        return manifest

    def get_manifests(self, references: list[str]) -> list[Manifest]:
        return self._inner.get_manifests(references)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        self._reached("manifests")
        self._wrote_manifest = True
        return self._inner.put_manifest(tag, data, media_type)

    def replace_manifest(self, tag: str, data: bytes, media_type: str, expected: str | None) -> str | None:
        if tag == TIMESTAMP_TAG:
            self._reached("timestamp")
        digest = self._inner.replace_manifest(tag, data, media_type, expected)
        self._replaced_timestamp = self._replaced_timestamp or tag == TIMESTAMP_TAG
        return digest

    def get_blob(self, digest: str, *, max_bytes: int) -> bytes:
        return self._inner.get_blob(digest, max_bytes=max_bytes)

    def has_blob(self, digest: str) -> bool:
        return self._inner.has_blob(digest)

    def put_blob(self, data: bytes) -> str:
        self._reached("blobs")
        return self._inner.put_blob(data)

    def put_blobs(self, blobs: list[bytes]) -> list[str]:
        self._reached("blobs")
        return self._inner.put_blobs(blobs)

    def list_tags(self) -> list[str]:
        return self._inner.list_tags()

    @contextlib.contextmanager
    def open_blob(self, digest: str, size: int) -> Iterator[Readable]:
        with self._inner.open_blob(digest, size) as stream:
            yield stream

    def put_blob_from(self, digest: str, size: int, stream: Readable) -> None:
        self._reached("blobs")
        self._inner.put_blob_from(digest, size, stream)

    def mount_blob(self, digest: str, source: RepositoryStore) -> bool:
        return self._inner.mount_blob(digest, source)

    def close(self) -> None:
        self._inner.close()


def install(step: str, on_step: Callable[[str], None],
            patch: Callable[[object, str, object], None] = setattr) -> None:
    """Make every store tufoci opens from now on a ``SteppingStore``: ``on_step`` runs before ``step``.

    ``open_repository`` is replaced in ``tufoci.store`` and in every loaded tufoci
    module that imported it by name; ``patch`` is ``setattr`` or a pytest
    ``monkeypatch.setattr`` (undone after the test).
    """
    trigger, original = Trigger(step, on_step), tufoci.store.open_repository

    def open_repository(*args: Any, **kwargs: Any) -> RepositoryStore:
        return SteppingStore(original(*args, **kwargs), trigger)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("tufoci") \
                and getattr(module, "open_repository", None) is original:
            patch(module, "open_repository", open_repository)


def main(argv: list[str]) -> None:
    """``kill|interrupt STEP ARGS…``: run ``tufoci ARGS…``, signalling the process before publish step STEP."""
    how, step, *args = argv
    sig = SIGNALS[how]
    # Ctrl-C raises KeyboardInterrupt even when this runs in a background job (nohup, `&`), which starts it
    # with SIGINT ignored: Python would keep ignoring it, and the publish would go on as if never interrupted
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import tufoci.cli  # noqa: F401  (loaded first, so that install() finds every module that opens stores)

    install(step, lambda _step: os.kill(os.getpid(), sig))
    sys.argv = ["tufoci", *args]
    from tufoci.entry import main as tufoci_main

    tufoci_main()


if __name__ == "__main__":
    main(sys.argv[1:])
