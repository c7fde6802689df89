"""Real clients pull through ``tufoci mirror serve``: containerd as a Kubernetes node runs it, and skopeo.

containerd reaches the mirror only through ``certs.d/registry.example.com/hosts.toml``
(the mirror is the server and the only host, so there is no fallback) and names
the upstream with ``?ns=registry.example.com``: the mirror's config has no default
upstream here, so a pull works only if containerd sent it. ``registry.example.com``
is never resolved: the mirror maps it to a tamper proxy on 127.0.0.1 in front of
the real registry, where a test can rewrite what the "upstream" serves.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_registry, publish_web, push_test_image
from tests.support.containerd import Containerd, containerd_available
from tests.support.images import build_index, push_image
from tests.support.mirror_server import SCOPE, UPSTREAM, MirrorProcess, write_mirror_config
from tests.support.tamper_proxy import Reply, TamperProxy, on
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


class World:
    """``acme/web:1.0`` and the multi-arch ``acme/multi:1.0`` signed; ``acme/unsigned:1.0`` not; a mirror."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        self.registry, self.tmp_path = registry, tmp_path
        self.scope, self.maintainer, self.root = publish_web(registry.host, tmp_path, monkeypatch)
        push_test_image(tmp_path, b"unsigned", f"{self.scope}/unsigned:1.0")
        index = build_index(tmp_path / "images", {"linux/amd64": b"multi amd64", "linux/arm64": b"multi arm64"})
        push_image(index, "latest", f"{self.scope}/multi:1.0", all_platforms=True)
        self.maintainer.ok("target", "add", "--publish", f"{self.scope}/multi:1.0")
        self.proxy = TamperProxy.start(registry.host)
        config = write_mirror_config(tmp_path / "mirror.yaml", self.proxy.host, self.root, default=False)
        self.mirror = MirrorProcess.start(tmp_path / "mirror", config)

    def digest(self, repository: str, tag: str = "1.0") -> str:
        return open_repository(Repository(self.registry.host, f"acme/{repository}")).get_manifest(tag).digest

    def stop(self) -> None:
        self.mirror.stop()
        self.proxy.stop()


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch):
    world = World(registry, tmp_path, monkeypatch)
    yield world
    world.stop()


@pytest.fixture
def node(world, tmp_path: Path):
    reason = containerd_available()
    if reason:
        pytest.skip(reason)
    node = Containerd.start(tmp_path / "containerd")
    node.mirror(UPSTREAM, f"http://{world.mirror.host}")
    yield node
    node.stop()


def pulled(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0


def test_containerd_pulls_a_signed_tag_at_its_signed_digest_and_refuses_an_unsigned_one(world, node):
    result = node.pull(f"{SCOPE}/web:1.0")
    assert pulled(result), result.stderr
    assert node.image_digest(f"{SCOPE}/web:1.0") == world.digest("web")
    assert world.mirror.log_events("manifest"), "containerd pulled through the mirror"
    refused = node.pull(f"{SCOPE}/unsigned:1.0")
    assert not pulled(refused) and "not found" in refused.stderr, refused.stderr
    assert node.image_digest(f"{SCOPE}/unsigned:1.0") is None
    events = [e for e in world.mirror.log_events("refused") if e["image"] == f"{SCOPE}/unsigned"]
    assert events and all(e["code"] == "MANIFEST_UNKNOWN" and "not signed" in e["message"] for e in events)


def test_containerd_gets_the_signed_image_when_upstream_moved_the_tag_to_an_unsigned_one(world, node, tmp_path):
    signed = world.digest("web")
    push_test_image(tmp_path, b"evil", f"{world.scope}/web:1.0")
    assert world.digest("web") != signed
    result = node.pull(f"{SCOPE}/web:1.0")
    assert pulled(result), result.stderr
    assert node.image_digest(f"{SCOPE}/web:1.0") == signed


def test_containerd_pulls_a_signed_multi_arch_index_for_this_platform(world, node):
    result = node.pull(f"{SCOPE}/multi:1.0")
    assert pulled(result), result.stderr
    index = world.digest("multi")
    assert node.image_digest(f"{SCOPE}/multi:1.0") == index
    children = json.loads(world.mirror.request("GET", f"/v2/acme/multi/manifests/{index}?ns={UPSTREAM}")[2])
    amd64 = next(m["digest"] for m in children["manifests"] if m["platform"]["architecture"] == "amd64")
    assert amd64 in node.content()


def test_a_tampered_blob_upstream_fails_the_pull_and_nothing_is_stored(world, node):
    manifest = json.loads(world.mirror.request("GET", f"/v2/acme/web/manifests/1.0?ns={UPSTREAM}")[2])
    layer = manifest["layers"][0]["digest"]

    def flip(exchange) -> Reply:
        body = bytearray(exchange.upstream().data)
        body[len(body) // 2] ^= 0xFF  # same size, one byte different
        return exchange.upstream().with_body(bytes(body))

    world.proxy.add(on(rf"/v2/acme/web/blobs/{layer}", flip))
    result = node.pull(f"{SCOPE}/web:1.0", timeout=180)
    assert not pulled(result), result.stdout
    assert layer not in node.content()
    assert node.image_digest(f"{SCOPE}/web:1.0") is None
    assert world.mirror.log_events("blob-cut-off")
    assert "tufoci_mirror_blob_mismatches_total 0" not in world.mirror.metrics()


def test_skopeo_copies_signed_images_through_the_mirror_and_fails_on_unsigned_ones(world, tmp_path):
    from tests.support.images import ToolError, skopeo_copy

    # skopeo sends no ?ns=: the upstream's name is the first path component (as a podman prefix mirror does)
    source = f"docker://{world.mirror.host}/{UPSTREAM}/acme"
    skopeo_copy(f"{source}/web:1.0", f"oci:{tmp_path / 'copy'}:web")
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == world.digest("web")
    with pytest.raises(ToolError) as refused:
        skopeo_copy(f"{source}/unsigned:1.0", f"oci:{tmp_path / 'copy'}:unsigned")
    assert "not signed" in str(refused.value) or "manifest unknown" in str(refused.value).lower()
