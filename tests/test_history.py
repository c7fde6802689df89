"""Issue 15.5: ``tufoci history`` rebuilds a tag's signed story from the versions the registry keeps, checks
every version against the root (or delegating role) of its time, and reports what does not verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from tests.conftest import Machine, needs_registry, push_test_image, use_home
from tufoci.keys import env_secrets_handler, list_keys, signer_for
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, build_metadata_manifest, parse_metadata_manifest
from tufoci.reference import Repository
from tufoci.state import State
from tufoci.store import open_repository

pytestmark = needs_registry


def digest_of(machine: Machine, scope: str, name: str) -> str:
    (row,) = [r for r in json.loads(machine.ok("target", "list", scope, "-o", "json").stdout) if r["target"] == name]
    return row["digest"]


@pytest.fixture
def story(registry, tmp_path: Path, home: Path, monkeypatch):
    """web:1.0 signed by targets under root v1, then by a rotated targets key (root v2), then moved to the
    web team's delegated role with a new digest."""
    scope = f"{registry.host}/acme"
    security, team = Machine("security", tmp_path, monkeypatch), Machine("web-team", tmp_path, monkeypatch)
    auditor = Machine("auditor", tmp_path, monkeypatch)
    for name, options in (("root", ()), ("targets-2026", ()), ("targets-2027", ()), ("online", ("--unencrypted",))):
        security.new_key(name, *options)
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "targets-2026", "--online-key", "online",
                "--root-out", str(root_file))
    push_test_image(tmp_path, b"web 1.0", f"{scope}/web:1.0")
    security.ok("target", "add", "--publish", f"{scope}/web:1.0")  # targets v2
    first = digest_of(security, scope, "web:1.0")
    security.ok("rotate", scope, "targets", "--add-key", "targets-2027", "--remove-key", "targets-2026")
    assert json.loads(security.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 3  # root v2

    web_key = team.new_key("web-release")
    security.ok("delegate", scope, "web", "--key", str(web_key), "--path", "web:*")
    security.ok("target", "remove", scope, "web:1.0")
    assert json.loads(security.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 4
    push_test_image(tmp_path, b"web 1.0 rebuilt", f"{scope}/web:1.0")
    team.ok("trust", "add", scope, "--root", str(root_file))
    security.share_key(team, "online")
    team.ok("target", "add", "--role", "web", "--publish", f"{scope}/web:1.0")  # web v1
    second = digest_of(team, scope, "web:1.0")
    assert second != first
    auditor.ok("trust", "add", scope, "--root", str(root_file))
    store = open_repository(Repository(registry.host, "acme/tuf"))
    return {"scope": scope, "security": security, "team": team, "auditor": auditor, "first": first, "second": second,
            "store": store, "monkeypatch": monkeypatch}


def history(machine: Machine, scope: str, *args: str) -> dict:
    return json.loads(machine.ok("history", scope, *args, "-o", "json").stdout)


def test_the_full_story_of_a_tag_across_a_rotation_and_a_delegation_change(story):
    scope, security = story["scope"], story["security"]
    h = history(security, scope, "web:1.0")
    assert h["pinnedRootVersion"] == 1 and h["gaps"] == []
    versions = {(v["role"], v["version"]): v for v in h["versions"]}
    assert all(v["verified"] for v in versions.values())
    assert versions[("root", 2)]["checkedAgainst"] == "root v1"
    assert versions[("targets", 2)]["rootVersion"] == 1 and versions[("targets", 3)]["rootVersion"] == 2
    assert versions[("web", 1)]["checkedAgainst"] == "targets v4"
    ((tag),) = h["tags"]
    assert tag["target"] == "web:1.0"
    old, new = tag["history"]
    assert (old["digest"], old["role"], old["fromVersion"], old["toVersion"], old["endedByVersion"]) == \
        (story["first"], "targets", 2, 3, 4)
    assert [s["key"] for s in old["signedBy"]] == ["targets-2026"] and old["rootVersion"] == 1
    assert (new["digest"], new["role"], new["fromVersion"], new["inLatestVersion"]) == (story["second"], "web", 1, True)
    assert new["checkedAgainst"] == "targets v4" and new["rootVersion"] == 2
    assert old["from"] <= old["until"] <= new["from"]
    # targets v3, re-signed by the rotated key, is part of the old entry's span
    assert [s["key"] for s in versions[("targets", 3)]["signedBy"]] == ["targets-2027"]

    text = story["auditor"].ok("history", scope, f"{scope}/web:1.0").stdout  # a consumer: no keys, no names
    assert f"{story['first']}  targets v2..v3, changed or removed in v4" in text
    assert f"{story['second']}  web v1..(latest)" in text and "UNVERIFIED" not in text


def test_since_keeps_only_what_was_still_signed(story):
    scope, security = story["scope"], story["security"]
    assert len(history(security, scope, "web:1.0", "--since", "2000-01-01")["tags"][0]["history"]) == 2
    (entry,) = history(security, scope, "web:1.0", "--since", "2999-01-01")["tags"][0]["history"]
    assert entry["role"] == "web"
    assert security("history", scope, "--since", "yesterday").exit_code == 2


def _repush(store, tag: str, data: bytes) -> None:
    store.put_blob(data)
    role, version = tag.removeprefix("d.").rsplit(".", 1)
    store.put_manifest(tag, build_metadata_manifest(role, int(version), data), MANIFEST_MEDIA_TYPE)


def _kept(store, tag: str) -> Metadata:
    layer = parse_metadata_manifest(store.get_manifest(tag).data).layer
    return Metadata.from_bytes(store.get_blob(layer.digest, max_bytes=layer.size))


EVIL = "0" * 64


def _signer(story, machine: str, name: str):
    """A private key of one of the story's machines (as its owner, or a thief of it, would hold it)."""
    use_home(story["monkeypatch"], story[machine].home)
    state = State.open()
    (key,) = [k for k in list_keys(state) if k.name == name]
    return signer_for(state, key.keyid, env_secrets_handler())


def test_a_name_outside_a_roles_delegation_is_not_part_of_the_history(story):
    scope, store, auditor = story["scope"], story["store"], story["auditor"]
    md = _kept(store, "d.web.1")
    md.signed.version += 1
    md.signed.targets["db:1.0"] = md.signed.targets["web:1.0"]  # the web team signs a name outside web:*
    md.signatures.clear()
    md.sign(_signer(story, "team", "web-release"))
    _repush(store, "d.web.2", md.to_bytes())
    h = history(auditor, scope)
    web2 = [v for v in h["versions"] if (v["role"], v["version"]) == ("web", 2)][0]
    assert web2["verified"] and web2["snapshotVersion"] is None  # signed, never published
    assert [t["target"] for t in h["tags"]] == ["web:1.0"]


@pytest.mark.parametrize("attack, problem", [
    ("altered bytes", "signatures do not verify: root v1: "),
    ("signed by another key", "signatures do not verify: root v1: "),
    # valid under root v1, but snapshot v2 (online key) recorded other bytes for targets v2
    ("re-signed by the revoked key", "signed by root v1's keys, but not the bytes snapshot v2 recorded for targets v2"),
])
def test_a_tampered_old_version_is_reported_not_believed(story, attack, problem):
    scope, store, auditor = story["scope"], story["store"], story["auditor"]
    md = _kept(store, "targets.2")
    md.signed.targets["web:1.0"].hashes["sha256"] = EVIL
    if attack != "altered bytes":
        md.signatures.clear()
        md.sign(CryptoSigner.generate_ed25519() if attack == "signed by another key" else _signer(story, "security", "targets-2026"))
    _repush(store, "targets.2", md.to_bytes())
    h = history(auditor, scope, "web:1.0")
    (bad,) = [v for v in h["versions"] if not v["verified"]]
    assert (bad["role"], bad["version"]) == ("targets", 2) and bad["problem"].startswith(problem)
    digests = [e["digest"] for e in h["tags"][0]["history"]]
    assert f"sha256:{EVIL}" not in digests
    old = h["tags"][0]["history"][0]
    assert old["fromVersion"] == 3 and old["unknownVersions"] == []
    text = auditor.ok("history", scope).stdout
    assert f"UNVERIFIED: targets v2 (targets.2): {problem}" in text and EVIL not in text


def test_gaps_and_a_tag_holding_another_version_are_shown(story):
    scope, store, auditor = story["scope"], story["store"], story["auditor"]
    _repush(store, "targets.7", store.get_blob(parse_metadata_manifest(store.get_manifest("targets.2").data).layer.digest,
                                               max_bytes=1 << 20))
    h = history(auditor, scope)
    assert {(g["role"], g["version"]) for g in h["gaps"]} == {("targets", 5), ("targets", 6)}
    (bad,) = [v for v in h["versions"] if not v["verified"]]
    assert bad["version"] == 7 and bad["problem"] == "the tag holds targets version 2"
    text = auditor.ok("history", scope).stdout
    assert "gap: targets v5 is not in the registry" in text


def test_a_tampered_root_breaks_the_chain_after_it(story):
    scope, store, auditor = story["scope"], story["store"], story["auditor"]
    md = _kept(store, "root.2")
    md.signed.consistent_snapshot = True
    md.signed.expires = md.signed.expires.replace(year=2099)
    _repush(store, "root.2", md.to_bytes())
    h = history(auditor, scope)
    bad = {(v["role"], v["version"]): v["problem"] for v in h["versions"] if not v["verified"]}
    assert "not signed by the threshold of root v1" in bad[("root", 2)]
    assert ("targets", 3) in bad and ("targets", 2) not in bad  # signed by the revoked key: only root v1 knew it


def test_hashed_bins_are_found_by_their_tags_in_an_oci_layout(tmp_path: Path, home: Path, monkeypatch):
    from tests.conftest import init_scope_on

    scope = f"oci:{tmp_path / 'store'}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    init_scope_on(maintainer, scope, tmp_path)
    maintainer.new_key("bins", "--unencrypted")
    maintainer.ok("delegate", scope, "bins", "--key", "bins", "--bins", "16")
    maintainer.ok("publish", scope)
    for n in (1, 2):
        (tmp_path / "one.txt").write_text(f"{scope}/app:7 sha256:{n:064x} {1000 + n}\n")
        maintainer.ok("target", "add", "--from-file", str(tmp_path / "one.txt"))
        maintainer.ok("publish", scope)
    h = history(maintainer, scope, "app:7")
    first, second = h["tags"][0]["history"]
    assert first["role"] == second["role"] and first["role"].startswith("bins-")
    assert (first["digest"], first["endedByVersion"], second["digest"]) == (f"sha256:{1:064x}", 2, f"sha256:{2:064x}")
    assert first["checkedAgainst"] == "targets v2" and not [v for v in h["versions"] if not v["verified"]]
