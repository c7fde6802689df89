"""tufoci copy: signed images and trust data to another registry, a mirror namespace, or an air gap."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Machine, init_scope_on, needs_registry, push_test_image
from tests.support.images import build_index, push_image

pytestmark = needs_registry


@pytest.fixture
def source(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    push_test_image(tmp_path, b"api 2.3", f"{scope}/team/api:2.3")
    push_test_image(tmp_path, b"never signed", f"{scope}/web:unsigned")
    push_image(build_index(tmp_path / "index"), "latest", f"{scope}/multi:1.0", all_platforms=True)
    maintainer.ok("target", "add", f"{scope}/web:1.0", f"{scope}/team/api:2.3", f"{scope}/multi:1.0")
    maintainer.ok("publish", scope)
    return {"scope": scope, "maintainer": maintainer, "root": root, "tmp_path": tmp_path}


def verify_everything(cluster: Machine, scope: str, root: Path) -> list[str]:
    cluster.ok("trust", "add", scope, "--root", str(root))
    out = cluster.ok("verify", f"{scope}/web:1.0", f"{scope}/team/api:2.3", f"{scope}/multi:1.0").stdout
    return [line.split("@")[1] for line in out.split()]


def test_copy_to_another_registry_and_namespace_preserves_digests(source, registry2, monkeypatch):
    scope, maintainer = source["scope"], source["maintainer"]
    original = verify_everything(Machine("cluster0", source["tmp_path"], monkeypatch), scope, source["root"])
    mirror = f"{registry2.host}/mirror/cache/acme"
    report = json.loads(maintainer.ok("copy", scope, mirror, "-o", "json").stdout)
    assert report["images"] == 3 and report["blobsCopied"] > 0 and report["manifestsCopied"] >= 5  # index children
    assert verify_everything(Machine("cluster1", source["tmp_path"], monkeypatch), mirror, source["root"]) == original
    assert registry2.request("GET", "/v2/mirror/cache/acme/web/manifests/unsigned")[0] == 404  # unsigned: not copied

    again = json.loads(maintainer.ok("copy", scope, mirror, "-o", "json").stdout)  # resumable: nothing to move
    assert again["blobsCopied"] == 0 and again["manifestsCopied"] <= 1  # only the timestamp may differ


def test_copy_within_one_registry_mounts_blobs(source, monkeypatch):
    scope, maintainer = source["scope"], source["maintainer"]
    host = scope.split("/")[0]
    report = json.loads(maintainer.ok("copy", scope, f"{host}/acme-prod", "--tag-pattern", "web:*", "-o", "json").stdout)
    assert report["targets"] == ["web:1.0"] and report["blobsMounted"] >= 2 and report["blobsCopied"] == 0
    cluster = Machine("cluster", source["tmp_path"], monkeypatch)
    cluster.ok("trust", "add", f"{host}/acme-prod", "--root", str(source["root"]))
    cluster.ok("verify", f"{host}/acme-prod/web:1.0")
    assert cluster("verify", f"{host}/acme-prod/team/api:2.3").exit_code == 13  # filtered out: not in the registry


def test_air_gapped_round_trip_through_a_tarball(source, registry2, monkeypatch):
    scope, maintainer, tmp_path = source["scope"], source["maintainer"], source["tmp_path"]
    original = verify_everything(Machine("cluster0", tmp_path, monkeypatch), scope, source["root"])
    carried = tmp_path / "usb" / "acme"
    maintainer.ok("copy", scope, f"oci:{carried}")
    with tarfile.open(tmp_path / "acme.tar", "w") as tar:
        tar.add(carried, arcname="acme")

    # on the other side of the gap: unpack, verify offline from the layout, import into a registry
    inside = tmp_path / "inside"
    inside.mkdir()
    with tarfile.open(tmp_path / "acme.tar") as tar:
        tar.extractall(inside, filter="data")
    offline = Machine("offline", tmp_path, monkeypatch)
    assert verify_everything(offline, f"oci:{inside / 'acme'}", source["root"]) == original
    offline.ok("copy", f"oci:{inside / 'acme'}", f"{registry2.host}/acme")
    assert verify_everything(Machine("cluster2", tmp_path, monkeypatch), f"{registry2.host}/acme", source["root"]) == original
    # skopeo sees the same bytes as tufoci wrote
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry2.host}/acme/multi:1.0"],
                         check=True, capture_output=True).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_copy_needs_a_trusted_source(registry2, home: Path):
    from tests.conftest import run_tufoci

    result = run_tufoci("copy", "127.0.0.1:9/acme", f"{registry2.host}/acme")
    assert result.exit_code == 1 and "no trust pin" in result.stderr


# -- issue 20.5: a copy never moves a destination backwards ----------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_copy_refuses_an_older_bundle_over_a_newer_destination(source, registry2, monkeypatch):
    scope, maintainer, tmp_path = source["scope"], source["maintainer"], source["tmp_path"]
    bundle = tmp_path / "bundle-v1"
    maintainer.ok("copy", scope, f"oci:{bundle}")  # web:1.0 still signed here
    maintainer.ok("target", "remove", scope, "web:1.0")
    maintainer.ok("publish", scope)
    mirror = f"{registry2.host}/acme"
    maintainer.ok("copy", scope, mirror)
    newer, _ = registry2.get_manifest("acme/tuf", "timestamp")

    carrier = Machine("carrier", tmp_path, monkeypatch)
    carrier.ok("trust", "add", f"oci:{bundle}", "--root", str(source["root"]))
    refused = carrier("copy", f"oci:{bundle}", mirror)
    assert refused.exit_code == 1 and "serves a newer trust state" in refused.stderr, refused.stderr
    assert "timestamp v2 < v3" in refused.stderr and "--replace-newer" in refused.stderr, refused.stderr
    assert registry2.get_manifest("acme/tuf", "timestamp")[0] == newer  # nothing moved
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", mirror, "--root", str(source["root"]))
    assert cluster("verify", f"{mirror}/web:1.0").exit_code == 10  # still revoked at the mirror

    carrier.ok("copy", f"oci:{bundle}", mirror, "--replace-newer")  # said explicitly
    assert registry2.get_manifest("acme/tuf", "timestamp")[0] != newer


def test_copy_writes_the_timestamp_it_verified_not_a_second_read(source, registry2, monkeypatch):
    from tests.support.tamper_proxy import Reply, TamperProxy, on

    scope, maintainer, tmp_path = source["scope"], source["maintainer"], source["tmp_path"]
    upstream = scope.split("/")[0]
    old = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{scope}/tuf:timestamp"],
                         check=True, capture_output=True).stdout
    maintainer.ok("target", "remove", scope, "web:1.0")
    maintainer.ok("publish", scope)
    reads = []

    def old_after_the_first_read(exchange):
        reads.append(exchange.path)
        return None if len(reads) == 1 else Reply(200, [("Content-Type", OCI_MANIFEST)], old)

    with TamperProxy.start(upstream) as proxy:
        proxy.add(on(r"/v2/acme/tuf/manifests/timestamp", old_after_the_first_read))
        hostile = f"{proxy.host}/acme"
        copier = Machine("copier", tmp_path, monkeypatch)
        copier.ok("trust", "add", hostile, "--root", str(source["root"]))
        mirror = f"{registry2.host}/acme"
        copier.ok("copy", hostile, mirror)
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", mirror, "--root", str(source["root"]))
    assert cluster("verify", f"{mirror}/web:1.0").exit_code == 10  # the revocation was copied, not the old state
    source_timestamp = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                       f"docker://{scope}/tuf:timestamp"], check=True, capture_output=True).stdout
    assert registry2.get_manifest("acme/tuf", "timestamp")[0] == source_timestamp
