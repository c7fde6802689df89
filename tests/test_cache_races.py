"""Refreshes that overlap on one TUFOCI_HOME never roll the trusted cache back (issue 11 item 1).

A registry (the tamper proxy) holds the timestamp answer of the refresh that
started first, and answers it with an older, validly signed state once a second
refresh, started later, has committed the newest one. Whatever finishes last,
the cache keeps the newest state, and a replay of the older one is refused.
Real processes race for the CLI; threads race for the in-process ``Verifier``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web, push_test_image
from tests.support.tamper_proxy import Reply, TamperProxy, on
from tufoci.client.verify import Verifier
from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, parse_metadata_manifest
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry
TIMESTAMP = r"/v2/acme/tuf/manifests/timestamp"


@dataclass
class Race:
    proxy: TamperProxy
    consumer: Machine
    first: bytes  # the timestamp manifest of the publish the consumer's cache holds
    older: bytes  # the timestamp manifest of a publish between the consumer's cache and the newest
    newest_version: int

    def ref(self, tag: str) -> str:
        return f"{self.proxy.host}/acme/web:{tag}"

    def cached_timestamp_version(self) -> int:
        (path,) = (self.consumer.home / "cache").glob("*/timestamp.json")
        return json.loads(path.read_bytes())["signed"]["version"]

    def serve(self, manifest: bytes, release: threading.Event | None = None) -> Callable:
        """A timestamp manifest instead of the registry's; held back until ``release`` when given."""
        def reply(_exchange) -> Reply:
            if release is not None:
                release.wait(timeout=60)
            return Reply(200, [("Content-Type", MANIFEST_MEDIA_TYPE)], manifest)
        return on(TIMESTAMP, reply)


@pytest.fixture
def race(registry, tmp_path: Path, home: Path, monkeypatch) -> Iterator[Race]:
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    proxy = TamperProxy.start(registry.host)
    try:
        consumer = Machine("consumer", tmp_path, monkeypatch)
        consumer.ok("trust", "add", f"{proxy.host}/acme", "--root", str(root))
        consumer.ok("verify", f"{proxy.host}/acme/web:1.0")  # the cache holds the first publish
        versions = [registry.get_manifest("acme/tuf", "timestamp")[0]]
        for tag in ("1.1", "1.2"):  # two more publishes: the older one is what the held refresh gets
            push_test_image(tmp_path, f"web {tag}".encode(), f"{scope}/web:{tag}")
            maintainer.ok("target", "add", "--publish", f"{scope}/web:{tag}")
            versions.append(registry.get_manifest("acme/tuf", "timestamp")[0])
        layer = parse_metadata_manifest(versions[-1]).layer
        newest = registry_store(registry.host).get_blob(layer.digest, max_bytes=layer.size)
        consumer.monkeypatch.setenv("TUFOCI_HOME", str(consumer.home))
        yield Race(proxy, consumer, *versions[:2], json.loads(newest)["signed"]["version"])
    finally:
        proxy.stop()


def registry_store(host: str):
    return open_repository(Repository(host, "acme/tuf"))


def _process(race: Race, tag: str) -> Callable[[], int]:
    """Start ``tufoci verify`` as a real process; the returned call waits for its exit code."""
    tufoci = str(Path(sys.executable).with_name("tufoci"))
    env = {**os.environ, "TUFOCI_HOME": str(race.consumer.home), "TUFOCI_NO_AGENT": "1"}
    process = subprocess.Popen([tufoci, "verify", "--skip-registry-check", race.ref(tag)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait() -> int:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        return process.returncode
    return wait


def _thread(verifier: Verifier) -> Callable[[Race, str], Callable[[], int]]:
    """Run ``verifier.verify`` on a thread of this process (the agent, a webhook)."""
    def start(race: Race, tag: str) -> Callable[[], int]:
        outcomes: list = []
        worker = threading.Thread(target=lambda: outcomes.extend(verifier.verify([race.ref(tag)])), daemon=True)
        worker.start()

        def wait() -> int:
            worker.join(timeout=60)
            assert outcomes and outcomes[0].error is None, outcomes
            return 0
        return wait
    return start


def _hold_the_first_refresh(race: Race, start: Callable[[Race, str], Callable[[], int]]) -> None:
    """The earlier refresh is held at its timestamp; the later one commits the newest state; then the
    earlier one gets the older publish and finishes last."""
    release, first_seen = threading.Event(), threading.Event()
    answered = []

    def rule(exchange) -> Reply | None:
        if exchange.method != "GET" or answered:
            return None  # the later refresh: the registry's newest state
        answered.append(exchange)
        first_seen.set()
        return race.serve(race.older, release)(exchange)
    race.proxy.add(on(TIMESTAMP, rule))
    try:
        earlier = start(race, "1.1")
        assert first_seen.wait(timeout=30), "the first refresh never asked for the timestamp"
        start(race, "1.2")()
        assert race.cached_timestamp_version() == race.newest_version
    finally:
        release.set()
    earlier()
    race.proxy.clear()


def test_an_earlier_process_finishing_last_never_rolls_the_cache_back(race: Race):
    _hold_the_first_refresh(race, _process)
    assert race.cached_timestamp_version() == race.newest_version
    race.proxy.add(race.serve(race.older))  # the registry now replays the older publish
    result = race.consumer("verify", race.ref("1.1"))
    assert result.exit_code == 12, result.stderr
    assert "version" in result.stderr


def test_threads_of_one_verifier_never_roll_back_the_cache_nor_its_answers(race: Race):
    verifier = Verifier()
    race.proxy.add(race.serve(race.first))
    assert verifier.verify([race.ref("1.0")], check_registry=False)[0].error is None  # warm, at the first publish
    race.proxy.clear()
    _hold_the_first_refresh(race, _thread(verifier))
    assert race.cached_timestamp_version() == race.newest_version
    race.proxy.add(race.serve(race.older))
    (outcome,) = verifier.verify([race.ref("1.0")])
    assert isinstance(outcome.error, MetadataRejectedError), outcome
    assert "version" in str(outcome.error)


def test_a_held_lock_is_waited_for_only_within_the_budget(race: Race, tmp_path: Path):
    import fcntl

    from tufoci import budget
    from tufoci.client.refresh import cache_lock
    from tufoci.errors import TimedOutError

    cache = str(tmp_path / "some-cache")
    with open(tmp_path / ".some-cache.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a stuck process holding the lock
        started = time.monotonic()
        with budget.budget(0.5), pytest.raises(TimedOutError, match=r"gave up after 0.5 s .* lock of the trusted"):
            with cache_lock(cache):
                pass
        assert time.monotonic() - started < 2
