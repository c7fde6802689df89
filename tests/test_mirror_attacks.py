"""The hostile registry behind the mirror: every attack fails closed with the right OCI error, in bounded time.

The mirror's upstream (and its trust data) is a tamper proxy in front of the
real registry. Rollback, freeze (expired or withheld metadata), endless and
stalled bodies and lying headers never make the mirror serve anything but
signed bytes: the client gets the spec's error JSON, or a blob transfer that
stops one byte short of its Content-Length.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import shutil
import time
from pathlib import Path

import pytest

from tests import test_mirror
from tests.conftest import needs_registry, push_test_image
from tests.support.mirror_server import UPSTREAM, MirrorProcess
from tests.support.tamper_proxy import Reply, TamperProxy, endless, on
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry
WEB = f"/v2/acme/web/manifests/1.0?ns={UPSTREAM}"


class World(test_mirror.World):
    """``acme/web:1.0`` signed, behind a tamper proxy that is the mirror's upstream and trust-data source."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        super().__init__(registry, tmp_path, monkeypatch)
        self.layer = json.loads(self.web.get_manifest("1.0").data)["layers"][0]
        self.proxy = TamperProxy.start(registry.host)
        self.mirrors: list[MirrorProcess] = []

    def start(self, name: str = "mirror", *, freshness: str = "60s", timeout: str = "2s", **options) -> MirrorProcess:
        config = self.config(f"{name}.yaml", self.proxy.host, freshness=freshness, timeout=timeout)
        mirror = MirrorProcess.start(self.tmp_path / name, config, **options)
        self.mirrors.append(mirror)
        return mirror


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch):
    world = World(registry, tmp_path, monkeypatch)
    yield world
    for mirror in world.mirrors:
        mirror.stop()
    world.proxy.stop()


def timed(mirror: MirrorProcess, path: str, **options) -> tuple[int, dict, bytes, float]:
    started = time.monotonic()
    status, headers, body = mirror.request("GET", path, **options)
    return status, headers, body, time.monotonic() - started


def refused(mirror: MirrorProcess, path: str, status: int, code: str, words: str, within: float) -> None:
    got, _, body, took = timed(mirror, path)
    assert (got, mirror.error_code(body)) == (status, code), body
    assert words in json.loads(body)["errors"][0]["message"], body
    assert took < within, took


def incomplete_blob(mirror: MirrorProcess, digest: str, headers: dict | None = None) -> tuple[int, int]:
    """(announced, received) bytes of a blob transfer the mirror cut off."""
    connection = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        connection.request("GET", f"/v2/acme/web/blobs/{digest}?ns={UPSTREAM}", headers=headers or {})
        response = connection.getresponse()
        assert response.status in (200, 206)
        announced = int(response.getheader("Content-Length"))
        with pytest.raises((http.client.IncompleteRead, ConnectionError)) as cut:
            response.read()
        partial = getattr(cut.value, "partial", b"")
        return announced, len(partial)
    finally:
        connection.close()


def test_a_replayed_old_timestamp_is_rejected_after_a_restart_with_the_newer_cache(world, tmp_path):
    old = open_repository(Repository(world.registry.host, "acme/tuf")).get_manifest("timestamp").data
    push_test_image(tmp_path, b"web 1.1", f"{world.scope}/web:1.1")
    world.maintainer.ok("target", "add", "--publish", f"{world.scope}/web:1.1")
    first = world.start()
    assert first.request("GET", f"/v2/acme/web/manifests/1.1?ns={UPSTREAM}")[0] == 200
    first.stop()
    world.proxy.add(on(r"/v2/acme/tuf/manifests/timestamp", lambda ex: ex.upstream().with_body(old)))
    again = world.start(wait_ready=False)  # the same cache: it remembers the newer timestamp
    refused(again, WEB, 403, "DENIED", "rejected", within=5)
    assert again.request("GET", "/readyz")[0] == 503


