"""A malicious co-maintainer writes proposal bytes herself (issue 20.1/20.2, issue 11.2).

Every person is a separate TUFOCI_HOME sharing nothing but the registry. The
security team delegates web/* to the web team and moves targets to alice and
mallory, 2 of 2. Mallory has push access and a targets key; she builds proposals
with the library, as an attacker would, and pushes them under the proposal tag.
What alice reviews (``status`` text and JSON, the diff ``sign`` prints) must show
everything the bytes change, and alice signs only the bytes she reviewed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Metadata, Root, TargetFile

from tests.conftest import Machine, needs_registry, push_test_image, reviewed_sign, use_home
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


@pytest.fixture
def team(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    security, web = Machine("security", tmp_path, monkeypatch), Machine("web-team", tmp_path, monkeypatch)
    alice, mallory = Machine("alice", tmp_path, monkeypatch), Machine("mallory", tmp_path, monkeypatch)
    security.new_key("root")
    security.new_key("bootstrap-targets")
    security.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "bootstrap-targets", "--online-key", "online",
                "--root-out", str(root_file))
    web_key = web.new_key("web1")
    security.ok("delegate", scope, "web", "--key", str(web_key), "--path", "web/*")
    security.ok("publish", scope)
    keys = [m.new_key(m.name) for m in (alice, mallory)]
    security.ok("rotate", scope, "targets", *sum((["--add-key", str(k)] for k in keys), []),
                "--remove-key", "bootstrap-targets", "--threshold", "2")
    security.ok("publish", scope)
    for machine in (alice, mallory):
        machine.ok("trust", "add", scope, "--root", str(root_file))
        reviewed_sign(machine, scope, "targets")
    assert json.loads(security.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 3
    for machine in (alice, mallory):
        security.share_key(machine, "online")
    return {"scope": scope, "alice": alice, "mallory": mallory, "tmp_path": tmp_path,
            "store": open_repository(Repository(registry.host, "acme/tuf")),
            "web_keyid": json.loads(web_key.read_text())["keyid"],
            "mallory_key": json.loads(keys[1].read_text())}


def _status(machine: Machine, scope: str, role: str) -> tuple[dict, str]:
    (proposal,) = [p for p in json.loads(machine.ok("status", scope, "-o", "json").stdout)["proposals"]
                   if p["role"] == role]
    return proposal, machine.ok("status", scope).stdout


def _mallory_key_material(team) -> dict:
    data = dict(team["mallory_key"])
    data.pop("keyid")
    return data


def _replace_proposal(team, role: str, edit) -> None:
    """Mallory rewrites the open proposal of ``role`` as she likes and pushes it, signed by her key."""
    from tufoci.keys import env_secrets_handler
    from tufoci.repo_tool.proposals import discard_proposal, push_proposal, read_proposals
    from tufoci.repo_tool.signing import available_signers
    from tufoci.state import State

    store = team["store"]
    proposal = max((p for p in read_proposals(store) if p.role == role), key=lambda p: p.version)  # the open one
    metadata = Metadata.from_bytes(proposal.metadata.to_bytes())
    edit(metadata.signed)
    use_home(team["mallory"].monkeypatch, team["mallory"].home)
    signers = available_signers(State.open(), [team["mallory_key"]["keyid"]], env_secrets_handler())
    metadata.signatures.clear()
    for signer in signers.values():
        metadata.sign(signer, append=True)
    discard_proposal(store, role, proposal.version, "mallory")  # she has push access: the tag is hers to move
    push_proposal(store, role, metadata, "mallory")


def _ignored(machine: Machine, scope: str, role: str) -> tuple[dict, str]:
    report = json.loads(machine.ok("status", scope, "-o", "json").stdout)
    assert [p for p in report["proposals"] if p["role"] == role] == []
    (ignored,) = [i for i in report["ignoredProposals"] if i["role"] == role]
    return ignored, machine.ok("status", scope).stdout


def test_a_team_key_replaced_under_its_key_id_is_refused(team):
    """20.1 + 20.3: mallory's key under the web team's unchanged key id (and 2099): key ids are facts, so the
    proposal is ignored, named with the key id, and nobody can sign or publish it."""
    scope, alice, mallory, web_keyid = team["scope"], team["alice"], team["mallory"], team["web_keyid"]
    push_test_image(team["tmp_path"], b"web app 2.0", f"{scope}/web/app:2.0")
    mallory.ok("target", "add", f"{scope}/web/app:2.0")
    mallory.ok("publish", scope)

    def edit(targets) -> None:
        targets.delegations.keys[web_keyid] = SSlibKey.from_dict(web_keyid, _mallory_key_material(team))
        targets.expires = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)

    _replace_proposal(team, "targets", edit)
    ignored, text = _ignored(alice, scope, "targets")
    assert web_keyid in ignored["reason"]
    assert f"ignored {ignored['tag']}: " in text and web_keyid in text
    refused = alice("sign", scope, "targets")
    assert refused.exit_code == 2 and web_keyid in refused.stderr


def test_a_team_key_replaced_under_its_own_key_id_is_shown(team):
    """20.1: the same takeover with an honest key id: the review shows the delegation's new key, the removed
    key and the 2099 expiry next to the added tag, in status text and JSON and in the diff sign prints."""
    scope, alice, mallory, web_keyid = team["scope"], team["alice"], team["mallory"], team["web_keyid"]
    mallory_keyid = team["mallory_key"]["keyid"]
    push_test_image(team["tmp_path"], b"web app 2.0", f"{scope}/web/app:2.0")
    mallory.ok("target", "add", f"{scope}/web/app:2.0")
    mallory.ok("publish", scope)

    def edit(targets) -> None:
        del targets.delegations.keys[web_keyid]
        targets.delegations.keys[mallory_keyid] = SSlibKey.from_dict(mallory_keyid, _mallory_key_material(team))
        targets.delegations.roles["web"].keyids = [mallory_keyid]
        targets.expires = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)

    _replace_proposal(team, "targets", edit)
    proposal, text = _status(alice, scope, "targets")
    keys = {(c["change"], c["keyid"]) for c in proposal["changes"] if c["kind"] == "key"}
    assert {("added", mallory_keyid), ("removed", web_keyid)} <= keys
    (delegation,) = [c for c in proposal["changes"] if c["kind"] == "delegation"]
    assert delegation["role"] == "web" and delegation["keyids"] == [mallory_keyid]
    (expires,) = [c for c in proposal["changes"] if c["kind"] == "expires"]
    assert expires["to"].startswith("2099-")
    assert [c["target"] for c in proposal["changes"] if c["kind"] == "target"] == ["web/app:2.0"]
    assert f"+ key {mallory_keyid} (delegations)" in text and f"- key {web_keyid} (delegations)" in text
    assert "→ 2099-01-01T00:00:00Z" in text and "+ web/app:2.0" in text

    # the diff sign prints before it signs shows it too (and without --expect nor a terminal, it signs nothing)
    refused = alice("sign", scope, "targets")
    assert refused.exit_code == 2 and "--expect" in refused.stderr
    assert f"+ key {mallory_keyid}" in refused.stderr and "2099" in refused.stderr


def _renewal(team, alice: Machine, scope: str):
    alice.ok("status", scope)  # a refresh: alice's cache holds the live root
    live = next(alice.home.glob("cache/*/root.json"))
    root = Metadata[Root].from_bytes(live.read_bytes())
    (targets_keyid,) = [k for k in root.signed.roles["targets"].keyids if k != team["mallory_key"]["keyid"]]  # alice's
    renewal = root.signed
    renewal.version += 1
    renewal.expires += datetime.timedelta(days=365)
    renewal.unrecognized_fields["x-tufoci-expiry"].update(snapshot="3650d", timestamp="3650d")
    root.signatures.clear()
    return root, targets_keyid


def test_a_root_that_looks_like_a_renewal_shows_its_changes(team):
    """20.2: a root 'renewal' that swaps alice's targets key for mallory's and sets ten-year periods: every
    change is shown; the same with mallory's key under alice's key id is ignored, naming the key id."""
    from tufoci.repo_tool.proposals import discard_proposal, push_proposal

    scope, alice, store = team["scope"], team["alice"], team["store"]
    mallory_keyid = team["mallory_key"]["keyid"]
    root, targets_keyid = _renewal(team, alice, scope)
    del root.signed.keys[targets_keyid]
    root.signed.roles["targets"].keyids = [mallory_keyid]
    push_proposal(store, "root", root, "mallory")
    proposal, text = _status(alice, scope, "root")
    kinds = {(c["kind"], c.get("keyid") or c.get("role")) for c in proposal["changes"]}
    assert {("key", targets_keyid), ("root-role", "targets"), ("expiry-period", "snapshot"),
            ("expiry-period", "timestamp")} <= kinds
    assert f"-key {targets_keyid}" in text
    assert "expiry period of snapshot 7d → 3650d" in text and "expiry period of timestamp 1d → 3650d" in text

    discard_proposal(store, "root", root.signed.version, "mallory")
    root, targets_keyid = _renewal(team, alice, scope)
    root.signed.keys[targets_keyid] = SSlibKey.from_dict(targets_keyid, _mallory_key_material(team))
    push_proposal(store, "root", root, "mallory")
    ignored, text = _ignored(alice, scope, "root")
    assert targets_keyid in ignored["reason"] and targets_keyid in text

def test_sign_refuses_a_proposal_swapped_after_review(team):
    """11.2: alice reviews one proposal; mallory swaps in another; alice's sign --expect refuses it."""
    scope, alice, mallory, store = team["scope"], team["alice"], team["mallory"], team["store"]
    push_test_image(team["tmp_path"], b"web app 3.0", f"{scope}/web/app:3.0")
    mallory.ok("target", "add", f"{scope}/web/app:3.0")
    mallory.ok("publish", scope)
    reviewed, _ = _status(alice, scope, "targets")

    # the fingerprint is the digest of the canonical signed bytes, exactly what a signature covers
    from tufoci.repo_tool.proposals import read_proposals

    proposal = max((p for p in read_proposals(store) if p.role == "targets"), key=lambda p: p.version)
    digest = hashlib.sha256(proposal.metadata.signed_bytes).hexdigest()
    assert reviewed["signedDigest"] == "sha256:" + digest and reviewed["fingerprint"] == digest

    def swap(targets) -> None:
        app = targets.targets.pop("web/app:3.0")
        targets.targets["web/evil:1.0"] = TargetFile(app.length, {"sha256": "e" * 64}, "web/evil:1.0")

    _replace_proposal(team, "targets", swap)
    refused = alice("sign", scope, "targets", "--expect", reviewed["fingerprint"])
    assert refused.exit_code == 1, refused.stderr
    assert "its fingerprint is " in refused.stderr and "not the one you reviewed" in refused.stderr
    assert "+ web/evil:1.0" in refused.stderr  # the diff it refused to sign
    swapped, _ = _status(alice, scope, "targets")
    assert swapped["fingerprint"] != reviewed["fingerprint"]
    assert swapped["thresholds"][0]["have"] == 1  # only mallory's signature: alice signed nothing

    # a careful signer who reviews the new bytes may sign them: sign prints the diff it signs
    signed = alice("sign", scope, "targets", "--expect", swapped["fingerprint"])
    assert signed.exit_code == 0, signed.stderr
    assert "+ web/evil:1.0" in signed.stderr and f"fingerprint {swapped['fingerprint']}" in signed.stderr
    assert _status(alice, scope, "targets")[0]["complete"] is True


