"""``tufoci admission serve`` over real TLS, against a real registry with real signed images.

Called the way the apiserver calls it (HTTPS to the Service name's certificate,
``?timeout=``, AdmissionReview v1): mutate and validate, health, readiness and
metrics, malformed bodies, SIGTERM with a request in flight, certificate
rotation, and the freshness window (stale trust data fails closed; warn mode
admits with a warning).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from pathlib import Path

import jsonpatch
import pytest

from tests.conftest import needs_registry, publish_web, push_test_image
from tests.support.admission_server import (
    SERVICE_NAME,
    WebhookProcess,
    decode_patch,
    pod_review,
    write_policy,
)
from tests.support.tamper_proxy import TamperProxy
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


class World:
    """A registry with ``acme/web:1.0`` signed, ``acme/unsigned:1.0`` pushed but never signed."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        self.registry, self.tmp_path = registry, tmp_path
        self.scope, self.maintainer, self.root = publish_web(registry.host, tmp_path, monkeypatch)
        self.web = f"{self.scope}/web:1.0"
        self.digest = open_repository(Repository(registry.host, "acme/web")).get_manifest("1.0").digest
        self.pinned = f"{self.scope}/web@{self.digest}"
        self.unsigned = f"{self.scope}/unsigned:1.0"
        push_test_image(tmp_path, b"unsigned", self.unsigned)

    def policy(self, name: str = "policy.yaml", **options) -> Path:
        return write_policy(self.tmp_path / name, {self.scope: self.root}, **options)

    def start(self, name: str = "webhook", **options) -> WebhookProcess:
        return WebhookProcess.start(self.tmp_path / name, self.policy(f"{name}.yaml", **options))


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch) -> World:
    return World(registry, tmp_path, monkeypatch)


@pytest.fixture
def webhook(world):
    server = world.start()
    yield server
    server.stop()


def test_mutate_pins_each_tag_to_its_signed_digest_and_validate_admits_the_result(world, webhook):
    review = pod_review([world.web, "registry.k8s.io/pause:3.9", world.web], init=[world.pinned])
    response = webhook.review("mutate", review)
    assert response["allowed"] is True and "warnings" not in response
    patch = decode_patch(response)
    assert patch == [
        {"op": "replace", "path": "/spec/containers/0/image", "value": world.pinned},
        {"op": "replace", "path": "/spec/containers/2/image", "value": world.pinned},
        {"op": "add", "path": "/metadata/annotations", "value": {"tufoci.dev/original-images": json.dumps(
            {"/spec/containers/0/image": world.web, "/spec/containers/2/image": world.web},
            sort_keys=True, separators=(",", ":"))}},
    ]
    # identical images are judged once
    (line,) = webhook.log_events("admission")
    assert sorted(i["image"] for i in line["images"]) == sorted({world.web, "registry.k8s.io/pause:3.9", world.pinned})

    denied = webhook.review("validate", review)  # a tag is not a pinned digest
    assert denied["allowed"] is False and "patch" not in denied and "patchType" not in denied
    assert denied["status"]["code"] == 403
    assert denied["status"]["message"] == f"{world.web}: not pinned to a digest; deploy {world.pinned}"

    patched = jsonpatch.apply_patch(review["request"]["object"], patch)
    review["request"]["object"] = patched
    admitted = webhook.review("validate", review)
    assert admitted == {"uid": review["request"]["uid"], "allowed": True}


def test_an_unsigned_image_is_denied_naming_image_and_reason(world, webhook):
    review = pod_review([world.web, world.unsigned])
    for endpoint in ("mutate", "validate"):
        response = webhook.review(endpoint, review)
        assert response["allowed"] is False and "patch" not in response
        unsigned = f"{world.unsigned}: unsigned:1.0 is not signed in {world.scope}"
        not_pinned = f"{world.web}: not pinned to a digest; deploy {world.pinned}; "
        assert response["status"] == {"code": 403, "reason": "Forbidden",
                                      "message": ("" if endpoint == "mutate" else not_pinned) + unsigned}


