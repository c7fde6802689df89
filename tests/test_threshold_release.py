"""Story 2: a release needs 2 of 3 maintainers, who share nothing but the registry.

The security team moves the targets role to three maintainer keys with
threshold 2 (a root change, itself staged until the new targets version is
signed by the new keys). Each maintainer is a separate TUFOCI_HOME.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, push_test_image, reviewed_sign
from tufoci.layout_spec import (
    MANIFEST_MEDIA_TYPE,
    SIGNATURE_CONFIG_MEDIA_TYPE,
    SIGNATURE_MEDIA_TYPE,
    build_artifact_manifest,
)
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


def proposal_of(machine: Machine, scope: str, role: str) -> dict:
    status = json.loads(machine.ok("status", scope, "-o", "json").stdout)
    (proposal,) = [p for p in status["proposals"] if p["role"] == role]
    return proposal


@pytest.fixture
def release(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    security = Machine("security", tmp_path, monkeypatch)
    alice, bob, carol = (Machine(n, tmp_path, monkeypatch) for n in ("alice", "bob", "carol"))
    cluster = Machine("cluster", tmp_path, monkeypatch)
    security.new_key("root")
    security.new_key("bootstrap-targets")
    security.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "bootstrap-targets", "--online-key", "online",
                "--root-out", str(root_file))
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    security.ok("target", "add", f"{scope}/web:1.0")
    security.ok("publish", scope)
    for machine in (alice, bob, carol, cluster):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    cluster.ok("verify", f"{scope}/web:1.0")

    # move targets to the three maintainers, 2 of 3
    keys = [m.new_key(m.name) for m in (alice, bob, carol)]
    security.ok("rotate", scope, "targets", *sum((["--add-key", str(k)] for k in keys), []),
                "--remove-key", "bootstrap-targets", "--threshold", "2")
    staged = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert staged["published"] == {}  # root v2 is complete but waits for targets signed by the new keys
    assert staged["proposed"]["root"]["held"].startswith("waits for targets v3")
    assert staged["proposed"]["targets"]["thresholds"] == [{"label": "targets", "have": 0, "need": 2}]
    cluster.ok("verify", f"{scope}/web:1.0")  # nothing live changed

    reviewed_sign(alice, scope, "targets")
    reviewed_sign(bob, scope, "targets")
    live = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert live["published"]["root"] == 2 and live["published"]["targets"] == 3
    cluster.ok("verify", f"{scope}/web:1.0")  # walks root 1 → 2, targets now signed by alice and bob
    for machine in (alice, bob, carol):
        security.share_key(machine, "online")
    return {"scope": scope, "security": security, "alice": alice, "bob": bob, "carol": carol, "cluster": cluster,
            "registry": registry, "tmp_path": tmp_path}


def test_a_release_needs_two_of_three_maintainers(release):
    scope, alice, bob, cluster = release["scope"], release["alice"], release["bob"], release["cluster"]
    push_test_image(release["tmp_path"], b"web 1.1", f"{scope}/web:1.1")
    push_test_image(release["tmp_path"], b"web 1.0 respin", f"{scope}/web:1.0")
    alice.ok("target", "add", f"{scope}/web:1.1", f"{scope}/web:1.0")
    proposed = alice.ok("publish", scope)
    assert "proposed targets v4: 1 of 2 signatures" in proposed.stdout
    assert cluster("verify", f"{scope}/web:1.1").exit_code == 10  # clients keep the previous version

    proposal = proposal_of(bob, scope, "targets")
    changes = {c["target"]: c for c in proposal["changes"] if c["kind"] == "target"}
    assert changes["web:1.1"]["change"] == "added"
    assert changes["web:1.0"]["change"] == "changed" and changes["web:1.0"]["from"] != changes["web:1.0"]["digest"]
    assert [s["key"] for s in proposal["signatures"] if s["counted"]] == [None]  # alice's key is not in bob's catalogue
    (threshold,) = proposal["thresholds"]
    assert (threshold["have"], threshold["need"]) == (1, 2)
    assert len(threshold["missing"]) == 2
    text = bob.ok("status", scope).stdout
    assert "proposal targets v4" in text and "1 more needed" in text and "+ web:1.1" in text

    reviewed_sign(bob, scope, "targets")
    assert proposal_of(bob, scope, "targets")["complete"] is True
    bob.ok("publish", scope)
    cluster.ok("verify", f"{scope}/web:1.1", f"{scope}/web:1.0")


def test_concurrent_signers_both_count(release):
    scope, alice, bob, carol = release["scope"], release["alice"], release["bob"], release["carol"]
    push_test_image(release["tmp_path"], b"web 2.0", f"{scope}/web:2.0")
    alice.ok("target", "add", f"{scope}/web:2.0")
    alice.ok("publish", scope)

    # bob and carol sign at the same moment, in two processes, from two homes
    import os
    import subprocess
    import sys

    tufoci = str(Path(sys.executable).with_name("tufoci"))
    fingerprint = proposal_of(alice, scope, "targets")["fingerprint"]
    barrier = threading.Barrier(2)
    results = {}

    def sign(machine: Machine) -> None:
        env = {**os.environ, "TUFOCI_HOME": str(machine.home)}
        barrier.wait()
        results[machine.name] = subprocess.run([tufoci, "sign", scope, "targets", "--expect", fingerprint], env=env,
                                               capture_output=True, text=True, timeout=60)

    threads = [threading.Thread(target=sign, args=(m,)) for m in (bob, carol)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    proposal = proposal_of(alice, scope, "targets")
    assert sum(1 for s in proposal["signatures"] if s["counted"]) == 3
    assert proposal["thresholds"][0]["have"] == 3


def test_signatures_that_do_not_count_and_why(release):
    scope, security, alice, bob = release["scope"], release["security"], release["alice"], release["bob"]
    store = open_repository(Repository(release["registry"].host, "acme/tuf"))
    push_test_image(release["tmp_path"], b"web 3.0", f"{scope}/web:3.0")
    alice.ok("target", "add", f"{scope}/web:3.0")
    alice.ok("publish", scope)
    alice_sig_tag = next(t for t in store.list_tags() if t.startswith("sig.targets.4."))

    # a signature from a key that is not a targets key (the security team's bootstrap key)
    from tests.conftest import use_home
    from tufoci.keys import env_secrets_handler
    from tufoci.repo_tool.proposals import push_signatures, read_proposals, sign_proposal
    from tufoci.repo_tool.signing import available_signers
    from tufoci.state import State

    (proposal,) = [p for p in read_proposals(store) if p.role == "targets" and p.version == 4]
    use_home(security.monkeypatch, security.home)
    state = State.open()
    bootstrap = state.key_named("bootstrap-targets").keyid
    signers = available_signers(state, [bootstrap], env_secrets_handler())
    push_signatures(store, proposal, sign_proposal(proposal, signers))

    # a copy of alice's signature under another tag (it could otherwise shadow her real one)
    duplicate = store.get_manifest(alice_sig_tag).data
    store.put_manifest("sig.targets.4.ffffffffffffffffffffffffffffffff", duplicate, MANIFEST_MEDIA_TYPE)

    # bob's signature over different bytes
    use_home(bob.monkeypatch, bob.home)
    bob_state = State.open()
    bob_key = bob_state.key_named("bob").keyid
    bob_signer = available_signers(bob_state, [bob_key], env_secrets_handler())[bob_key]
    forged = json.dumps({"keyid": bob_key, "sig": bob_signer.sign(b"something else").signature,
                         "signed": "sha256:" + "0" * 64}).encode()
    store.put_blob(forged)
    store.put_manifest(f"sig.targets.4.{bob_key[:32]}",
                       build_artifact_manifest(SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, forged, {}),
                       MANIFEST_MEDIA_TYPE)

    proposal = proposal_of(alice, scope, "targets")
    reasons = sorted(s["reason"] for s in proposal["signatures"] if not s["counted"])
    assert reasons == ["key is not a targets key",
                       "misplaced signature artifact sig.targets.4.ffffffffffffffffffffffffffffffff",
                       "signed different bytes (an older or another proposal)"]
    assert proposal["thresholds"][0]["have"] == 1 and proposal["complete"] is False
    assert security("publish", scope).exit_code == 1  # nothing complete to publish


def test_discarding_a_proposal_changes_nothing_live(release):
    scope, alice, bob, cluster = release["scope"], release["alice"], release["bob"], release["cluster"]
    push_test_image(release["tmp_path"], b"oops", f"{scope}/web:oops")
    alice.ok("target", "add", f"{scope}/web:oops")
    alice.ok("publish", scope)
    alice.ok("discard", scope, "targets")
    assert json.loads(bob.ok("status", scope, "-o", "json").stdout)["proposals"] == []
    assert bob("sign", scope, "targets").exit_code == 2
    assert cluster("verify", f"{scope}/web:oops").exit_code == 10
    cluster.ok("verify", f"{scope}/web:1.0")
    log = json.loads(alice.ok("log", scope, "-o", "json").stdout)
    assert [e["action"] for e in log][-2:] == ["propose", "discard"]


def test_a_new_root_needs_the_old_and_the_new_root_threshold(release):
    scope, security, alice, cluster = release["scope"], release["security"], release["alice"], release["cluster"]
    new_root_key = alice.new_key("alice-root")
    security.ok("rotate", scope, "root", "--add-key", str(new_root_key), "--remove-key", "root")
    staged = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    thresholds = {t["label"]: t["have"] for t in staged["proposed"]["root"]["thresholds"]}
    assert thresholds == {"root v2": 1, "root v3": 0}  # the old root signed, the new root's key has not

    proposal = proposal_of(alice, scope, "root")
    (role_change,) = [c for c in proposal["changes"] if c["kind"] == "root-role"]
    assert role_change["role"] == "root" and len(role_change["addedKeys"]) == len(role_change["removedKeys"]) == 1
    assert {c["kind"] for c in proposal["changes"] if c["kind"] == "key"} == {"key"}  # the keys map changes too
    reviewed_sign(alice, scope, "root")
    assert proposal_of(alice, scope, "root")["complete"] is True
    live = json.loads(alice.ok("publish", scope, "-o", "json").stdout)
    assert live["published"]["root"] == 3
    cluster.ok("verify", f"{scope}/web:1.0")  # the client walks root 2 → 3
    fresh = Machine("fresh-cluster", release["tmp_path"], cluster.monkeypatch)
    fresh.ok("trust", "add", scope, "--root", str(release["tmp_path"] / "root.json"))
    fresh.ok("verify", f"{scope}/web:1.0")  # pinned to root 1, walks 1 → 2 → 3


def test_clients_never_read_proposals_or_signatures(release):
    scope, alice, cluster, registry = release["scope"], release["alice"], release["cluster"], release["registry"]
    push_test_image(release["tmp_path"], b"web 4.0", f"{scope}/web:4.0")
    alice.ok("target", "add", f"{scope}/web:4.0")
    alice.ok("publish", scope)  # a proposal and a signature now sit in acme/tuf
    mark = registry.mark()
    (cluster.home / "cache").rename(cluster.home / "cache-old")  # cold: everything is read again
    cluster.ok("verify", f"{scope}/web:1.0")
    paths = [line.path for line in registry.access_log_lines(since=mark)]
    assert paths and not [p for p in paths if "staged." in p or "sig." in p], paths


def test_garbage_artifacts_never_stop_signing(release):
    """Anyone who can push to the registry can add artifacts; none of them may block maintainers."""
    from tufoci.layout_spec import METADATA_MEDIA_TYPE, PROPOSAL_CONFIG_MEDIA_TYPE

    scope, alice, bob = release["scope"], release["alice"], release["bob"]
    store = open_repository(Repository(release["registry"].host, "acme/tuf"))
    junk = b"not TUF metadata"
    store.put_blob(junk)
    for tag, role in (("staged.targets.4", "targets"), ("staged.web-team.1", "web-team")):
        store.put_manifest(tag, build_artifact_manifest(PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, junk,
                                                        {"dev.tufoci.role": role, "dev.tufoci.version": tag[-1]}),
                           MANIFEST_MEDIA_TYPE)
    assert json.loads(bob.ok("status", scope, "-o", "json").stdout)["proposals"] == []

    push_test_image(release["tmp_path"], b"web 5.0", f"{scope}/web:5.0")
    alice.ok("target", "add", f"{scope}/web:5.0")
    alice.ok("publish", scope)  # replaces the junk under staged.targets.4
    reviewed_sign(bob, scope, "targets")
    assert proposal_of(alice, scope, "targets")["complete"] is True


def test_a_second_open_proposal_for_the_same_version_is_refused(release):
    from tufoci.errors import PublishError
    from tufoci.repo_tool.proposals import push_proposal, read_proposals

    scope, alice = release["scope"], release["alice"]
    push_test_image(release["tmp_path"], b"web 6.0", f"{scope}/web:6.0")
    alice.ok("target", "add", f"{scope}/web:6.0")
    alice.ok("publish", scope)
    store = open_repository(Repository(release["registry"].host, "acme/tuf"))
    (open_one,) = read_proposals(store, lambda role, version: role == "targets" and version == 4)
    with pytest.raises(PublishError, match="already open"):
        push_proposal(store, "targets", open_one.metadata, "mallory")
