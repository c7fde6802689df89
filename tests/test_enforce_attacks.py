"""The attacks the CLI rejects, met by the admission webhook: the right verdict within the request's timeout.

The attacker controls the registry (moves tags, pushes unsigned images, replays
old metadata) or the network (down, stalled). The webhook never admits on the
registry's word: a moved tag is still pinned to its signed digest, and every
failure to verify is a denial naming the image and the reason.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import needs_registry, push_test_image
from tests.support.admission_server import WebhookProcess, decode_patch, pod_review, write_policy
from tests.support.tamper_proxy import TamperProxy
from tests.test_admission_server import World
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch) -> World:
    return World(registry, tmp_path, monkeypatch)


def timed_review(server: WebhookProcess, endpoint: str, images: list[str], timeout: str) -> tuple[dict, float]:
    started = time.monotonic()
    response = server.review(endpoint, pod_review(images), timeout=timeout)
    return response, time.monotonic() - started


def test_a_moved_tag_is_pinned_to_the_signed_digest_and_its_new_digest_denied(world, tmp_path):
    server = world.start()
    try:
        push_test_image(tmp_path, b"evil", world.web)  # the registry's tag now points elsewhere
        moved = open_repository(Repository(world.registry.host, "acme/web")).get_manifest("1.0").digest
        assert moved != world.digest
        response = server.review("mutate", pod_review([world.web]))
        assert response["allowed"] and decode_patch(response)[0]["value"] == world.pinned
        for endpoint in ("mutate", "validate"):
            denied = server.review(endpoint, pod_review([f"{world.web}@{moved}"]))
            assert denied["allowed"] is False
            assert denied["status"]["message"] == (f"{world.web}@{moved}: asks for {moved} but web:1.0 is signed "
                                                   f"as {world.digest}")
            digest_only = server.review(endpoint, pod_review([f"{world.scope}/web@{moved}"]))
            assert digest_only["allowed"] is False and "no signed tag" in digest_only["status"]["message"]
        unsigned_tag = f"{world.scope}/web:latest-evil"
        push_test_image(tmp_path, b"evil 2", unsigned_tag)
        denied = server.review("mutate", pod_review([unsigned_tag]))
        assert denied["status"]["message"] == f"{unsigned_tag}: web:latest-evil is not signed in {world.scope}"
    finally:
        server.stop()


def test_replayed_old_metadata_keeps_the_newer_view_then_fails_closed(world, tmp_path):
    tuf = open_repository(Repository(world.registry.host, "acme/tuf"))
    old_timestamp = tuf.get_manifest("timestamp").data
    newer = f"{world.scope}/web:1.1"
    push_test_image(tmp_path, b"web 1.1", newer)
    world.maintainer.ok("target", "add", "--publish", newer)
    server = world.start(freshness="3s")
    try:
        assert server.review("mutate", pod_review([newer]))["allowed"]
        tuf.put_manifest("timestamp", old_timestamp, MANIFEST_MEDIA_TYPE)  # replay a validly signed old state
        deadline = time.monotonic() + 20
        while f'tufoci_refresh_errors_total{{scope="{world.scope}"}} 0' in server.request("GET", "/metrics")[2].decode():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        assert "BadVersionNumberError" in server.log() or "version" in server.log()
        time.sleep(3.2)  # the newer view ages past W: the rollback never wins, the webhook fails closed
        stale = server.review("mutate", pod_review([newer]))
        assert stale["allowed"] is False and "trust data stale since" in stale["status"]["message"]
    finally:
        server.stop()
    # a restart with the same cache (a persistent volume) remembers the newer state and rejects the replay
    restarted = WebhookProcess.start(tmp_path / "webhook", world.policy("again.yaml"), wait_ready=False)
    try:
        response, took = timed_review(restarted, "mutate", [world.web], "5s")
        assert response["allowed"] is False and took < 5
        assert f"{world.web}: trust data of {world.scope} rejected: metadata rejected" in response["status"]["message"]
        assert restarted.request("GET", "/readyz")[0] == 503
    finally:
        restarted.stop()


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian faketime is needed")
def test_expired_timestamp_is_metadata_rejected(world, tmp_path):
    server = WebhookProcess.start(tmp_path / "late", world.policy("late.yaml"), prefix=["faketime", "-f", "+2d"],
                                  wait_ready=False)
    try:
        response, took = timed_review(server, "mutate", [world.web], "5s")
        assert response["allowed"] is False and took < 5
        message = response["status"]["message"]
        assert message.startswith(f"{world.web}: trust data of {world.scope} rejected: metadata rejected: "
                                  "timestamp expired")
        assert server.log_events("admission")[0]["images"][0]["reason"] == "metadata-rejected"
    finally:
        server.stop()


def test_registry_down_is_unreachable_within_the_timeout(world, tmp_path):
    world.registry.stop()
    server = WebhookProcess.start(tmp_path / "down", world.policy("down.yaml"), wait_ready=False)
    try:
        response, took = timed_review(server, "validate", [world.pinned], "3s")
        assert response["allowed"] is False and took < 3
        assert response["status"]["message"].startswith(f"{world.pinned}: trust data of {world.scope} ")
        assert server.log_events("admission")[0]["images"][0]["reason"] == "trust-data-unreachable"
        assert server.request("GET", "/readyz")[0] == 503
    finally:
        server.stop()


def test_a_stalled_registry_is_unreachable_within_the_timeout(world, tmp_path):
    proxy = TamperProxy.start(world.registry.host)

    def stall(exchange):
        proxy.sleep(120)
        return None

    proxy.add(stall)
    scope = f"{proxy.host}/acme"
    policy = write_policy(tmp_path / "stalled.yaml", {scope: world.root})
    # registry reads give up after 3 s (default 30 s) so that the recovery below comes quickly
    server = WebhookProcess.start(tmp_path / "stalled", policy, wait_ready=False,
                                  env={"TUFOCI_REGISTRY_TIMEOUT": "3"})
    try:
        image = f"{scope}/web:1.0"
        response, took = timed_review(server, "mutate", [image], "2s")
        assert response["allowed"] is False and took < 2, took
        assert response["status"]["message"] == (f"{image}: trust data of {scope} could not be loaded within "
                                                  f"1.5s")
        # the link recovers: the load in the background (or the next one) admits
        proxy.clear()
        deadline = time.monotonic() + 60
        while not server.review("mutate", pod_review([image]), timeout="2s")["allowed"]:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.5)
    finally:
        server.stop()
        proxy.stop()
