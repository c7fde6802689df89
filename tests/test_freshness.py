"""Freshness: the timestamp service, expiry warnings, and clients rejecting expired metadata.

Time is driven with Debian's faketime for real processes.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web

pytestmark = [needs_registry, pytest.mark.skipif(shutil.which("faketime") is None and not os.environ.get("CI"),
                                                 reason="Debian faketime is needed")]
TUFOCI = str(Path(sys.executable).with_name("tufoci"))


def at(offset: str, machine: Machine, *args: str) -> subprocess.CompletedProcess:
    """Run tufoci as ``machine`` with the clock moved by ``offset`` (e.g. +20h)."""
    env = {**os.environ, "TUFOCI_HOME": str(machine.home)}
    return subprocess.run(["faketime", "-f", offset, TUFOCI, *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def scope(registry, tmp_path: Path, home: Path, monkeypatch):
    name, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", name, "--root", str(root))
    return {"scope": name, "maintainer": maintainer, "cluster": cluster, "registry": registry}


def test_status_warns_before_expiry_and_check_fails_for_monitoring(scope):
    maintainer, name = scope["maintainer"], scope["scope"]
    calm = at("+1h", maintainer, "status", name, "--check")
    assert calm.returncode == 0 and "warning" not in calm.stderr
    soon = at("+20h", maintainer, "status", name, "--check", "-o", "json")
    assert soon.returncode == 1
    roles = {r["role"]: r for r in json.loads(soon.stdout)["roles"]}
    assert roles["timestamp"]["warning"] == "expires soon" and roles["targets"]["warning"] is None
    assert "tufoci: warning: timestamp v2 expires soon" in soon.stderr
    custom = at("+20h", maintainer, "status", name, "--warn", "timestamp=1h", "--check")
    assert custom.returncode == 0


def test_timestamp_refresh_keeps_clients_verifying(scope):
    maintainer, cluster, name = scope["maintainer"], scope["cluster"], scope["scope"]
    expired = at("+30h", cluster, "verify", f"{name}/web:1.0")
    assert expired.returncode == 12 and "timestamp expired at" in expired.stderr

    refreshed = at("+20h", maintainer, "timestamp", name)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("timestamp v3 expires") and "snapshot" not in refreshed.stdout
    assert at("+30h", cluster, "verify", f"{name}/web:1.0").returncode == 0

    # close to the snapshot's expiry (7 days) the snapshot is re-signed too
    late = at("+156h", maintainer, "timestamp", name)
    assert late.returncode == 0 and "snapshot v3" in late.stdout, late.stdout + late.stderr
    assert at("+174h", cluster, "verify", f"{name}/web:1.0").returncode == 0


def test_timestamp_service_survives_an_outage_and_stops_on_sigterm(scope):
    maintainer, name, registry = scope["maintainer"], scope["scope"], scope["registry"]
    env = {**os.environ, "TUFOCI_HOME": str(maintainer.home)}
    service = subprocess.Popen([TUFOCI, "timestamp", name, "--every", "1s"], env=env, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in service.stderr], daemon=True).start()

    def wait_for(text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout}s")

    try:
        wait_for("timestamp v3 expires")
        wait_for("timestamp v4 expires")
        registry.stop()  # outage
        assert "cannot reach registry" in wait_for("refresh failed")
        assert service.poll() is None  # still running
        scope["registry"] = registry.restart()
        wait_for("expires", timeout=30)  # recovered
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
        wait_for("stopping: signal received")
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