def _sign_on_terminal(machine: Machine, answer: str, *args: str):
    """Run the real ``tufoci`` with a terminal as standard input that answers ``answer``."""
    import os
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    os.write(controller, answer.encode() + b"\n")
    try:
        return subprocess.run([str(Path(sys.executable).with_name("tufoci")), *args], stdin=terminal,
                              env={**os.environ, "TUFOCI_HOME": str(machine.home)}, capture_output=True, text=True,
                              timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)


def test_on_a_terminal_sign_asks_before_it_signs(team):
    """11.2: without --expect, a signer at a terminal sees the diff and confirms it; 'no' signs nothing."""
    import subprocess

    scope, alice, mallory = team["scope"], team["alice"], team["mallory"]
    push_test_image(team["tmp_path"], b"web app 4.0", f"{scope}/web/app:4.0")
    mallory.ok("target", "add", f"{scope}/web/app:4.0")
    mallory.ok("publish", scope)

    def sign_answering(answer: str) -> subprocess.CompletedProcess:
        return _sign_on_terminal(alice, answer, "sign", scope, "targets")

    declined = sign_answering("n")
    assert declined.returncode == 1 and "you declined targets v4" in declined.stderr, declined.stderr
    assert "+ web/app:4.0" in declined.stderr and "Sign targets v4 (fingerprint " in declined.stderr
    assert _status(alice, scope, "targets")[0]["thresholds"][0]["have"] == 1
    confirmed = sign_answering("y")
    assert confirmed.returncode == 0, confirmed.stderr
    assert _status(alice, scope, "targets")[0]["complete"] is True


