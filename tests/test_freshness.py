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


def test_timestamp_service_never_re_signs_an_old_state_put_back(registry, tmp_path: Path, home: Path, monkeypatch):
    """Issue 20.4: someone with push access puts an old, expired ``timestamp`` back (web:1.0 revoked since);
    a timestamp service must not sign it again, with or without its own persistent state."""
    name, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    kept_by_attacker, _ = registry.get_manifest("acme/tuf", "timestamp")
    maintainer.ok("target", "remove", name, "web:1.0")
    maintainer.ok("publish", name)
    machines = {}
    for machine_name in ("cronjob", "service", "fresh"):
        machines[machine_name] = Machine(machine_name, tmp_path, monkeypatch)
        machines[machine_name].ok("trust", "add", name, "--root", str(root))
        if machine_name != "fresh":
            maintainer.share_key(machines[machine_name], "online")
    cronjob, service, fresh = machines["cronjob"], machines["service"], machines["fresh"]
    assert at("+1h", service, "timestamp", name).returncode == 0  # its marks: the state after the revocation
    current, _ = registry.get_manifest("acme/tuf", "timestamp")

    def put_timestamp(manifest: bytes) -> None:
        status, _, body = registry.request("PUT", "/v2/acme/tuf/manifests/timestamp", data=manifest,
                                           headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert status == 201, body

    put_timestamp(kept_by_attacker)
    # no marks (a CronJob on an emptyDir): an expired timestamp is not extended without being told, and why
    refused = at("+30h", cronjob, "timestamp", name)
    assert refused.returncode == 12, refused.stderr
    assert "timestamp v2 expired at" in refused.stderr and "--revive-expired" in refused.stderr
    assert "targets v2" in refused.stderr, refused.stderr  # names the state it would revive
    # marks kept in state.db (the ngclient cache lost): refused as a rollback, even when told to revive
    shutil.rmtree(service.home / "cache")
    rollback = at("+30h", service, "timestamp", name, "--revive-expired")
    assert rollback.returncode == 12 and "older state" in rollback.stderr, rollback.stderr
    assert "timestamp v2 < v4" in rollback.stderr, rollback.stderr
    assert at("+30h", fresh, "verify", f"{name}/web:1.0").returncode == 12  # nobody re-signed the revoked state

    put_timestamp(current)  # the real state, expired by now: marks let the service extend it without a flag
    assert at("+30h", service, "timestamp", name).returncode == 0
    assert at("+30h", fresh, "verify", f"{name}/web:1.0").returncode == 10  # still revoked
