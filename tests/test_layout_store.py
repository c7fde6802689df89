"""The OCI image-layout backend: skopeo-compatible, atomic, and never trusting its own files."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tufoci.errors import ContentMismatchError, NotFoundError, RegistryError, TooLargeError
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, sha256_digest
from tufoci.store.layout import LayoutRepository


@pytest.fixture
def repo(tmp_path: Path) -> LayoutRepository:
    return LayoutRepository(str(tmp_path / "acme" / "web"))


def test_manifests_by_tag_and_digest(repo: LayoutRepository):
    digest = repo.put_manifest("1.0", b'{"a":1}', MANIFEST_MEDIA_TYPE)
    assert repo.get_manifest("1.0").data == b'{"a":1}'
    assert repo.get_manifest(digest).digest == digest
    assert repo.list_tags() == ["1.0"]
    index = json.loads((Path(repo.path) / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "1.0"
    assert json.loads((Path(repo.path) / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    with pytest.raises(NotFoundError):
        repo.get_manifest("2.0")


def test_retagging_replaces_the_old_entry(repo: LayoutRepository):
    repo.put_manifest("t", b"one", MANIFEST_MEDIA_TYPE)
    repo.put_manifest("t", b"two", MANIFEST_MEDIA_TYPE)
    assert repo.list_tags() == ["t"] and repo.get_manifest("t").data == b"two"


def test_compare_and_swap(repo: LayoutRepository):
    first = repo.replace_manifest("timestamp", b"v1", MANIFEST_MEDIA_TYPE, None)
    assert first == sha256_digest(b"v1")
    assert repo.replace_manifest("timestamp", b"v2", MANIFEST_MEDIA_TYPE, None) is None  # exists already
    assert repo.replace_manifest("timestamp", b"v2", MANIFEST_MEDIA_TYPE, "sha256:" + "0" * 64) is None
    assert repo.replace_manifest("timestamp", b"v2", MANIFEST_MEDIA_TYPE, first) == sha256_digest(b"v2")
    assert repo.get_manifest("timestamp").data == b"v2"


def test_concurrent_writers_never_lose_a_tag(repo: LayoutRepository):
    threads = [threading.Thread(target=repo.put_manifest, args=(f"t{i}", f"m{i}".encode(), MANIFEST_MEDIA_TYPE))
               for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(repo.list_tags()) == sorted(f"t{i}" for i in range(40))


def test_corrupt_and_oversized_blobs_are_detected(repo: LayoutRepository):
    digest = repo.put_blob(b"hello")
    path = Path(repo.path) / "blobs" / "sha256" / digest.split(":")[1]
    path.write_bytes(b"HELLO")
    with pytest.raises(ContentMismatchError):
        repo.get_blob(digest, max_bytes=100)
    big = repo.put_blob(b"x" * 1000)
    with pytest.raises(TooLargeError):
        repo.get_blob(big, max_bytes=999)


@pytest.mark.parametrize("digest", ["sha256:../../../etc/passwd", "sha256:" + "A" * 64, "md5:abc", "sha256:" + "a" * 64 + "\n"])
def test_malformed_digests_never_become_paths(repo: LayoutRepository, digest: str):
    with pytest.raises(RegistryError):
        repo.get_blob(digest, max_bytes=10)


@pytest.mark.parametrize("tag", ["../x", "a/b", "", "x" * 129, "latest\n"])
def test_invalid_tags_are_refused(repo: LayoutRepository, tag: str):
    with pytest.raises(RegistryError):
        repo.put_manifest(tag, b"{}", MANIFEST_MEDIA_TYPE)


def test_corrupt_index_is_a_clear_error(repo: LayoutRepository):
    repo.put_manifest("t", b"{}", MANIFEST_MEDIA_TYPE)
    (Path(repo.path) / "index.json").write_text("{not json")
    with pytest.raises(RegistryError, match="corrupt OCI layout index"):
        repo.list_tags()


def _in_place_of_index(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    index = Path(repo.path) / "index.json"
    index.unlink()
    os.mkfifo(index)
    return repo.list_tags


def _index_links_outside(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    (outside / "index.json").write_bytes((Path(repo.path) / "index.json").read_bytes())
    (Path(repo.path) / "index.json").unlink()
    (Path(repo.path) / "index.json").symlink_to(outside / "index.json")
    return repo.list_tags


def _blobs_dir_links_outside(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    shutil.move(Path(repo.path) / "blobs", outside / "blobs")
    (Path(repo.path) / "blobs").symlink_to(outside / "blobs")
    return lambda: repo.get_manifest("t")


def _blob(repo: LayoutRepository) -> Path:
    return Path(repo.path) / "blobs" / "sha256" / sha256_digest(b"{}").split(":")[1]


def _blob_is_a_device(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    _blob(repo).unlink()
    os.mknod(_blob(repo), 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: endless
    return lambda: repo.get_manifest("t")


def _blob_is_a_directory(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    _blob(repo).unlink()
    _blob(repo).mkdir()
    return lambda: repo.get_manifest("t")


def _blob_is_a_fifo(repo: LayoutRepository, outside: Path) -> Callable[[], object]:
    _blob(repo).unlink()
    os.mkfifo(_blob(repo))
    return lambda: repo.open_blob(sha256_digest(b"{}"), 2).__enter__()


@pytest.mark.parametrize("attack, message", [
    (_in_place_of_index, "index.json in .* is not a regular file"),
    (_index_links_outside, "index.json in .* is a symbolic link"),
    (_blobs_dir_links_outside, "lies outside the layout"),
    (_blob_is_a_device, "is not a regular file"),
    (_blob_is_a_directory, "is not a regular file"),
    (_blob_is_a_fifo, "is not a regular file"),
])
def test_only_regular_files_inside_the_layout_are_read(repo: LayoutRepository, tmp_path: Path, attack, message):
    """Issue 11 item 7: a FIFO, device, directory or link out of the layout is refused at once, never read."""
    repo.put_manifest("t", b"{}", MANIFEST_MEDIA_TYPE)
    outside = tmp_path / "outside"
    outside.mkdir()
    read = attack(repo, outside)
    result: list[BaseException | object] = []

    def run() -> None:
        try:
            result.append(read())
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result.append(e)

    reader = threading.Thread(target=run, daemon=True)  # a FIFO would block it forever
    reader.start()
    reader.join(timeout=5)
    assert result, "the read blocked"
    assert isinstance(result[0], RegistryError) and re.search(message, str(result[0])), result[0]


def test_oversized_index_is_refused_after_a_bounded_read(repo: LayoutRepository):
    repo.put_manifest("t", b"{}", MANIFEST_MEDIA_TYPE)
    with open(Path(repo.path) / "index.json", "r+b") as f:
        f.truncate(1 << 40)  # sparse: a read of it all would take hours and a terabyte
    with pytest.raises(TooLargeError, match="index.json is larger than"):
        repo.list_tags()