def test_operations_that_run_nothing_new_are_admitted_untouched(world, webhook):
    for operation in ("DELETE", "CONNECT"):
        review = pod_review([world.unsigned], operation=operation)
        assert webhook.review("mutate", review) == {"uid": review["request"]["uid"], "allowed": True}
    being_deleted = pod_review([world.unsigned], operation="UPDATE")
    being_deleted["request"]["object"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert webhook.review("validate", being_deleted)["allowed"] is True


def test_health_readiness_metrics_and_bad_requests(world, webhook):
    assert webhook.request("GET", "/healthz")[0] == 200
    assert webhook.request("GET", "/readyz")[0] == 200
    webhook.review("mutate", pod_review([world.web]))
    webhook.review("validate", pod_review([world.unsigned]))
    status, headers, body = webhook.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'tufoci_admissions_total{endpoint="mutate",verdict="allowed",reason="signed"} 1' in text
    assert 'tufoci_admissions_total{endpoint="validate",verdict="denied",reason="not-signed"} 1' in text
    assert "tufoci_admission_duration_seconds_count 2" in text
    assert f'tufoci_view_age_seconds{{scope="{world.scope}"}} ' in text
    assert f'tufoci_refresh_errors_total{{scope="{world.scope}"}} 0' in text

    for body in (b"not json", b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}',
                 b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}'):
        status, _, answer = webhook.request("POST", "/mutate?timeout=10s", body)
        assert status == 400, answer
    assert webhook.request("POST", "/nowhere", b"{}")[0] == 404
    assert webhook.request("GET", "/mutate")[0] == 404


def test_the_certificate_names_the_service_and_is_reloaded_when_rotated(world, webhook):
    def served_serial(hostname: str) -> int:
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw:
            with webhook.context.wrap_socket(raw, server_hostname=hostname) as tls:
                from cryptography import x509

                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

    first = webhook.leaf.certificate.serial_number
    assert served_serial(SERVICE_NAME) == first  # what the apiserver checks: the Service's DNS name
    with pytest.raises(ssl.SSLCertVerificationError):
        served_serial("other.tufoci-system.svc")

    rotated = webhook.ca.issue("rotated", hosts=[SERVICE_NAME, "127.0.0.1"])
    # cert-manager writes new files in place; the webhook notices within a second
    webhook.leaf.key_file.write_bytes(rotated.key_file.read_bytes())
    webhook.leaf.cert_file.write_bytes(rotated.cert_file.read_bytes())
    deadline = time.monotonic() + 10
    while served_serial(SERVICE_NAME) != rotated.certificate.serial_number:
        assert time.monotonic() < deadline, webhook.log()
        time.sleep(0.2)
    assert webhook.review("mutate", pod_review([world.web]))["allowed"] is True
    assert webhook.log_events("certificate-reloaded")


def test_sigterm_finishes_the_request_in_flight_then_exits_0(world, tmp_path):
    proxy = TamperProxy.start(world.registry.host)
    try:
        slow_scope = f"{proxy.host}/acme"  # the same trust repository, reached through a slow link
        policy = write_policy(tmp_path / "slow.yaml", {world.scope: world.root, slow_scope: world.root})
        server = WebhookProcess.start(tmp_path / "slow", policy, wait_ready=False)

        def slow(exchange):
            proxy.sleep(1.5)
            return None

        proxy.add(slow)
        answers = []
        thread = threading.Thread(target=lambda: answers.append(
            server.review("mutate", pod_review([f"{slow_scope}/web:1.0"]))))
        thread.start()
        time.sleep(0.5)  # the request is waiting for its scope's first load
        started = time.monotonic()
        assert server.stop() == 0
        thread.join(30)
        assert answers and answers[0]["allowed"] is True, server.log()
        assert time.monotonic() - started < 20
        assert server.log_events("stopped")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        proxy.stop()


def test_stale_trust_data_fails_closed_and_warn_mode_admits_with_a_warning(world, tmp_path):
    enforce = world.start("enforce", freshness="2s")
    warn = world.start("warn", freshness="2s", mode="warn")
    try:
        for server in (enforce, warn):
            assert server.review("mutate", pod_review([world.web]))["allowed"] is True
        world.registry.stop()  # no refresh can succeed any more
        time.sleep(2.5)
        stale = enforce.review("mutate", pod_review([world.web]))
        assert stale["allowed"] is False and "patch" not in stale
        assert f"{world.web}: trust data stale since 20" in stale["status"]["message"]
        warned = warn.review("mutate", pod_review([world.web]))
        assert warned["allowed"] is True and "patch" not in warned
        assert warned["warnings"] and "trust data stale since" in warned["warnings"][0]
        (_, line) = warn.log_events("admission")
        assert line["warn"] is True and line["allowed"] is True
        text = enforce.request("GET", "/metrics")[2].decode()
        assert f'tufoci_refresh_errors_total{{scope="{world.scope}"}} 0' not in text
    finally:
        enforce.stop()
        warn.stop()


