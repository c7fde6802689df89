"""Key lifecycle: rotation of every role, revocation, fast-forward recovery, key list.

Clients are never re-configured: they keep their pinned root and follow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, push_test_image, use_home
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, build_metadata_manifest
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


@pytest.fixture
def signed(registry, tmp_path: Path, home: Path, monkeypatch):
    """One maintainer machine with web:1.0 signed and a web team delegation; one cluster."""
    scope = f"{registry.host}/acme"
    maintainer, cluster = Machine("maintainer", tmp_path, monkeypatch), Machine("cluster", tmp_path, monkeypatch)
    for name, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",)), ("web", ())):
        maintainer.new_key(name, *options)
    root_file = tmp_path / "root.json"
    maintainer.ok("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                  "--root-out", str(root_file))
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    push_test_image(tmp_path, b"team 1.0", f"{scope}/team/app:1.0")
    maintainer.ok("delegate", scope, "team", "--key", "web", "--path", "team/*")
    maintainer.ok("target", "add", f"{scope}/web:1.0")
    maintainer.ok("target", "add", "--role", "team", f"{scope}/team/app:1.0")
    maintainer.ok("publish", scope)
    cluster.ok("trust", "add", scope, "--root", str(root_file))
    cluster.ok("verify", f"{scope}/web:1.0", f"{scope}/team/app:1.0")
    return {"scope": scope, "maintainer": maintainer, "cluster": cluster, "registry": registry,
            "tuf": open_repository(Repository(registry.host, "acme/tuf")), "tmp_path": tmp_path}


def publish_signed_by(signed, role: str, key_name: str, mutate=None) -> None:
    """What someone holding a (revoked) key can push: a next version of ``role`` signed by it alone,
    with snapshot and timestamp signed by the current online key."""
    from tufoci.client.refresh import trusted_session
    from tufoci.client.trust_pins import pin_for_scope
    from tufoci.keys import env_secrets_handler, signer_for
    from tufoci.repo_tool.current import load_current
    from tufoci.repo_tool.push import MetadataFile, push_metadata
    from tufoci.repo_tool.roles import RoleTree
    from tufoci.repo_tool.signing import available_signers, sign_with
    from tufoci.repo_tool.versions import bump, next_snapshot, next_timestamp, to_bytes
    from tufoci.state import State, now_utc

    maintainer = signed["maintainer"]
    use_home(maintainer.monkeypatch, maintainer.home)
    state, secrets, now = State.open(), env_secrets_handler(), now_utc()
    pin = pin_for_scope(state, signed["scope"])
    with trusted_session(state.home, pin) as session:
        current = load_current(session)
        md = RoleTree(session, current.root.signed).metadata(role)
    if mutate:
        mutate(md.signed)
    bump(md, current.expiry_periods, now)
    keyid = state.key_named(key_name).keyid
    sign_with(md, {keyid: signer_for(state, keyid, secrets)})
    data = to_bytes(md)
    online = available_signers(state, current.root.signed.roles["snapshot"].keyids, secrets)
    snapshot = next_snapshot(current.snapshot, {role: (md.signed.version, data)}, current.expiry_periods, now)
    sign_with(snapshot, online)
    timestamp = next_timestamp(current.timestamp, snapshot.signed.version, to_bytes(snapshot), current.expiry_periods, now)
    sign_with(timestamp, online)
    push_metadata(signed["tuf"], [MetadataFile(role, md.signed.version, data),
                                  MetadataFile("snapshot", snapshot.signed.version, to_bytes(snapshot))],
                  MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
                  root_version=current.root.signed.version, expected_timestamp=current.timestamp_manifest_digest)


@pytest.mark.parametrize("role,old_key", [("targets", "targets"), ("team", "web")])
def test_revoked_key_is_rejected_and_earlier_tags_keep_verifying(signed, role, old_key):
    scope, maintainer, cluster = signed["scope"], signed["maintainer"], signed["cluster"]
    maintainer.new_key(f"{role}-new")
    maintainer.ok("rotate", scope, role, "--add-key", f"{role}-new", "--remove-key", old_key)
    published = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)
    assert role in published["published"]  # re-signed by the new key in the same publish
    cluster.ok("verify", f"{scope}/web:1.0", f"{scope}/team/app:1.0")

    # whoever still holds the revoked key publishes a version signed by it alone
    publish_signed_by(signed, role, old_key)
    result = cluster("verify", f"{scope}/web:1.0", f"{scope}/team/app:1.0")
    assert result.exit_code == 12
    assert "not signed by enough of the keys" in result.stderr


def test_root_rotation_clients_walk_the_chain(signed):
    scope, maintainer, cluster = signed["scope"], signed["maintainer"], signed["cluster"]
    for generation in (2, 3, 4):
        maintainer.new_key(f"root{generation}")
        previous = "root" if generation == 2 else f"root{generation - 1}"
        maintainer.ok("rotate", scope, "root", "--add-key", f"root{generation}", "--remove-key", previous)
        assert json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)["published"]["root"] == generation
    cluster.ok("verify", f"{scope}/web:1.0")  # pinned to root 1, walks 2, 3, 4
    roots = sorted(p.name for p in (cluster.home / "cache").rglob("root_history/*.root.json"))
    assert roots == ["1.root.json", "2.root.json", "3.root.json", "4.root.json"]


def test_fast_forward_attack_recovered_by_rotating_the_online_key(signed):
    scope, maintainer, cluster, tuf = signed["scope"], signed["maintainer"], signed["cluster"], signed["tuf"]
    legit = tuf.get_manifest("timestamp").data

    # the attacker stole the online key and serves a timestamp with a huge version
    from tuf.api.metadata import Metadata

    from tufoci.keys import env_secrets_handler, signer_for
    from tufoci.layout_spec import parse_metadata_manifest
    from tufoci.repo_tool.versions import to_bytes
    from tufoci.state import State

    use_home(maintainer.monkeypatch, maintainer.home)
    state = State.open()
    current = Metadata.from_bytes(tuf.get_blob(parse_metadata_manifest(legit).layer.digest, max_bytes=100_000))
    current.signed.version = 10**9
    current.signatures.clear()
    online = state.key_named("online").keyid
    current.sign(signer_for(state, online, env_secrets_handler()))
    data = to_bytes(current)
    tuf.put_blob(data)
    tuf.put_manifest("timestamp", build_metadata_manifest("timestamp", 10**9, data, root_version=1), MANIFEST_MEDIA_TYPE)
    cluster.ok("verify", f"{scope}/web:1.0")  # validly signed: the client now trusts version 10**9
    tuf.put_manifest("timestamp", legit, MANIFEST_MEDIA_TYPE)  # the attacker leaves
    stuck = cluster("verify", f"{scope}/web:1.0")
    assert stuck.exit_code == 12 and "a rollback" in stuck.stderr  # legit timestamp looks like a rollback

    # recovery: the security team rotates the compromised online key in root
    maintainer.new_key("online2", "--unencrypted")
    for role in ("snapshot", "timestamp"):
        maintainer.ok("rotate", scope, role, "--add-key", "online2", "--remove-key", "online")
    published = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)
    assert published["published"]["root"] == 2
    cluster.ok("verify", f"{scope}/web:1.0")  # TUF 5.3.11: the old-key timestamp is dropped, the new one loads


def test_key_list_shows_roles_scopes_and_online_keys(signed):
    keys = {k["name"]: k for k in json.loads(signed["maintainer"].ok("key", "list", "-o", "json").stdout)}
    scope = signed["scope"]
    assert keys["online"]["online"] is True and keys["root"]["online"] is False
    assert {"scope": scope, "role": "root"} in keys["root"]["uses"]
    assert {"scope": scope, "role": "team"} in keys["web"]["uses"]
    assert {(u["role"]) for u in keys["online"]["uses"]} == {"snapshot", "timestamp"}
    assert keys["root"]["uri"].startswith("encfile:") and keys["online"]["uri"].startswith("file2:")
