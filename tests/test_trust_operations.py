"""Issue 15: trust operations without ceremony (items 2, 3 and 6).

Every person is a separate TUFOCI_HOME sharing only the registry, the root file
and public keys; the online key lives only with the online service(s), which
run as real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, push_test_image, reviewed_sign

pytestmark = needs_registry
TUFOCI = str(Path(sys.executable).with_name("tufoci"))


def status_of(machine: Machine, scope: str) -> dict:
    return json.loads(machine.ok("status", scope, "-o", "json").stdout)


@pytest.fixture
def team(registry, tmp_path: Path, home: Path, monkeypatch):
    """security holds root and the online key; targets needs 2 of alice and bob, who hold no online key."""
    scope = f"{registry.host}/acme"
    security, alice, bob, cluster = (Machine(n, tmp_path, monkeypatch) for n in ("security", "alice", "bob", "cluster"))
    security.new_key("root")
    security.new_key("online", "--unencrypted")
    keys = [m.new_key(m.name) for m in (alice, bob)]
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "root", "--online-key", "online",
                "--root-out", str(root_file))
    security.ok("rotate", scope, "targets", *sum((["--add-key", str(k)] for k in keys), []),
                "--remove-key", "root", "--threshold", "2")
    security.ok("publish", scope)
    for machine in (alice, bob, cluster):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    review = alice.ok("status", scope).stdout  # key ids in full, then the name this machine knows them by
    alice_keyid = json.loads(alice.ok("key", "list", "-o", "json").stdout)[0]["keyid"]
    assert f"+key {alice_keyid} (alice)" in review, review
    reviewed_sign(alice, scope, "targets")
    reviewed_sign(bob, scope, "targets")
    security.ok("publish", scope)
    return {"scope": scope, "security": security, "alice": alice, "bob": bob, "cluster": cluster,
            "tmp_path": tmp_path, "registry": registry}


def start_service(machine: Machine, scope: str, *options: str) -> subprocess.Popen:
    env = {**os.environ, "TUFOCI_HOME": str(machine.home)}
    return subprocess.Popen([TUFOCI, "online-service", scope, "--every", "1h", "--poll", "1s", *options], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def two_signer_session(registry, tmp_path: Path, monkeypatch, *init_options: str) -> tuple[str, Machine, Machine, Path]:
    """alice initialises REGISTRY/acme with targets 2 of 2 (her key and bob's, each generated on its own machine):
    an initial signing session. Returns the scope, alice, bob and the root file to pin."""
    scope = f"{registry.host}/acme"
    alice, bob = (Machine(n, tmp_path, monkeypatch) for n in ("alice", "bob"))
    bob_key = bob.new_key("bob")
    alice.new_key("alice")
    alice.new_key("root")
    alice.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    alice.ok("init", scope, "--root-key", "root", "--online-key", "online", "--root-out", str(root_file),
             "--targets-key", "alice", "--targets-key", str(bob_key), "--targets-threshold", "2", *init_options)
    return scope, alice, bob, root_file


def wait_until_live(cluster: Machine, reference: str, *, timeout: float = 60) -> None:
    """Until the online service made version 1 live: ``verify`` of a tag never signed then exits 10 (not signed),
    where it exited 13 (no trust data yet)."""
    deadline = time.monotonic() + timeout
    while cluster("verify", reference).exit_code != 10:
        assert time.monotonic() < deadline, "version 1 did not go live"
        time.sleep(0.5)


def stop_service(service: subprocess.Popen) -> list[dict]:
    service.terminate()
    _, err = service.communicate(timeout=60)
    assert service.returncode == 0, err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_online_services_promote_a_complete_proposal_exactly_once(team):
    """Two real online services race for the same complete proposal: exactly one publishes it."""
    scope, alice, bob, cluster, security = (team[k] for k in ("scope", "alice", "bob", "cluster", "security"))
    services = [Machine(f"online{i}", team["tmp_path"], security.monkeypatch) for i in (1, 2)]
    for machine in services:
        security.share_key(machine, "online")
        machine.ok("trust", "add", scope, "--root", str(team["tmp_path"] / "root.json"))
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    alice.ok("target", "add", f"{scope}/web:1.1")
    assert "proposed targets v3: 1 of 2 signatures" in alice.ok("publish", scope).stdout
    reviewed_sign(bob, scope, "targets")
    # bob holds no online key: his publish says who makes it live, and when
    waiting = bob.ok("publish", scope)
    assert "targets v3 complete; goes live within 30 s (online service)" in waiting.stdout
    assert cluster("verify", f"{scope}/web:1.1").exit_code == 10  # not live yet

    running = [start_service(m, scope) for m in services]
    try:
        deadline = time.monotonic() + 90
        while cluster("verify", f"{scope}/web:1.1").exit_code != 0:
            assert time.monotonic() < deadline, "the online services did not publish the complete proposal"
            time.sleep(0.5)
        time.sleep(3)  # both services poll again after the publish: neither publishes it a second time
    finally:
        logs = [stop_service(s) for s in running]
    published = [r for log in logs for r in log if r["event"] == "published"]
    assert len(published) == 1, "\n".join(json.dumps(r) for log in logs for r in log)
    assert published[0]["promoted"] == ["targets"] and published[0]["versions"]["targets"] == 3
    statuses = [json.loads((m.home / "online-status.json").read_text()) for m in services]
    assert sum(len(s["published"]) for s in statuses) == 1, statuses
    assert all(s["pollSeconds"] == 1 and s["lastPoll"] for s in statuses)
    assert status_of(alice, scope)["proposals"] == []  # the proposal is history, not open


def test_online_service_keeps_its_high_water_marks(team):
    """The service refuses to promote on top of a state older than it saw (a timestamp put back)."""
    scope, alice, bob, security, registry = (team[k] for k in ("scope", "alice", "bob", "security", "registry"))
    service = Machine("online", team["tmp_path"], security.monkeypatch)
    security.share_key(service, "online")
    service.ok("trust", "add", scope, "--root", str(team["tmp_path"] / "root.json"))
    service.ok("timestamp", scope)  # its marks: the current state
    old, _ = registry.get_manifest("acme/tuf", "timestamp")
    service.ok("timestamp", scope)
    status, _, _ = registry.request("PUT", "/v2/acme/tuf/manifests/timestamp", data=old,
                                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    alice.ok("target", "add", f"{scope}/web:1.1")
    alice.ok("publish", scope)
    reviewed_sign(bob, scope, "targets")
    running = start_service(service, scope)
    time.sleep(4)
    log = stop_service(running)
    assert not [r for r in log if r["event"] == "published"], log
    assert any("older state" in r["msg"] for r in log if r["event"] == "error"), log


def test_discard_removes_only_my_own_proposal_unless_forced(team):
    scope, alice, bob = team["scope"], team["alice"], team["bob"]
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    alice.ok("config", "set", "actor", "alice@acme")
    alice.ok("target", "add", f"{scope}/web:1.1")
    alice.ok("publish", scope)
    (proposal,) = status_of(bob, scope)["proposals"]
    assert proposal["proposer"] == "alice@acme"

    refused = bob("discard", scope, "targets")
    assert refused.exit_code == 2 and "not this machine's (proposed by alice@acme)" in refused.stderr
    assert status_of(bob, scope)["proposals"], "the colleague's proposal is still open"
    forced = bob.ok("discard", "--force", scope, "targets")
    assert "proposed by alice@acme" in forced.stdout
    assert status_of(alice, scope)["proposals"] == []


def test_my_own_proposal_is_named_after_my_key_and_discarded_without_force(team):
    scope, bob = team["scope"], team["bob"]
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    bob.ok("target", "add", f"{scope}/web:1.1")
    bob.ok("publish", scope)
    (proposal,) = status_of(bob, scope)["proposals"]
    assert proposal["proposer"] == "bob"  # the key's name, never user@host
    assert "proposed by bob" in bob.ok("discard", scope, "targets").stdout


def test_a_change_staged_behind_an_open_proposal_is_queued_or_folded(team):
    scope, alice, bob = team["scope"], team["alice"], team["bob"]
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    push_test_image(team["tmp_path"], b"api 1.0", f"{scope}/api:1.0")
    alice.ok("target", "add", f"{scope}/web:1.1")
    alice.ok("publish", scope)
    bob.ok("target", "add", f"{scope}/api:1.0")

    queued = bob.ok("publish", scope, "-o", "json")
    assert json.loads(queued.stdout)["queued"] == {"targets": 3}
    report = status_of(bob, scope)
    assert [c["target"] for c in report["staged"]] == ["api:1.0"]  # never lost, never a dead end
    step = next(s for s in report["next"] if s["action"] == "queued")
    assert step["role"] == "targets" and "targets v3" in step["why"] and "--fold" in step["command"]

    folded = bob.ok("publish", "--fold", scope)
    assert "proposed targets v3: 1 of 2 signatures (targets) (replaces the open v3: its signers must sign again)" \
        in folded.stdout
    report = status_of(alice, scope)
    (proposal,) = report["proposals"]
    assert {"web:1.1", "api:1.0"} <= set(json.dumps(proposal["changes"]).replace('"', " ").split()), proposal["changes"]
    alice_sig = [s for s in proposal["signatures"] if s["key"] == "alice"]
    assert alice_sig and not alice_sig[0]["counted"]  # she signed the earlier bytes
    assert proposal["next"]["action"] == "sign" and proposal["next"]["who"] == ["alice"]
    assert status_of(bob, scope)["staged"] == []
    reviewed_sign(alice, scope, "targets")
    assert status_of(alice, scope)["proposals"][0]["next"]["action"] == "publish"


def test_changes_queued_behind_a_proposal_are_proposed_by_the_next_publish_once_it_is_live(team):
    """The online key holder (here: security) makes the open proposal live; bob's queue is on bob's machine, so
    status tells him, and his next plain publish proposes it."""
    scope, alice, bob, security = team["scope"], team["alice"], team["bob"], team["security"]
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    push_test_image(team["tmp_path"], b"api 1.0", f"{scope}/api:1.0")
    alice.ok("target", "add", f"{scope}/web:1.1")
    alice.ok("publish", scope)
    bob.ok("target", "add", f"{scope}/api:1.0")
    assert json.loads(bob.ok("publish", scope, "-o", "json").stdout)["queued"] == {"targets": 3}
    reviewed_sign(bob, scope, "targets")  # v3 is complete: it goes live without bob's change
    (step,) = [s for s in status_of(bob, scope)["next"] if s["action"] == "queued"]
    assert "queued behind targets v3; will be proposed when it goes live" in step["why"], step

    security.ok("publish", scope)  # targets v3 goes live
    (step,) = [s for s in status_of(bob, scope)["next"] if s["role"] == "targets"]
    assert step["action"] == "publish" and step["command"] == f"tufoci publish {scope}"
    assert "queued behind targets v3, which is no longer open: run publish now" in step["why"], step
    proposed = json.loads(bob.ok("publish", scope, "-o", "json").stdout)
    assert proposed["queued"] == {} and proposed["proposed"]["targets"]["version"] == 4
    assert status_of(bob, scope)["staged"] == []
    (proposal,) = status_of(alice, scope)["proposals"]
    assert "api:1.0" in json.dumps(proposal["changes"]) and "web:1.1" not in json.dumps(proposal["changes"])


def test_the_publish_that_makes_the_open_proposal_live_proposes_what_was_queued_behind_it(team):
    scope, alice, bob, security = team["scope"], team["alice"], team["bob"], team["security"]
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    push_test_image(team["tmp_path"], b"api 1.0", f"{scope}/api:1.0")
    alice.ok("target", "add", f"{scope}/web:1.1")
    alice.ok("publish", scope)
    reviewed_sign(bob, scope, "targets")
    security.ok("target", "add", f"{scope}/api:1.0")  # security holds the online key, no targets key
    result = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert result["published"]["targets"] == 3 and result["queued"] == {}
    assert result["proposed"]["targets"]["version"] == 4  # no second command, no flag
    assert status_of(security, scope)["staged"] == []


def test_status_says_what_happens_next_and_who(team):
    scope, alice, bob = team["scope"], team["alice"], team["bob"]
    calm = bob.ok("status", scope)
    assert "next: nothing to do" in calm.stdout
    push_test_image(team["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    alice.ok("target", "add", f"{scope}/web:1.1")
    staged = status_of(alice, scope)["next"]
    assert staged == [{"role": "targets", "action": "publish", "who": ["this machine"],
                       "command": f"tufoci publish {scope}"}]
    alice.ok("publish", scope)
    text = bob.ok("status", scope).stdout
    assert "next for targets: sign — bob: tufoci sign" in text and "--expect" in text
    reviewed_sign(bob, scope, "targets")
    (step,) = status_of(bob, scope)["next"]
    assert step["action"] == "publish" and step["who"][0] == "the online service"
    roles = {r["role"]: r for r in status_of(bob, scope)["roles"]}
    assert "bob" in roles["targets"]["keyNames"]  # alice's key is not in bob's catalogue: a key id prefix
    assert roles["targets"]["next"] is None


def test_init_with_a_threshold_this_machine_cannot_meet_is_an_initial_signing_session(registry, tmp_path: Path,
                                                                                      home: Path, monkeypatch):
    """Issue 15.1: targets 2 of 3 from init. Consumers see nothing until bob signs; then version 1 goes live
    through the online service, which alice's machine hands the online key to."""
    scope = f"{registry.host}/acme"
    alice, bob, cluster, online = (Machine(n, tmp_path, monkeypatch) for n in ("alice", "bob", "cluster", "online"))
    keys = [m.new_key(n) for m, n in ((alice, "alice"), (bob, "bob"), (cluster, "carol"))]
    alice.new_key("root")
    alice.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    init = alice.ok("init", scope, "--root-key", "root", "--online-key", "online", "--root-out", str(root_file),
                    "--targets-key", "alice", "--targets-key", str(keys[1]), "--targets-key", str(keys[2]),
                    "--targets-threshold", "2", "-o", "json")
    assert json.loads(init.stdout)["awaiting"] == {"targets": {"version": 1, "have": 1, "need": 2}}
    assert registry.get_manifest("acme/tuf", "staged.targets.1")
    for machine in (bob, cluster, online):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    missing = cluster("verify", f"{scope}/web:1.0")
    assert missing.exit_code == 13 and "awaiting its first signatures" in missing.stderr
    by_hash = Machine("late", tmp_path, monkeypatch)("trust", "add", scope, "--root-sha256", "0" * 64)
    assert by_hash.exit_code == 13 and "awaiting its first signatures" in by_hash.stderr

    report = status_of(bob, scope)
    assert report["awaitingFirstSignatures"] and [r["role"] for r in report["roles"]] == ["root"]
    assert report["proposals"][0]["next"]["who"][0] == "bob"
    reviewed_sign(bob, scope, "targets")
    assert "targets v1 complete; goes live within 30 s (online service)" in bob.ok("publish", scope).stdout
    assert cluster("verify", f"{scope}/web:1.0").exit_code == 13  # still nothing live

    alice.share_key(online, "online")
    service = start_service(online, scope)
    try:
        wait_until_live(cluster, f"{scope}/web:1.0")
    finally:
        log = stop_service(service)
    (published,) = [r for r in log if r["event"] == "published"]
    assert published["versions"] == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}
    assert status_of(alice, scope)["proposals"] == [] and not status_of(alice, scope)["awaitingFirstSignatures"]


def test_a_pinned_root_v1_that_expired_during_the_signing_session_never_goes_live(registry, tmp_path: Path,
                                                                                   home: Path, monkeypatch):
    """Targets v1, once complete, goes live with the pinned root v1 itself: if that root expired meanwhile, the
    first set would be one no consumer accepts (exit 12), so targets v1 is held and the publish says why."""
    scope, alice, bob, root_file = two_signer_session(registry, tmp_path, monkeypatch, "--expires", "root=10s")
    bob.ok("trust", "add", scope, "--root", str(root_file))
    reviewed_sign(bob, scope, "targets")
    expires = json.loads(root_file.read_text())["signed"]["expires"]
    time.sleep(max(0.0, time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime()) + 1))

    held = alice("publish", scope)  # alice holds the online key: without the hold, exit 12 and a dead scope
    assert held.exit_code == 1 and "targets v1 is complete but waits for root v1, which expired at" in held.stderr
    assert "timestamp" not in registry.tags("acme/tuf")  # nothing went live
