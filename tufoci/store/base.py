"""The storage interface: one OCI repository, whatever holds it.

Two real backends implement it (``registry`` over the distribution API,
``layout`` on an OCI image-layout directory). Everything above this interface
is backend-agnostic, so the hermetic layout backend exercises the same code as
a registry. Implementations never trust what the store says about content:
manifests and blobs are returned as raw bytes, read with a cap, and their
digest is computed by the caller's side of this interface (``Manifest``).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tufoci.errors import ContentMismatchError, TooLargeError
from tufoci.layout_spec import MAX_MANIFEST_BYTES, sha256_digest


@dataclass(frozen=True)
class Manifest:
    """Raw manifest bytes plus the media type the store announced."""

    data: bytes
    content_type: str | None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.data))


class Readable(Protocol):
    """What a blob's source is to the reader that checks it: a file, or an unread HTTP response."""

    def read(self, size: int = -1, /) -> bytes: ...


class VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through and refuses bytes that are not ``digest``.

    Reading past ``size`` or reaching the end with a different digest raises, so
    a copy never completes with content other than what was asked for.
    """

    def __init__(self, source: Readable, digest: str, size: int, what: str):
        self._source, self._digest, self._size, self._what = source, digest, size, what
        self._hash = hashlib.sha256()
        self._seen = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._source.read(min(len(buffer), self._size - self._seen + 1))
        if not chunk:
            if self._seen != self._size or "sha256:" + self._hash.hexdigest() != self._digest:
                raise ContentMismatchError(f"{self._what}: the bytes served do not match {self._digest}")
            return 0
        self._seen += len(chunk)
        if self._seen > self._size:
            raise TooLargeError(f"{self._what}: more than the {self._size} bytes announced")
        self._hash.update(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


class RepositoryStore(abc.ABC):
    """One OCI repository: manifests by tag or digest, blobs by digest."""

    @abc.abstractmethod
    def get_manifest(self, reference: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        """Fetch a manifest by tag or digest; ``NotFoundError`` if absent.

        When ``reference`` is a digest the bytes are checked against it.
        """

    def get_manifests(self, references: list[str]) -> list[Manifest]:
        """``get_manifest`` of each reference, in order; the first failure raises.

        For resolving many tags at once: the registry backend overrides this with
        a cheaper transport, a directory needs nothing better than a loop.
        """
        return [self.get_manifest(reference) for reference in references]

    @abc.abstractmethod
    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        """Store a manifest under ``tag``; returns its digest."""

    def replace_manifest(self, tag: str, data: bytes, media_type: str, expected: str | None) -> str | None:
        """Move ``tag`` to ``data`` only if it currently points at ``expected``
        (None: the tag must not exist). Returns the new digest, or None when the
        tag had moved and nothing was written.

        The distribution API has no compare-and-swap, so this default is a
        re-read then a write: a small race window remains (docs/layout.md §4).
        Backends that can do better (the layout backend, under its lock) do.
        """
        from tufoci.errors import NotFoundError

        try:
            current: str | None = self.get_manifest(tag).digest
        except NotFoundError:
            current = None
        if current != expected:
            return None
        return self.put_manifest(tag, data, media_type)

    @abc.abstractmethod
    def get_blob(self, digest: str, *, max_bytes: int) -> bytes:
        """Fetch a blob, verifying it hashes to ``digest``."""

    @abc.abstractmethod
    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present (lets uploads skip what is there)."""

    @abc.abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store a blob if it is not present yet; returns its digest."""

    def put_blobs(self, blobs: list[bytes]) -> list[str]:
        """``put_blob`` of each; the registry backend uploads them side by side."""
        return [self.put_blob(data) for data in blobs]

    @abc.abstractmethod
    def list_tags(self) -> list[str]:
        """Every tag in the repository (empty when the repository is unknown)."""

    @contextlib.contextmanager
    def open_blob(self, digest: str, size: int) -> Iterator[Readable]:
        """A stream of the blob's bytes, verified against ``digest`` and ``size`` as it is read.

        Backends override this to stream; the default reads the blob whole.
        """
        yield io.BytesIO(self.get_blob(digest, max_bytes=size))

    def put_blob_from(self, digest: str, size: int, stream: Readable) -> None:
        """Store a blob read from ``stream`` unless present (backends stream; the default buffers)."""
        if not self.has_blob(digest):
            data = stream.read(size + 1)
            if len(data) != size or sha256_digest(data) != digest:
                raise ContentMismatchError(f"blob {digest}: the bytes read do not match")
            self.put_blob(data)

    def mount_blob(self, digest: str, source: RepositoryStore) -> bool:
        """Make ``source``'s blob available here without moving bytes, when the backends allow."""
        return False

    def close(self) -> None:  # noqa: B027 - a concrete no-op on purpose: stores without connections inherit it
        """Release connections; the default has none."""