def test_withheld_metadata_fails_closed_once_the_view_is_older_than_the_window(world):
    mirror = world.start(freshness="2s")
    assert mirror.request("GET", WEB)[0] == 200
    world.proxy.add(on(r"/v2/acme/tuf/.*", lambda ex: Reply(503, [], b"withheld")))  # freeze: nothing new
    time.sleep(2.2)
    refused(mirror, WEB, 503, "UNAVAILABLE", "trust data stale since", within=1)
    refused(mirror, f"/v2/acme/web/blobs/{world.layer['digest']}?ns={UPSTREAM}", 503, "UNAVAILABLE",
            "stale since", within=1)
    world.proxy.clear()  # the registry answers again: the next refresh serves again
    deadline = time.monotonic() + 20
    while mirror.request("GET", WEB)[0] != 200:
        assert time.monotonic() < deadline, mirror.log()
        time.sleep(0.2)


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian faketime is needed")
def test_an_expired_timestamp_is_denied(world):
    mirror = world.start(prefix=["faketime", "-f", "+2d"], wait_ready=False)
    refused(mirror, WEB, 403, "DENIED", "timestamp expired", within=5)


ENDLESS = {  # what the upstream does -> (the request, status, code, words)
    "endless timestamp body": (r"/v2/acme/tuf/manifests/timestamp", WEB, 403, "DENIED", "sent more than"),
    "stalled timestamp": (r"/v2/acme/tuf/manifests/timestamp", WEB, 503, "UNAVAILABLE", "could not be loaded"),
    "endless image manifest": (r"/v2/acme/web/manifests/sha256:.*", WEB, 503, "UNAVAILABLE", "upstream failed"),
    "stalled image manifest": (r"/v2/acme/web/manifests/sha256:.*", WEB, 503, "UNAVAILABLE", "upstream failed"),
}


@pytest.mark.parametrize("attack", list(ENDLESS))
def test_endless_and_stalled_metadata_and_manifests_fail_closed_in_bounded_time(world, attack):
    pattern, path, status, code, words = ENDLESS[attack]
    if attack.startswith("endless"):
        world.proxy.add(on(pattern, lambda ex: Reply(200, [("Content-Type", "application/json")],
                                                     endless(proxy=world.proxy))))
    else:
        world.proxy.add(on(pattern, lambda ex: Reply(200, [("Content-Length", "100000")],
                                                     endless(b"x", delay=0.2, proxy=world.proxy))))
    mirror = world.start(wait_ready=False)
    # 3 attempts of a 2 s read timeout plus backoff at most: never minutes
    refused(mirror, path, status, code, words, within=10)


