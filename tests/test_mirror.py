"""``tufoci mirror serve`` over the OCI read API, against a real registry with real signed images.

The mirror fronts ``registry.example.com`` (mapped to a loopback registry):
tags answer only with their signed digest, digests and blobs only when signed
content references them, everything fails closed with the spec's error JSON.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.conftest import needs_registry, publish_web, push_test_image
from tests.support.mirror_server import SCOPE, UPSTREAM, MirrorProcess, write_mirror_config
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}


class World:
    """A registry with ``acme/web:1.0`` signed and ``acme/unsigned:1.0`` pushed but never signed."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        self.registry, self.tmp_path = registry, tmp_path
        self.scope, self.maintainer, self.root = publish_web(registry.host, tmp_path, monkeypatch)
        self.web = open_repository(Repository(registry.host, "acme/web"))
        self.digest = self.web.get_manifest("1.0").digest
        push_test_image(tmp_path, b"unsigned", f"{self.scope}/unsigned:1.0")

    def config(self, name: str = "mirror.yaml", endpoint: str | None = None, **options) -> Path:
        return write_mirror_config(self.tmp_path / name, endpoint or self.registry.host, self.root,
                                   metadata_host=self.registry.host if endpoint is None else endpoint, **options)

    def start(self, name: str = "mirror", **options) -> MirrorProcess:
        return MirrorProcess.start(self.tmp_path / name, self.config(f"{name}.yaml", **options))


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch) -> World:
    return World(registry, tmp_path, monkeypatch)


@pytest.fixture
def mirror(world):
    server = world.start()
    yield server
    server.stop()


def manifest_path(repository: str, reference: str, ns: str | None = UPSTREAM) -> str:
    return f"/v2/{repository}/manifests/{reference}" + (f"?ns={ns}" if ns else "")


def test_a_signed_tag_is_served_as_its_signed_bytes_with_the_signed_digest(world, mirror):
    status, headers, body = mirror.request("GET", manifest_path("acme/web", "1.0"), headers=ACCEPT)
    assert status == 200, body
    assert headers["Docker-Content-Digest"] == world.digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == world.digest
    assert headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"  # from the bytes (umoci sets no mediaType)
    head = mirror.request("HEAD", manifest_path("acme/web", "1.0"))
    assert head[0] == 200 and head[1]["Docker-Content-Digest"] == world.digest
    assert int(head[1]["Content-Length"]) == len(body)
    # the upstream's name as the first path component (podman's prefix mirrors), or the default upstream
    for path in (f"/v2/{UPSTREAM}/acme/web/manifests/1.0", "/v2/acme/web/manifests/1.0"):
        assert mirror.request("GET", path)[1]["Docker-Content-Digest"] == world.digest
    # by digest, and every blob it references, byte for byte
    assert mirror.request("GET", manifest_path("acme/web", world.digest))[2] == body
    manifest = json.loads(body)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        status, headers, blob = mirror.request("GET", f"/v2/acme/web/blobs/{descriptor['digest']}?ns={UPSTREAM}")
        assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == descriptor["digest"]
        assert headers["Docker-Content-Digest"] == descriptor["digest"]
    assert mirror.request("GET", "/v2/")[0] == 200


def test_what_nobody_signed_is_refused_with_the_spec_error(world, mirror):
    unsigned = open_repository(Repository(world.registry.host, "acme/unsigned")).get_manifest("1.0")
    cases = [
        ("GET", manifest_path("acme/unsigned", "1.0"), 404, "MANIFEST_UNKNOWN", "not signed"),
        ("GET", manifest_path("acme/web", "2.0"), 404, "MANIFEST_UNKNOWN", "not signed"),
        ("GET", manifest_path("acme/unsigned", unsigned.digest), 404, "MANIFEST_UNKNOWN", "not signed"),
        ("GET", manifest_path("acme/web", unsigned.digest), 404, "MANIFEST_UNKNOWN", "not signed"),
        ("GET", f"/v2/acme/unsigned/blobs/{json.loads(unsigned.data)['layers'][0]['digest']}?ns={UPSTREAM}",
         404, "BLOB_UNKNOWN", "not referenced by a signed manifest"),
        ("GET", manifest_path("other/web", "1.0"), 403, "DENIED", "no policy rule"),
        ("GET", manifest_path("acme/web", "1.0", ns="evil.example"), 404, "NAME_UNKNOWN", "no registry"),
        ("GET", "/v2/_catalog", 405, "UNSUPPORTED", "manifests and blobs only"),
        ("GET", "/v2/acme/web/tags/list", 405, "UNSUPPORTED", "manifests and blobs only"),
        ("PUT", manifest_path("acme/web", "1.0"), 405, "UNSUPPORTED", "read-only"),
        ("POST", "/v2/acme/web/blobs/uploads/", 405, "UNSUPPORTED", "read-only"),
    ]
    for method, path, status, code, words in cases:
        got, headers, body = mirror.request(method, path)
        assert (got, mirror.error_code(body)) == (status, code), (path, body)
        assert words in json.loads(body)["errors"][0]["message"], (path, body)
        assert headers["Content-Type"] == "application/json"
    metrics = mirror.metrics()
    assert 'tufoci_mirror_requests_total{kind="manifest",verdict="refused",reason="MANIFEST_UNKNOWN"} 4' in metrics


