"""The OCI image-layout backend: skopeo-compatible, atomic, and never trusting its own files."""

from __future__ import annotations

import json
import threading
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
