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
from dataclasses import dataclass, field

from tufoci.layout_spec import MAX_MANIFEST_BYTES, sha256_digest


@dataclass(frozen=True)
class Manifest:
    """Raw manifest bytes plus the media type the store announced."""

    data: bytes
    content_type: str | None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.data))


class RepositoryStore(abc.ABC):
    """One OCI repository: manifests by tag or digest, blobs by digest."""

    @abc.abstractmethod
    def get_manifest(self, reference: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        """Fetch a manifest by tag or digest; ``NotFoundError`` if absent.

        When ``reference`` is a digest the bytes are checked against it.
        """

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

    @abc.abstractmethod
    def list_tags(self) -> list[str]:
        """Every tag in the repository (empty when the repository is unknown)."""

    def close(self) -> None:
        """Release connections; the default has none."""
