"""Deadlines that hold for every byte, and one overall budget per command (issue 11 item 3).

The tamper proxy plays a registry that stalls before its status line, or drips
the status line or the headers one byte at a time: each read then succeeds
within the read timeout, so only a deadline checked on every read can end the
request. ``--timeout`` (``TUFOCI_TIMEOUT``) bounds the whole command, retries
included, with exit 13 naming the registry and the request it waited for. The
registry timeouts stay at their defaults (30 s read, 120 s per request) here:
the budget alone must end these commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web
from tests.support.tamper_proxy import Reply, TamperProxy, on

pytestmark = needs_registry
TUFOCI = str(Path(sys.executable).with_name("tufoci"))
TIMESTAMP = r"/v2/acme/tuf/manifests/timestamp"
SLACK = 3.0  # seconds beyond the budget for process start-up on a loaded 2-core machine


def _drip(proxy: TamperProxy, head: bytes, then: bytes) -> Iterator[bytes]:
    """``head`` at once, then ``then`` one byte every 0.2 s, forever (until the proxy stops, or 60 s)."""
    yield head
    for _ in range(300):
        if not proxy.sleep(0.2):
            return
        yield then


STALLS: dict[str, Callable[[TamperProxy], Reply]] = {
    "stalls before the status line": lambda proxy: Reply(stall=60),
    "drips the status line": lambda proxy: Reply(raw=_drip(proxy, b"HTTP/1.1 200 ", b"O")),
    "drips the headers": lambda proxy: Reply(raw=_drip(proxy, b"HTTP/1.1 200 OK\r\nX-Drip: ", b"a")),
}


@pytest.fixture
def stalled(registry, tmp_path: Path, home: Path, monkeypatch) -> Iterator[tuple[TamperProxy, Machine]]:
    """A consumer whose scope is reached through the proxy (and a warm cache, as a deploy would have)."""
    for name in ("TUFOCI_REGISTRY_TIMEOUT", "TUFOCI_REGISTRY_DEADLINE", "TUFOCI_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    _, _, root = publish_web(registry.host, tmp_path, monkeypatch)
    proxy = TamperProxy.start(registry.host)
    try:
        consumer = Machine("consumer", tmp_path, monkeypatch)
        consumer.ok("trust", "add", f"{proxy.host}/acme", "--root", str(root))
        consumer.ok("verify", f"{proxy.host}/acme/web:1.0")
        yield proxy, consumer
    finally:
        proxy.stop()


@pytest.mark.parametrize("how", list(STALLS))
def test_verify_ends_within_its_timeout_exit_13_naming_what_it_waited_for(stalled, how):
    proxy, consumer = stalled
    proxy.add(on(TIMESTAMP, lambda _: STALLS[how](proxy)))
    started = time.monotonic()
    result = consumer("verify", "--timeout", "3s", f"{proxy.host}/acme/web:1.0")
    elapsed = time.monotonic() - started
    assert result.exit_code == 13, result.stderr
    assert result.stderr == (f"tufoci: error: {proxy.host}/acme: gave up after 3 s (--timeout / TUFOCI_TIMEOUT) "
                             f"waiting for registry "
                             f"{proxy.host} to answer GET /v2/acme/tuf/manifests/timestamp\n")
    assert elapsed < 3 + SLACK, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("how", ["drips the status line", "drips the headers"])
def test_the_per_request_deadline_covers_status_line_and_headers(stalled, how, monkeypatch):
    """Seen before the fix: past 40 s with TUFOCI_REGISTRY_DEADLINE=2 (only the body was timed)."""
    proxy, consumer = stalled
    monkeypatch.setenv("TUFOCI_REGISTRY_DEADLINE", "2")
    proxy.add(on(TIMESTAMP, lambda _: STALLS[how](proxy)))
    started = time.monotonic()
    result = consumer("verify", f"{proxy.host}/acme/web:1.0")
    elapsed = time.monotonic() - started
    assert result.exit_code == 13, result.stderr
    assert f"{proxy.host} did not finish a response within 2 s (GET /v2/acme/tuf/manifests/timestamp)" \
        in result.stderr
    assert elapsed < 2 + SLACK, f"took {elapsed:.1f} s"


def test_timeout_comes_from_the_environment_in_a_real_process(stalled):
    """TUFOCI_TIMEOUT, and retries that come out of the same budget (before: 3 × 30 s read timeouts)."""
    proxy, consumer = stalled
    proxy.add(on(TIMESTAMP, lambda _: Reply(stall=60)))
    env = {**os.environ, "TUFOCI_HOME": str(consumer.home), "TUFOCI_NO_AGENT": "1", "TUFOCI_TIMEOUT": "2s"}
    started = time.monotonic()
    result = subprocess.run([TUFOCI, "verify", f"{proxy.host}/acme/web:1.0"], env=env, capture_output=True,
                            text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 13, result.stderr
    assert "gave up after 2 s" in result.stderr and "GET /v2/acme/tuf/manifests/timestamp" in result.stderr
    assert elapsed < 2 + SLACK, f"took {elapsed:.1f} s"


def test_a_maintainer_command_takes_the_budget_too(stalled):
    proxy, consumer = stalled
    proxy.add(on(r"/v2/acme/web/manifests/1.0", lambda _: Reply(stall=60)))
    started = time.monotonic()
    result = consumer("target", "add", "--timeout", "2s", f"{proxy.host}/acme/web:1.0")
    assert result.exit_code == 13, result.stderr
    assert "gave up after 2 s" in result.stderr and "GET /v2/acme/web/manifests/1.0" in result.stderr
    assert time.monotonic() - started < 2 + SLACK


def test_an_invalid_timeout_is_a_usage_error(stalled):
    _, consumer = stalled
    for value in ("0", "-1", "soon"):
        result = consumer("verify", "--timeout", value, "x/y:1")
        assert result.exit_code == 2, result.stderr


def test_a_stalled_registry_does_not_delay_the_agents_other_callers(registry, tmp_path: Path, home: Path,
                                                                    monkeypatch):
    """Two scopes in one agent: one through a registry that never answers, one healthy. The healthy
    caller is answered at once while the other waits out its own budget."""
    scope, _, root = publish_web(registry.host, tmp_path, monkeypatch)
    proxy = TamperProxy.start(registry.host)
    consumer_home = Path(tempfile.mkdtemp(prefix="ag", dir="/tmp"))  # Unix socket paths must be short
    env = {**os.environ, "TUFOCI_HOME": str(consumer_home)}
    for name in ("TUFOCI_REGISTRY_TIMEOUT", "TUFOCI_REGISTRY_DEADLINE", "TUFOCI_TIMEOUT", "TUFOCI_NO_AGENT"):
        env.pop(name, None)
    agent = None
    try:
        for pinned in (scope, f"{proxy.host}/acme"):
            subprocess.run([TUFOCI, "trust", "add", pinned, "--root", str(root)], env=env, check=True,
                           capture_output=True)
        agent = subprocess.Popen([TUFOCI, "agent", "--freshness", "0s", "--timeout", "8s"], env=env,
                                 stderr=subprocess.PIPE, text=True)
        give_up = time.monotonic() + 20
        while not (consumer_home / "agent.sock").exists():
            assert time.monotonic() < give_up and agent.poll() is None, "agent did not start"
            time.sleep(0.05)
        healthy = f"{scope}/web:1.0"
        assert subprocess.run([TUFOCI, "verify", healthy], env=env, capture_output=True).returncode == 0
        proxy.add(on(TIMESTAMP, lambda _: Reply(stall=60)))
        slow: list[subprocess.CompletedProcess] = []
        caller = threading.Thread(target=lambda: slow.append(subprocess.run(
            [TUFOCI, "verify", f"{proxy.host}/acme/web:1.0"], env=env, capture_output=True, text=True, timeout=60)))
        caller.start()
        deadline = time.monotonic() + 10
        while not any("timestamp" in path for path in proxy.paths()):
            assert time.monotonic() < deadline, "the stalled caller never reached the registry"
            time.sleep(0.02)
        started = time.monotonic()
        fast = subprocess.run([TUFOCI, "verify", healthy], env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        assert fast.returncode == 0, fast.stderr
        # behind a single-threaded agent it would wait out the stalled caller's 8 s budget
        assert took < 4.0, f"the healthy caller waited {took:.1f} s behind the stalled one"
        caller.join(timeout=60)
        assert slow and slow[0].returncode == 13, slow
        assert "gave up after 8 s" in slow[0].stderr and proxy.host in slow[0].stderr
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=20)
        proxy.stop()
        shutil.rmtree(consumer_home, ignore_errors=True)