def test_bad_start_configuration_exits_2_with_one_line(world, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tufoci.dev/v1\nkind: AdmissionPolicy\nmode: audit\n")
    missing_root = write_policy(tmp_path / "missing-root.yaml", {world.scope: tmp_path / "nope.json"})
    for policy, expected in ((bad, "field mode: must be enforce or warn"),
                             (missing_root, "field trust[0].root: cannot read")):
        result = subprocess.run([sys.executable, "-c", "from tufoci.cli import main; main()", "admission", "serve",
                                 "--policy", str(policy), "--tls-cert", "c", "--tls-key", "k",
                                 "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and expected in result.stderr and str(policy) in result.stderr


def test_a_root_pinned_by_sha256_is_fetched_from_the_registry_and_checked(world, tmp_path):
    import hashlib

    import yaml

    def policy(name: str, sha256: str) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({
            "apiVersion": "tufoci.dev/v1", "kind": "AdmissionPolicy",
            "trust": [{"scope": world.scope, "rootSha256": sha256}],
            "rules": [{"images": [f"{world.scope}/**"], "scope": world.scope}]}))
        return path

    good = WebhookProcess.start(tmp_path / "by-sha", policy("sha.yaml", hashlib.sha256(world.root.read_bytes()).hexdigest()))
    wrong = WebhookProcess.start(tmp_path / "wrong-sha", policy("wrong.yaml", "0" * 64), wait_ready=False)
    try:
        assert good.review("mutate", pod_review([world.web]))["allowed"] is True
        denied = wrong.review("mutate", pod_review([world.web]))
        assert denied["allowed"] is False
        assert denied["status"]["message"] == (f"{world.web}: trust data of {world.scope} rejected: no root in "
                                               f"{world.scope}/tuf has sha256 {'0' * 64}")
    finally:
        good.stop()
        wrong.stop()


def test_the_request_parser_refuses_what_the_apiserver_never_sends(world, webhook):
    """The server reads request lines and headers itself (http.server's email parser cost more than an
    admission): malformed lines, header floods and chunked bodies are refused and the connection closed."""
    def exchange(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as sock:
            with webhook.context.wrap_socket(sock, server_hostname=SERVICE_NAME) as tls:
                tls.sendall(raw)
                answer = b""
                while chunk := tls.recv(65536):  # the server closes after a refusal
                    answer += chunk
                return answer

    assert exchange(b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    flood = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    assert exchange(b"GET /healthz HTTP/1.1\r\n" + flood + b"\r\n").startswith(b"HTTP/1.1 431 ")
    assert exchange(b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    chunked = exchange(b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411 ") and b"Connection: close\r\n" in chunked
    # two requests on one connection, the second asking to close: both answered, in order
    both = exchange(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert both == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    assert exchange(b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"Connection: close\r\n\r\nok\n")


def test_the_server_writes_only_under_its_cache_dir(world, tmp_path):
    """deploy/deployment.yaml runs it with a read-only root filesystem, HOME=/nonexistent (the image's user)
    and ``--cache-dir`` on an emptyDir: nothing may be written anywhere else (no TUFOCI_HOME, no temp files)."""
    home, temp = tmp_path / "nonexistent-home", tmp_path / "nonexistent-tmp"
    server = WebhookProcess.start(tmp_path / "ro", world.policy("ro.yaml"),
                                  env={"HOME": str(home), "TMPDIR": str(temp), "TUFOCI_HOME": ""})
    try:
        assert server.review("mutate", pod_review([world.web]))["allowed"] is True
        assert not home.exists() and not temp.exists()
        assert any((tmp_path / "ro" / "cache").iterdir())  # the verified metadata went where it was told
    finally:
        assert server.stop() == 0
    # every line on stderr is JSON (log shippers parse them), the first one the start-up line
    events = [json.loads(line)["event"] for line in server.log().splitlines()]
    assert events[0] == "listening" and events[-1] == "stopped" and "admission" in events
