"""`publish --dry-run` signs nothing and pushes nothing, and says what a publish would sign (issue 11 item 8a)."""

from __future__ import annotations

import json

from tests.conftest import Machine, init_scope, needs_registry, ok, push_test_image, run_tufoci, use_home
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


def metadata_tags(registry) -> list[str]:
    return sorted(open_repository(Repository(registry.host, "acme/tuf")).list_tags())


def test_a_dry_run_loads_no_key_and_shows_what_would_be_signed_and_pushed(registry, tmp_path, home, monkeypatch):
    scope = f"{registry.host}/acme"
    init_scope(scope, tmp_path)
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    ok(run_tufoci("target", "add", f"{scope}/web:1.0"))
    tags_before = metadata_tags(registry)
    timestamp_before = registry.get_manifest("acme/tuf", "timestamp")[0]

    # no passphrase anywhere: loading the encrypted targets key would fail (it once did: the dry run signed)
    monkeypatch.delenv("TUFOCI_PASSPHRASE")
    dry = ok(run_tufoci("publish", scope, "--dry-run"))
    assert dry.stdout.splitlines() == [
        "would sign targets v2 with targets",
        "would sign snapshot v2 with online",
        "would sign timestamp v2 with online",
        f"would publish to {scope}: targets v2, snapshot v2, timestamp v2",
    ], dry.stdout
    answer = json.loads(ok(run_tufoci("publish", scope, "--dry-run", "-o", "json")).stdout)
    keys = {k["name"]: k["keyid"] for k in json.loads(ok(run_tufoci("key", "list", "-o", "json")).stdout)}
    assert answer["dryRun"] is True and answer["published"] == {"targets": 2, "snapshot": 2, "timestamp": 2}
    assert answer["wouldSign"] == {"targets": {"version": 2, "keyids": [keys["targets"]]},
                                   "snapshot": {"version": 2, "keyids": [keys["online"]]},
                                   "timestamp": {"version": 2, "keyids": [keys["online"]]}}

    # nothing pushed, nothing unstaged, nothing in the audit log
    assert metadata_tags(registry) == tags_before
    assert registry.get_manifest("acme/tuf", "timestamp")[0] == timestamp_before
    assert "web:1.0" in ok(run_tufoci("status", scope)).stdout
    assert not [r for r in json.loads(ok(run_tufoci("log", "-o", "json")).stdout) if r["action"] == "publish"]

    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    real = json.loads(ok(run_tufoci("publish", scope, "-o", "json")).stdout)
    assert real["published"] == answer["published"] and real["wouldSign"] == {}


def test_a_dry_run_of_a_threshold_release_says_it_would_propose(registry, tmp_path, home, monkeypatch):
    scope = f"{registry.host}/acme"
    init_scope(scope, tmp_path)
    bob = Machine("bob", tmp_path, monkeypatch).new_key("bob")  # bob's key stays on bob's machine
    use_home(monkeypatch, home)
    ok(run_tufoci("key", "generate", "alice"))
    ok(run_tufoci("key", "import", "bob", str(bob)))
    ok(run_tufoci("rotate", scope, "targets", "--add-key", "alice", "--add-key", "bob", "--remove-key", "targets",
                  "--threshold", "2"))
    tags_before = metadata_tags(registry)
    monkeypatch.delenv("TUFOCI_PASSPHRASE")
    dry = ok(run_tufoci("publish", scope, "--dry-run"))
    lines = dry.stdout.splitlines()
    # targets v2 is re-signed by its new keys (bob's is elsewhere); the new root waits with it
    assert "would sign root v2 with root" in lines and "would sign targets v2 with alice" in lines, lines
    assert "would propose targets v2: 1 of 2 signatures (targets)" in lines, lines
    assert metadata_tags(registry) == tags_before  # no proposal, no signature artifact