def test_the_terminal_question_escapes_a_role_name_its_delegator_chose(team):
    """Independent review (2026-12): the 'Sign ROLE vN (fingerprint …)?' question was printed raw. Mallory
    delegates a role whose name rewrites the line, listing alice's key so that alice is asked to sign it."""
    scope, alice, mallory, tmp_path = team["scope"], team["alice"], team["mallory"], team["tmp_path"]
    hostile = "evil\x1b[2K\rSign web"
    mallory.ok("delegate", scope, hostile, "--key", str(tmp_path / "alice.pub.json"),
               "--key", str(tmp_path / "mallory.pub.json"), "--threshold", "2", "--path", "evil/*")
    mallory.ok("publish", scope)
    reviewed_sign(alice, scope, "targets")
    mallory.ok("publish", scope)
    push_test_image(tmp_path, b"evil 1", f"{scope}/evil/x:1")
    mallory.ok("target", "add", f"{scope}/evil/x:1", "--role", hostile)
    mallory.ok("publish", scope)  # a proposal: the role needs alice's signature too
    asked = _sign_on_terminal(alice, "n", "sign", scope, hostile)
    assert asked.returncode == 1, asked.stderr
    assert "Sign evil\\x1b[2K\\x0dSign web v" in asked.stderr
    assert "\x1b" not in asked.stderr and "\r" not in asked.stderr
