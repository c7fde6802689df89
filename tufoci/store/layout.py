"""OCI image-layout directories: the embedded, serverless backend.

One directory is one repository, the way ``skopeo`` treats ``oci:DIR:TAG``:
``oci-layout``, ``index.json`` (tags are the ``org.opencontainers.image.ref.name``
annotation of its descriptors) and ``blobs/sha256/<hex>``. Writes are atomic
(temp file + ``os.replace``) and ``index.json`` updates are serialised with an
advisory lock, so a crash never leaves a half-written file and two writers never
lose each other's tags.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator

from tufoci.atomic_file import atomic_write
from tufoci.errors import ContentMismatchError, NotFoundError, RegistryError, TooLargeError
from tufoci.layout_spec import MAX_MANIFEST_BYTES, sha256_digest
from tufoci.reference import DIGEST_RE, TAG_RE
from tufoci.store.base import Manifest, Readable, RepositoryStore, VerifyingReader

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_ANY = object()  # replace_manifest: write whatever the tag points at now
_LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'


class LayoutRepository(RepositoryStore):
    """An OCI image-layout directory holding one repository."""

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"LayoutRepository({self.path!r})"

    def __str__(self) -> str:  # the name users know, for messages (issue 18: no Python internals)
        return f"oci:{self.path}"

    # -- helpers -----------------------------------------------------------
    def _blob_path(self, digest: str) -> str:
        # layout §6: only well-formed digests become paths (no traversal)
        if not DIGEST_RE.fullmatch(digest):
            raise RegistryError(f"refusing malformed digest {digest!r}")
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])

    def _read_index(self) -> dict:
        try:
            raw = self._read_regular(os.path.join(self.path, "index.json"), MAX_MANIFEST_BYTES, "index.json")
        except FileNotFoundError:
            return {"schemaVersion": 2, "manifests": []}
        if len(raw) > MAX_MANIFEST_BYTES:
            raise TooLargeError(f"{self.path}/index.json is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            index = json.loads(raw)
            if not isinstance(index.get("manifests", []), list):
                raise ValueError("manifests is not a list")
            for descriptor in index.get("manifests", []):
                if not isinstance(descriptor, dict) or not isinstance(descriptor.get("annotations") or {}, dict):
                    raise ValueError("a descriptor or its annotations is not an object")
        except (ValueError, AttributeError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            raise RegistryError(f"corrupt OCI layout index {self.path}/index.json: {e}") from e
        index.setdefault("manifests", [])
        return index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_layout()
        with open(os.path.join(self.path, ".tufoci.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _ensure_layout(self) -> None:
        try:
            os.makedirs(os.path.join(self.path, "blobs", "sha256"), exist_ok=True)
            marker = os.path.join(self.path, "oci-layout")
            if not os.path.exists(marker):
                atomic_write(marker, _LAYOUT_FILE)
        except OSError as e:
            raise RegistryError(f"cannot write OCI layout at {self.path}: {e.strerror}") from e

    def _open_regular(self, path: str, what: str) -> int:
        """A read-only descriptor of ``path`` inside the layout, only when it is a regular file.

        layout §6: a layout is data someone handed us. A FIFO would block the read forever, a device
        or a directory is no blob, and a symbolic link could point anywhere on this machine: none is
        followed or read. ``O_NONBLOCK`` lets the open of a FIFO return at once, so fstat can refuse it.

        Raises:
            FileNotFoundError: nothing is there (the caller says what that means).
            RegistryError: anything but a regular file, a path leaving the layout, or an unreadable file.
        """
        root = os.path.realpath(self.path)
        if os.path.commonpath([root, os.path.realpath(os.path.dirname(path))]) != root:
            raise RegistryError(f"{what} in {self.path} lies outside the layout (a symbolic link): refusing it")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as e:
            if os.path.islink(path):
                raise RegistryError(f"{what} in {self.path} is a symbolic link: refusing to follow it") from e
            raise RegistryError(f"cannot read {what} in {self.path}: {e.strerror}") from e
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RegistryError(f"{what} in {self.path} is not a regular file: refusing to read it")
        return fd

    def _read_regular(self, path: str, max_bytes: int, what: str) -> bytes:
        """At most ``max_bytes + 1`` bytes of a regular file in the layout (``_open_regular``)."""
        fd = self._open_regular(path, what)
        try:
            chunks, total = [], 0
            while total <= max_bytes and (chunk := os.read(fd, min(max_bytes + 1 - total, 1024 * 1024))):
                chunks.append(chunk)
                total += len(chunk)
            return b"".join(chunks)
        except OSError as e:
            raise RegistryError(f"cannot read {what} in {self.path}: {e.strerror}") from e
        finally:
            os.close(fd)

    def _read_blob_file(self, digest: str, max_bytes: int) -> bytes:
        try:
            data = self._read_regular(self._blob_path(digest), max_bytes, f"blob {digest}")
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in {self.path}") from None
        if len(data) > max_bytes:
            raise TooLargeError(f"blob {digest} in {self.path} is larger than {max_bytes} bytes")
        if sha256_digest(data) != digest:
            raise ContentMismatchError(f"blob {digest} in {self.path} is corrupt: its bytes hash differently")
        return data

    # -- RepositoryStore ---------------------------------------------------
    def get_manifest(self, reference: str, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        if DIGEST_RE.fullmatch(reference):
            digest, media_type = reference, None
            for descriptor in self._read_index()["manifests"]:
                if descriptor.get("digest") == digest:
                    media_type = descriptor.get("mediaType")
                    break
        else:
            digest, media_type = None, None
            for descriptor in self._read_index()["manifests"]:
                annotations = descriptor.get("annotations") or {}
                if annotations.get(REF_NAME_ANNOTATION) == reference:
                    digest, media_type = descriptor.get("digest"), descriptor.get("mediaType")
            if not isinstance(digest, str):
                raise NotFoundError(f"tag {reference!r} not found in {self.path}")
        content_type = media_type if isinstance(media_type, str) else None
        return Manifest(self._read_blob_file(str(digest), max_bytes), content_type)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        digest = self.replace_manifest(tag, data, media_type, expected=_ANY)
        assert digest is not None
        return digest

    def replace_manifest(self, tag: str, data: bytes, media_type: str, expected: str | None | object) -> str | None:
        """Compare-and-swap of a tag, atomic under the layout's lock.

        A digest instead of a tag stores an untagged manifest (an index's child).
        """
        if DIGEST_RE.fullmatch(tag):
            return self._put_untagged(tag, data, media_type)
        if not TAG_RE.fullmatch(tag):
            raise RegistryError(f"invalid tag {tag!r}")
        digest = self.put_blob(data)
        descriptor = {
            "mediaType": media_type,
            "digest": digest,
            "size": len(data),
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
        with self._locked():
            index = self._read_index()
            if expected is not _ANY and self._tag_digest(index, tag) != expected:
                return None
            index["manifests"] = [
                d for d in index["manifests"] if (d.get("annotations") or {}).get(REF_NAME_ANNOTATION) != tag
            ]
            index["manifests"].append(descriptor)
            index.setdefault("schemaVersion", 2)
            atomic_write(os.path.join(self.path, "index.json"), json.dumps(index, indent=1).encode())
        return digest

    def _put_untagged(self, digest: str, data: bytes, media_type: str) -> str:
        if sha256_digest(data) != digest:
            raise ContentMismatchError(f"manifest bytes do not match {digest}")
        self.put_blob(data)
        with self._locked():
            index = self._read_index()
            if not any(d.get("digest") == digest for d in index["manifests"]):
                index["manifests"].append({"mediaType": media_type, "digest": digest, "size": len(data)})
                atomic_write(os.path.join(self.path, "index.json"), json.dumps(index, indent=1).encode())
        return digest

    @staticmethod
    def _tag_digest(index: dict, tag: str) -> str | None:
        digest = None
        for descriptor in index["manifests"]:
            if (descriptor.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag:
                digest = descriptor.get("digest")
        return digest

    def get_blob(self, digest: str, *, max_bytes: int) -> bytes:
        return self._read_blob_file(digest, max_bytes)

    @contextlib.contextmanager
    def open_blob(self, digest: str, size: int) -> Iterator[Readable]:
        try:
            f = os.fdopen(self._open_regular(self._blob_path(digest), f"blob {digest}"), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in {self.path}") from None
        with f:
            yield VerifyingReader(f, digest, size, f"blob {digest} in {self.path}")

    def put_blob_from(self, digest: str, size: int, stream: Readable) -> None:
        path = self._blob_path(digest)
        if os.path.exists(path):
            return
        self._ensure_layout()
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                reader = VerifyingReader(stream, digest, size, f"blob {digest}")
                shutil.copyfileobj(reader, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self._blob_path(digest))

    def put_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        path = self._blob_path(digest)
        if not os.path.exists(path):
            self._ensure_layout()
            try:
                atomic_write(path, data)
            except OSError as e:
                raise RegistryError(f"cannot write blob into {self.path}: {e.strerror}") from e
        return digest

    def list_tags(self) -> list[str]:
        tags = []
        for descriptor in self._read_index()["manifests"]:
            name = (descriptor.get("annotations") or {}).get(REF_NAME_ANNOTATION)
            if isinstance(name, str):
                tags.append(name)
        return tags