def test_a_lying_upstream_digest_header_or_content_type_changes_nothing(world):
    def lie(exchange) -> Reply:
        return (exchange.upstream().with_header("Docker-Content-Digest", "sha256:" + "1" * 64)
                .with_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json"))

    world.proxy.add(on(r"/v2/acme/web/manifests/.*", lie, method=None))
    mirror = world.start()
    status, headers, body = mirror.request("GET", WEB)
    assert status == 200 and headers["Docker-Content-Digest"] == world.digest
    assert headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert "sha256:" + hashlib.sha256(body).hexdigest() == world.digest


def test_other_manifest_bytes_for_the_signed_digest_are_refused(world, tmp_path):
    push_test_image(tmp_path, b"evil", f"{world.scope}/evil:1.0")
    evil = open_repository(Repository(world.registry.host, "acme/evil")).get_manifest("1.0").data
    world.proxy.add(on(rf"/v2/acme/web/manifests/{world.digest}", lambda ex: ex.upstream().with_body(evil)))
    mirror = world.start()
    refused(mirror, WEB, 502, "MANIFEST_INVALID", "upstream served other bytes", within=5)


def flipped(exchange) -> Reply:
    body = bytearray(exchange.upstream().data)
    body[-1] ^= 0xFF  # the very last byte differs: everything before it is right
    return exchange.upstream().with_body(bytes(body))


BLOB_ATTACKS = {
    "bytes that do not match": lambda world: flipped,
    "endless": lambda world: lambda ex: Reply(200, [], endless(proxy=world.proxy)),
    "a Content-Length that lies": lambda world: lambda ex: Reply(
        200, [("Content-Length", str(world.layer["size"]))], ex.upstream().data[:-10]),
    "a stall after half": lambda world: lambda ex: Reply(
        200, [("Content-Length", str(world.layer["size"]))],
        itertools.chain([ex.upstream().data[: world.layer["size"] // 2]], endless(b"", delay=30, proxy=world.proxy))),
}


@pytest.mark.parametrize("attack", list(BLOB_ATTACKS))
def test_a_blob_that_is_not_its_digest_is_cut_off_one_byte_short(world, attack):
    world.proxy.add(on(rf"/v2/acme/web/blobs/{world.layer['digest']}", BLOB_ATTACKS[attack](world)))
    mirror = world.start()
    size = world.layer["size"]
    started = time.monotonic()
    announced, received = incomplete_blob(mirror, world.layer["digest"])
    assert announced == size and received < size
    if attack in ("bytes that do not match", "endless"):
        assert received == size - 1  # everything but the byte that waits for the verdict
    # a range inside the blob: its last byte waits for the whole blob's verdict too
    announced, received = incomplete_blob(mirror, world.layer["digest"], {"Range": "bytes=0-9"})
    assert (announced, received) == (10, 9)
    assert time.monotonic() - started < 20
    assert mirror.log_events("blob-cut-off")


def test_an_honest_blob_is_served_whole_and_bytes_past_its_signed_size_are_never_read(world):
    world.proxy.add(on(rf"/v2/acme/web/blobs/{world.layer['digest']}",
                       lambda ex: Reply(200, [], itertools.chain([ex.upstream().data], endless(proxy=world.proxy)))))
    mirror = world.start()
    status, headers, body = mirror.request("GET", f"/v2/acme/web/blobs/{world.layer['digest']}?ns={UPSTREAM}")
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == world.layer["digest"]


def test_upstream_credentials_come_from_the_docker_config(world, tmp_path):
    import base64
    import os

    from tests.support.tamper_proxy import require_basic_auth

    world.proxy.add(require_basic_auth("puller", "s3cret"))
    denied = world.start("anonymous", wait_ready=False)
    refused(denied, WEB, 503, "UNAVAILABLE", "requires credentials", within=10)
    config = Path(os.environ["DOCKER_CONFIG"])
    config.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(b"puller:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {world.proxy.host: {"auth": token}}}))
    mirror = world.start("logged-in")
    assert mirror.request("GET", WEB)[0] == 200
    blob = mirror.request("GET", f"/v2/acme/web/blobs/{world.layer['digest']}?ns={UPSTREAM}")
    assert blob[0] == 200 and "sha256:" + hashlib.sha256(blob[2]).hexdigest() == world.layer["digest"]
    assert all(r.header("Authorization") for r in world.proxy.requests[-3:])


def test_sigterm_lets_a_blob_transfer_in_flight_finish_then_exits_0(world):
    import threading

    world.proxy.add(on(rf"/v2/acme/web/blobs/{world.layer['digest']}",
                       lambda ex: Reply(200, [], itertools.chain([b""], [ex.upstream().data]), stall=1.0)))
    mirror = world.start()
    answers = []
    pulling = threading.Thread(target=lambda: answers.append(
        mirror.request("GET", f"/v2/acme/web/blobs/{world.layer['digest']}?ns={UPSTREAM}")))
    pulling.start()
    time.sleep(0.4)  # the mirror is waiting for the upstream's answer
    assert mirror.stop() == 0
    pulling.join(10)
    ((status, _, body),) = answers
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == world.layer["digest"]
