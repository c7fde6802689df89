"""Independent review of the enforcement and operations (2026-12): findings and their regression tests.

In the registry tests every person is a separate TUFOCI_HOME sharing only the registry and the root file; the
online service runs as a real process, the attacker has push (and delete) access to the registry and nothing else.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, reviewed_sign
from tests.test_trust_operations import start_service, stop_service
from tufoci.registry_config import Proxies

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.mark.parametrize(("no_proxy", "url", "proxied"), [
    ("[::1]:5000", "http://[::1]:5000/v2/", False),  # the bracketed HOST:PORT docs/registries.md promises
    ("[::1]:5000", "http://[::1]:6000/v2/", True),
    ("[fd00::1]", "https://[fd00::1]:8443/v2/", False),
    ("fd00::1", "https://[fd00::1]/v2/", False),
    ("[fd00::1]:443", "https://[fd00::1]:8443/v2/", True),
])
def test_no_proxy_with_an_ipv6_host_and_port(no_proxy: str, url: str, proxied: bool):
    """``NO_PROXY=[::1]:5000`` was not honoured: a plain-HTTP registry the user excluded from the proxy sent its
    requests, credentials included, through it."""
    proxies = Proxies.from_environment({"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128",
                                        "NO_PROXY": no_proxy})
    assert (proxies.for_url(url) is not None) == proxied


@needs_registry
@pytest.mark.parametrize("cache_lost", [False, True])
def test_a_removed_timestamp_does_not_send_a_live_repository_back_to_its_initial_signing_session(
        registry, tmp_path: Path, home: Path, monkeypatch, cache_lost: bool):
    """Version 1 went live through the online service. Someone with push access deletes ``timestamp`` and puts the
    old (fully signed) targets v1 proposal back: the registry looks like an initial signing session again. The
    service has seen the scope live (its trusted cache, its high-water marks): it must refuse to publish a second
    "version 1" — a rollback (and a fork) that every new consumer would trust. Its marks in state.db are enough
    (a cache is a cache: removed to "fix" something, it is gone)."""
    from tests.test_trust_operations import two_signer_session

    scope, alice, bob, root_file = two_signer_session(registry, tmp_path, monkeypatch)
    online = Machine("online", tmp_path, monkeypatch)
    for machine in (bob, online):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    reviewed_sign(bob, scope, "targets")
    bob.ok("publish", scope)
    proposal, _ = registry.get_manifest("acme/tuf", "staged.targets.1")  # complete: both signatures
    alice.share_key(online, "online")
    service = start_service(online, scope)
    try:
        deadline = time.monotonic() + 60
        while not registry.request("HEAD", "/v2/acme/tuf/manifests/timestamp", headers={"Accept": MANIFEST})[0] == 200:
            assert time.monotonic() < deadline, "version 1 did not go live"
            time.sleep(0.5)
    finally:
        stop_service(service)
    live, digest = registry.get_manifest("acme/tuf", "timestamp")

    if cache_lost:
        shutil.rmtree(online.home / "cache")
    # the attacker: timestamp gone, the complete targets v1 proposal back under its proposal tag
    assert registry.request("DELETE", f"/v2/acme/tuf/manifests/{digest}")[0] == 202
    assert registry.request("HEAD", "/v2/acme/tuf/manifests/timestamp", headers={"Accept": MANIFEST})[0] == 404
    status, _, _ = registry.request("PUT", "/v2/acme/tuf/manifests/staged.targets.1", data=proposal,
                                    headers={"Content-Type": MANIFEST})
    assert status == 201
    service = start_service(online, scope)
    time.sleep(4)
    log = stop_service(service)
    assert not [r for r in log if r["event"] == "published"], log
    assert registry.request("HEAD", "/v2/acme/tuf/manifests/timestamp", headers={"Accept": MANIFEST})[0] == 404
    assert any("has no timestamp" in r["msg"] for r in log if r["event"] == "error"), json.dumps(log)