def test_a_tag_moved_upstream_is_still_answered_with_the_signed_digest(world, mirror, tmp_path):
    push_test_image(tmp_path, b"evil", f"{world.scope}/web:1.0")
    assert world.web.get_manifest("1.0").digest != world.digest
    status, headers, body = mirror.request("GET", manifest_path("acme/web", "1.0"))
    assert status == 200 and headers["Docker-Content-Digest"] == world.digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == world.digest
    for _ in range(100):  # the upstream's tag is compared in the background
        if 'tufoci_mirror_moved_tags_total{upstream="registry.example.com"} 1' in mirror.metrics():
            break
        time.sleep(0.05)
    assert 'tufoci_mirror_moved_tags_total{upstream="registry.example.com"} 1' in mirror.metrics()
    (moved,) = mirror.log_events("upstream-tag-moved")
    assert moved["signed"] == world.digest and moved["image"] == f"{SCOPE}/web:1.0"


def test_ranges_are_served_from_a_verified_blob(world, mirror):
    manifest = json.loads(mirror.request("GET", manifest_path("acme/web", "1.0"))[2])
    layer = manifest["layers"][0]
    path = f"/v2/acme/web/blobs/{layer['digest']}?ns={UPSTREAM}"
    whole = mirror.request("GET", path)[2]
    size = len(whole)
    for header, first, last in (("bytes=0-9", 0, 9), ("bytes=10-", 10, size - 1), ("bytes=-5", size - 5, size - 1),
                                (f"bytes=3-{size + 100}", 3, size - 1)):
        status, headers, body = mirror.request("GET", path, headers={"Range": header})
        assert status == 206 and body == whole[first:last + 1], header
        assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    status, headers, _ = mirror.request("GET", path, headers={"Range": f"bytes={size}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    assert mirror.request("GET", path, headers={"Range": "bytes=0-1,4-5"})[2] == whole  # several: the whole blob


def test_health_readiness_metrics_and_sigterm(world, mirror):
    assert mirror.request("GET", "/healthz")[0] == 200
    assert mirror.request("GET", "/readyz")[0] == 200
    mirror.request("GET", manifest_path("acme/web", "1.0"))
    metrics = mirror.metrics()
    assert 'tufoci_mirror_requests_total{kind="manifest",verdict="served",reason="signed-tag"} 1' in metrics
    assert f'tufoci_view_age_seconds{{scope="{SCOPE}"}}' in metrics
    assert 'tufoci_mirror_upstream_seconds_count{upstream="registry.example.com"}' in metrics
    assert mirror.stop() == 0
    assert mirror.log_events("stopped")


def test_tls_with_the_certificate_reloaded_when_rotated(world, tmp_path):
    import http.client
    import socket
    import ssl

    from cryptography import x509

    from tests.support.tls import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    leaf = ca.issue("mirror", hosts=["mirror.example.internal", "127.0.0.1"])
    server = MirrorProcess.start(tmp_path / "tls", world.config("tls.yaml"),
                                 args=["--tls-cert", str(leaf.cert_file), "--tls-key", str(leaf.key_file)])
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    try:
        assert server.url.startswith("https://127.0.0.1:")

        def served_serial() -> int:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="mirror.example.internal") as tls:
                    return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
        connection.request("GET", manifest_path("acme/web", "1.0"))
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Docker-Content-Digest") == world.digest
        connection.close()
        rotated = ca.issue("rotated", hosts=["mirror.example.internal", "127.0.0.1"])
        leaf.key_file.write_bytes(rotated.key_file.read_bytes())
        leaf.cert_file.write_bytes(rotated.cert_file.read_bytes())
        deadline = time.monotonic() + 10
        while served_serial() != rotated.certificate.serial_number:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        assert server.log_events("certificate-reloaded")
    finally:
        assert server.stop() == 0


CONFIG_ERRORS = [  # (change to a valid MirrorPolicy, words of the one-line error)
    ({"mirror": None}, "field mirror: a MirrorPolicy needs a mirror section"),
    ({"mirror": {"upstreams": []}}, "field mirror.upstreams: must list at least one upstream"),
    ({"mirror": {"upstreams": [{"name": "r.example/acme"}]}}, "field mirror.upstreams[0].name: write the registry host"),
    ({"mirror": {"upstreams": [{"name": "index.docker.io"}]}}, "write the registry host as 'docker.io'"),
    ({"mirror": {"upstreams": [{"name": "r.example"}], "default": "other.example"}},
     "field mirror.default: 'other.example' is not the name of an upstream"),
    ({"mirror": {"upstreams": [{"name": "r.example", "plainHTTP": "yes"}]}}, "plainHTTP: must be true or false"),
    ({"mirror": {"upstreams": [{"name": "r.example"}], "timeout": "-1s"}}, "field mirror.timeout"),
    ({"mirror": {"upstreams": [{"name": "r.example", "port": 5}]}}, "field mirror.upstreams[0].port: unknown"),
]


@pytest.mark.parametrize("change,words", CONFIG_ERRORS)
def test_mirror_config_errors_name_the_field(tmp_path, change, words):
    from tufoci.enforce.policy import PolicyError, parse_policy

    doc = {"apiVersion": "tufoci.dev/v1", "kind": "MirrorPolicy",
           "trust": [{"scope": SCOPE, "rootSha256": "a" * 64}],
           "rules": [{"images": [f"{SCOPE}/**"], "scope": SCOPE}],
           "mirror": {"upstreams": [{"name": UPSTREAM, "endpoint": "127.0.0.1:5000"}]}}
    doc.update(change)
    if doc["mirror"] is None:
        del doc["mirror"]
    with pytest.raises(PolicyError) as error:
        parse_policy(doc, "mirror.yaml")
    assert str(error.value).startswith("mirror.yaml: ") and words in str(error.value)


def test_routing_by_ns_by_first_component_or_by_default():
    from tufoci.enforce.mirror import OciError, route
    from tufoci.enforce.policy import MirrorSection, Upstream

    upstreams = (Upstream(UPSTREAM, "127.0.0.1:5000", None, None), Upstream("docker.io", "registry-1.docker.io",
                                                                            None, None))
    section = MirrorSection(upstreams, "docker.io", 30.0)
    cases = [
        ("acme/web", UPSTREAM, (UPSTREAM, "acme/web")),
        ("library/nginx", "docker.io", ("docker.io", "library/nginx")),
        (f"{UPSTREAM}/acme/web", None, (UPSTREAM, "acme/web")),
        ("library/nginx", None, ("docker.io", "library/nginx")),
        ("acme/web", "evil.example", None),
    ]
    for name, ns, expected in cases:
        if expected is None:
            with pytest.raises(OciError):
                route(section, name, ns)
            continue
        got = route(section, name, ns)
        assert (got.upstream.name, got.repository) == expected
    with pytest.raises(OciError) as unknown:
        route(MirrorSection(upstreams, None, 30.0), "acme/web", None)
    assert unknown.value.code == "NAME_UNKNOWN"


def test_cli_refuses_warn_mode_and_a_policy_without_mirror_section(world, tmp_path):
    import yaml

    from tests.conftest import run_tufoci

    config = yaml.safe_load(world.config().read_text())
    (tmp_path / "warn.yaml").write_text(yaml.safe_dump({**config, "mode": "warn"}))
    result = run_tufoci("mirror", "serve", "--config", str(tmp_path / "warn.yaml"))
    assert result.exit_code == 2 and "the mirror has no warn mode" in result.stderr
    admission = {k: v for k, v in config.items() if k != "mirror"} | {"kind": "AdmissionPolicy"}
    (tmp_path / "admission.yaml").write_text(yaml.safe_dump(admission))
    result = run_tufoci("mirror", "serve", "--config", str(tmp_path / "admission.yaml"))
    assert result.exit_code == 2 and "field mirror: missing" in result.stderr
