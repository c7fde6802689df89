"""A malicious co-maintainer, through a real registry (issue 20, items 3, 6 and 9).

Every person is a separate TUFOCI_HOME sharing nothing but the registry: the
security team holds root, targets and the online key; teams hold their own keys;
mallory holds a key of her own and push access to the registry. Targets are
staged from build records (``--from-file``), so no image needs to exist and
consumers verify with ``--skip-registry-check``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import DelegatedRole, Metadata, TargetFile

from tests.conftest import Machine, init_scope_on, needs_registry, use_home
from tufoci.layout_spec import (
    MANIFEST_MEDIA_TYPE,
    METADATA_MEDIA_TYPE,
    PROPOSAL_CONFIG_MEDIA_TYPE,
    build_artifact_manifest,
)
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def stage(machine: Machine, scope: str, target: str, *options: str) -> None:
    """``target add --from-file``: a build record, no registry request."""
    record = machine.tmp_path / f"{machine.name}-build.txt"
    record.write_text(f"{scope}/{target} {digest(target)} 123\n")
    machine.ok("target", "add", "--from-file", str(record), *options)


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch):
    """``acme``: targets delegates web/* to team web and db/* to team db; web/app:1.0 and db/app:1.0 are live."""
    scope = f"{registry.host}/acme"
    people = {name: Machine(name, tmp_path, monkeypatch) for name in ("security", "web", "db", "mallory", "cluster")}
    security = people["security"]
    root_file = init_scope_on(security, scope, tmp_path)
    for team in ("web", "db"):
        key = people[team].new_key(team)
        security.ok("delegate", scope, team, "--key", str(key), "--path", f"{team}/*")
    security.ok("publish", scope)
    for name, machine in people.items():
        if name != "security":
            machine.ok("trust", "add", scope, "--root", str(root_file))
    for team in ("web", "db"):
        stage(people[team], scope, f"{team}/app:1.0", "--role", team)
        people[team].ok("publish", scope)  # complete, waits for the online key
    security.ok("publish", scope)
    people["cluster"].ok("verify", "--skip-registry-check", f"{scope}/web/app:1.0", f"{scope}/db/app:1.0")
    return {"scope": scope, "registry": registry, "tmp_path": tmp_path, "store": open_repository(
        Repository(registry.host, "acme/tuf")), **people}


def keyid_of(machine: Machine, name: str) -> str:
    (entry,) = [k for k in json.loads(machine.ok("key", "list", "-o", "json").stdout) if k["name"] == name]
    return entry["keyid"]


def impostor(machine: Machine, name: str, claimed_keyid: str) -> SSlibKey:
    """``machine``'s own key ``name``, written down under another key's id."""
    public = json.loads(machine.ok("key", "export", name).stdout)
    public.pop("keyid")
    return SSlibKey.from_dict(claimed_keyid, public)


def status(machine: Machine, scope: str) -> dict:
    return json.loads(machine.ok("status", scope, "-o", "json").stdout)


def live_version(machine: Machine, scope: str, role: str) -> int:
    (row,) = [r for r in status(machine, scope)["roles"] if r["role"] == role]
    return row["version"]


# -- 20.3: key ids are facts ---------------------------------------------------------------------------------

def test_key_import_refuses_a_public_key_claiming_the_online_keys_id(world):
    """The onboarding attack: mallory hands over her public key with the online key's id in it."""
    scope, security, mallory = world["scope"], world["security"], world["mallory"]
    online = keyid_of(security, "online")
    handed_over = world["tmp_path"] / "mallory.pub.json"
    mallory.new_key("mallory")
    public = json.loads(mallory.ok("key", "export", "mallory").stdout)
    handed_over.write_text(json.dumps({**public, "keyid": online}))

    result = security("key", "import", "mallory", str(handed_over))
    assert result.exit_code == 2, result.stderr
    assert online in result.stderr and str(handed_over) in result.stderr and "refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # the same file given straight to a role is refused too, and nothing is staged
    result = security("rotate", scope, "targets", "--add-key", str(handed_over))
    assert result.exit_code == 2 and online in result.stderr
    assert status(security, scope)["staged"] == []
    # her honest export (its own key id) is fine
    honest = world["tmp_path"] / "mallory-honest.pub.json"
    honest.write_text(json.dumps(public))
    assert public["keyid"] in security.ok("key", "import", "mallory", str(honest)).stdout


def _crafted_targets_proposal(world) -> tuple[str, str]:
    """Mallory pushes targets v(N+1) delegating team ``ops`` to her key listed under the online key's id,
    already signed by the targets key (the honest co-signature she talked someone into)."""
    from tufoci.keys import env_secrets_handler
    from tufoci.repo_tool.proposals import push_proposal
    from tufoci.repo_tool.signing import available_signers, sign_with
    from tufoci.state import State

    scope, security, mallory, store = world["scope"], world["security"], world["mallory"], world["store"]
    online = keyid_of(security, "online")
    mallory.new_key("mallory")
    key = impostor(mallory, "mallory", online)
    version = live_version(security, scope, "targets")
    targets = Metadata.from_bytes(store.get_blob(_live_targets_digest(store, version), max_bytes=1 << 20))
    targets.signed.version = version + 1
    targets.signed.delegations.keys[online] = key
    targets.signed.delegations.roles["ops"] = DelegatedRole("ops", [online], 1, False, paths=["*"])
    targets.signatures.clear()
    use_home(security.monkeypatch, security.home)
    state = State.open()
    sign_with(targets, available_signers(state, [keyid_of(security, "targets")], env_secrets_handler()))
    push_proposal(store, "targets", targets, "mallory")
    return online, f"staged.targets.{version + 1}"


def _live_targets_digest(store, version: int) -> str:
    from tufoci.layout_spec import parse_metadata_manifest

    return parse_metadata_manifest(store.get_manifest(f"targets.{version}").data).layer.digest


def test_a_proposal_with_a_mismatched_key_id_is_refused_by_status_sign_and_publish(world):
    scope, security, web = world["scope"], world["security"], world["web"]
    version = live_version(security, scope, "targets")
    online, tag = _crafted_targets_proposal(world)

    report = status(web, scope)
    assert report["proposals"] == []
    (ignored,) = report["ignoredProposals"]
    assert ignored["tag"] == tag and online in ignored["reason"] and tag in ignored["reason"]
    assert f"ignored {tag}: " in web.ok("status", scope).stdout

    result = security("sign", scope, "targets")
    assert result.exit_code == 2 and online in result.stderr and tag in result.stderr, result.stderr
    result = security("publish", scope, "-o", "json")  # complete on its face: it must still not go live
    assert live_version(security, scope, "targets") == version
    assert online in result.stderr or online in result.stdout
    # an honest maintainer can clear it away
    security.ok("discard", scope, "targets")
    assert status(web, scope)["ignoredProposals"] == []


def _live(world: dict):
    """The live state as the security team's machine verifies it: (current state, web's metadata, and a
    function giving the honest signers of one of its key names)."""
    from tufoci.client.refresh import trusted_session
    from tufoci.client.trust_pins import pin_for_scope
    from tufoci.keys import env_secrets_handler
    from tufoci.repo_tool.current import load_current
    from tufoci.repo_tool.roles import RoleTree
    from tufoci.repo_tool.signing import available_signers
    from tufoci.repo_tool.versions import to_bytes
    from tufoci.state import State

    security = world["security"]
    use_home(security.monkeypatch, security.home)
    state = State.open()
    with trusted_session(state.home, pin_for_scope(state, world["scope"]), allow_expired=True) as session:
        current = load_current(session)
        web = Metadata.from_bytes(to_bytes(RoleTree(session, current.root.signed).metadata("web")))
    return current, web, lambda name: available_signers(state, [keyid_of(security, name)], env_secrets_handler())


def _publish_forged(world: dict, current, files: list, online_signer: dict, root_version: int) -> None:
    """Push ``files`` as the registry's state, with a snapshot and timestamp signed by ``online_signer``."""
    from tufoci.repo_tool.push import MetadataFile, push_metadata
    from tufoci.repo_tool.signing import sign_with
    from tufoci.repo_tool.versions import next_snapshot, next_timestamp, to_bytes
    from tufoci.state import now_utc

    periods, now = current.expiry_periods, now_utc()
    listed = {f.role: (f.version, f.data) for f in files if f.role != "root"}
    snapshot = next_snapshot(current.snapshot, listed, periods, now)
    sign_with(snapshot, online_signer)
    files = [*files, MetadataFile("snapshot", snapshot.signed.version, to_bytes(snapshot))]
    timestamp = next_timestamp(current.timestamp, snapshot.signed.version, files[-1].data, periods, now)
    sign_with(timestamp, online_signer)
    push_metadata(world["store"], files, MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
                  root_version=root_version, expected_timestamp=current.timestamp_manifest_digest)


@pytest.mark.parametrize("where", ["root", "targets"])
def test_published_metadata_with_a_mismatched_key_id_is_rejected_by_verify_exit_12(world, where):
    """Metadata signed by the keys it needs, but listing mallory's key under another key's id, and then
    what mallory signs alone under that id. python-tuf alone accepts it (it counts her signatures as
    that key's): clients must refuse it."""
    from securesystemslib.signer import CryptoSigner

    from tufoci.repo_tool.push import MetadataFile
    from tufoci.repo_tool.signing import sign_with
    from tufoci.repo_tool.versions import bump, to_bytes
    from tufoci.state import now_utc

    scope, security, cluster = (world[k] for k in ("scope", "security", "cluster"))
    current, web, honest = _live(world)
    periods, now = current.expiry_periods, now_utc()
    mallory = CryptoSigner.generate_ed25519()

    def as_(claimed: str) -> dict:  # mallory's private key, signing under ``claimed``
        public = mallory.public_key.to_dict()
        return {claimed: CryptoSigner(mallory._private_key, SSlibKey.from_dict(claimed, public))}  # noqa: SLF001

    files, online_signer, root_version, reference = [], honest("online"), current.root.signed.version, "web/app:1.0"
    if where == "root":  # root v2 puts mallory's key where the online key's id is; she then runs the online role
        claimed = keyid_of(security, "online")
        root = Metadata.from_bytes(to_bytes(current.root))
        root.signed.keys[claimed] = as_(claimed)[claimed].public_key
        bump(root, periods, now)
        sign_with(root, honest("root"))
        root_version = root.signed.version
        files.append(MetadataFile("root", root_version, to_bytes(root)))
        online_signer = as_(claimed)
    else:  # targets lists mallory's key under the web team's id; she then signs web alone
        claimed = keyid_of(world["web"], "web")
        targets = Metadata.from_bytes(to_bytes(current.targets))
        targets.signed.delegations.keys[claimed] = as_(claimed)[claimed].public_key
        bump(targets, periods, now)
        sign_with(targets, honest("targets"))
        files.append(MetadataFile("targets", targets.signed.version, to_bytes(targets)))
        web.signed.targets["web/app:evil"] = TargetFile(123, {"sha256": "0" * 64}, "web/app:evil")
        bump(web, periods, now)
        sign_with(web, as_(claimed))
        files.append(MetadataFile("web", web.signed.version, to_bytes(web)))
        reference = "web/app:evil"
    _publish_forged(world, current, files, online_signer, root_version)

    result = cluster("verify", "--skip-registry-check", f"{scope}/{reference}")
    assert result.exit_code == 12, (result.stdout, result.stderr)
    assert claimed in result.stderr and "refused" in result.stderr
    fresh = Machine("fresh", world["tmp_path"], cluster.monkeypatch)  # a cold client too
    fresh.ok("trust", "add", scope, "--root", str(world["tmp_path"] / "root.json"))
    assert fresh("verify", "--skip-registry-check", f"{scope}/{reference}").exit_code == 12
    assert security("status", scope, "--check").exit_code == 1  # maintainers refuse it as well


@pytest.mark.parametrize("spelling", ["uppercase-hex", "extra-keyval-field"])
def test_one_public_key_under_two_computed_ids_is_rejected_by_verify_exit_12(world, spelling):
    """Independent review (2026-12): every key id is its material's, yet one public key has many spellings
    (ed25519 hex in upper case, a keyval with an extra field), each with its own computed id. A delegation
    the targets key holders were talked into lists mallory's key under two of them with threshold 2: she then
    meets the threshold alone (python-tuf counts key ids). Clients must refuse it, maintainers too."""
    from securesystemslib.signer import CryptoSigner

    from tufoci.keyids import computed_keyid
    from tufoci.repo_tool.push import MetadataFile
    from tufoci.repo_tool.signing import sign_with
    from tufoci.repo_tool.versions import bump, to_bytes
    from tufoci.state import now_utc

    scope, security, cluster = (world[k] for k in ("scope", "security", "cluster"))
    current, web, honest = _live(world)
    periods, now = current.expiry_periods, now_utc()
    mallory = CryptoSigner.generate_ed25519()
    key = mallory.public_key
    public = key.keyval["public"]
    keyval = {"public": public.upper()} if spelling == "uppercase-hex" else {"public": public, "comment": "db"}
    alias = SSlibKey("0" * 64, key.keytype, key.scheme, keyval)
    alias = SSlibKey(computed_keyid(alias), key.keytype, key.scheme, keyval)
    assert alias.keyid != key.keyid

    targets = Metadata.from_bytes(to_bytes(current.targets))
    for listed in (key, alias):
        targets.signed.delegations.keys[listed.keyid] = listed
        targets.signed.delegations.roles["web"].keyids.append(listed.keyid)
    targets.signed.delegations.roles["web"].threshold = 2
    bump(targets, periods, now)
    sign_with(targets, honest("targets"))
    web.signed.targets["web/app:evil"] = TargetFile(123, {"sha256": "0" * 64}, "web/app:evil")
    bump(web, periods, now)
    sign_with(web, {k.keyid: CryptoSigner(mallory._private_key, k) for k in (key, alias)})  # noqa: SLF001
    files = [MetadataFile("targets", targets.signed.version, to_bytes(targets)),
             MetadataFile("web", web.signed.version, to_bytes(web))]
    _publish_forged(world, current, files, honest("online"), current.root.signed.version)

    result = cluster("verify", "--skip-registry-check", f"{scope}/web/app:evil")
    assert result.exit_code == 12, (result.stdout, result.stderr)
    assert alias.keyid in result.stderr and "count twice" in result.stderr
    assert security("status", scope, "--check").exit_code == 1  # maintainers refuse it as well


# -- 20.6: the plan resolves delegators from the live graph ----------------------------------------------------

def test_a_team_cannot_get_another_teams_role_published(world):
    """db's complete proposal delegates a role named ``web`` to db's key, and db proposes a web version
    signed by db's key: a routine publish must not treat db as web's delegator."""
    scope, security, db, cluster = world["scope"], world["security"], world["db"], world["cluster"]
    web_version = live_version(security, scope, "web")
    db.ok("delegate", scope, "web", "--key", "db", "--path", "web/*", "--parent", "db")
    stage(db, scope, "web/app:evil", "--role", "web")
    db.ok("publish", scope)  # no online key here: db v2 and web v2 wait as proposals

    report = status(security, scope)
    (web_proposal,) = [p for p in report["proposals"] if p["role"] == "web"]
    assert web_proposal["complete"] is False  # judged by the web key targets gives, not by db's proposal
    result = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert "web" not in result["published"]
    assert live_version(security, scope, "web") == web_version
    assert cluster("verify", "--skip-registry-check", f"{scope}/web/app:evil").exit_code == 10
    cluster.ok("verify", "--skip-registry-check", f"{scope}/web/app:1.0", f"{scope}/db/app:1.0")


# -- 20.9: garbage proposal tags are ignored, and shown as such ------------------------------------------------

def _push_proposal_bytes(store, tag: str, role: str, version: str, data: bytes) -> None:
    store.put_blob(data)
    store.put_blob(b"{}")
    store.put_manifest(tag, build_artifact_manifest(PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, data,
                                                   {"dev.tufoci.role": role, "dev.tufoci.version": version}),
                       MANIFEST_MEDIA_TYPE)


def _targets_json(version, expires: str = "2099-01-01T00:00:00Z") -> bytes:
    body = {"_type": "targets", "spec_version": "1.0.31", "version": version, "expires": expires, "targets": {}}
    return json.dumps({"signatures": [], "signed": body}).encode()


GARBAGE = [
    # (tag, role annotation, version annotation, blob (N = next targets version), expected reason)
    ("staged.nobody.1", "nobody", "1", lambda n: _targets_json(1), "no role delegates nobody"),
    ("staged.targets.{n}", "targets", "{n}", lambda n: _targets_json(float(n)), "not TUF metadata"),
    ("staged.targets.{n}", "targets", "{n}", lambda n: _targets_json(n, expires=1.5), "not TUF metadata"),
    ("staged.web.{w}", "web", "{w}", lambda n: json.dumps({"signatures": [], "signed": {
        "_type": "snapshot", "spec_version": "1.0.31", "version": 2, "expires": "2099-01-01T00:00:00Z",
        "meta": {}}}).encode(), "snapshot metadata"),
    ("staged.snapshot.{n}", "snapshot", "{n}", lambda n: _targets_json(n), "never proposed"),
    ("staged.targets.{n}", "targets", "{n}.5", lambda n: _targets_json(n), "malformed"),
    ("staged.targets.99", "targets", "{n}", lambda n: _targets_json(n), "misplaced"),
]


@pytest.mark.parametrize("tag, role, version, blob, reason", GARBAGE,
                         ids=["undelegated-role", "float-version", "float-expires", "wrong-type", "online-role",
                              "float-annotation", "misplaced"])
def test_one_garbage_proposal_tag_never_blocks_a_maintainer(world, tag, role, version, blob, reason):
    scope, security, web, store = world["scope"], world["security"], world["web"], world["store"]
    n = live_version(security, scope, "targets") + 1
    w = live_version(security, scope, "web") + 1
    tag, version = tag.format(n=n, w=w), version.format(n=n, w=w)
    _push_proposal_bytes(store, tag, role, version, blob(n))

    report = status(web, scope)
    assert report["proposals"] == [] and "error" not in report
    (ignored,) = report["ignoredProposals"]
    assert ignored["tag"] == tag and reason in ignored["reason"], ignored
    assert f"ignored {tag}: " in web.ok("status", scope).stdout
    web.ok("status", scope, "--check")
    stage(web, scope, "web/app:1.1", "--role", "web")
    web.ok("publish", scope)  # proposes web v(w), complete
    security.ok("publish", scope)  # and it goes live past the garbage
    world["cluster"].ok("verify", "--skip-registry-check", f"{scope}/web/app:1.1")
    if status(web, scope)["ignoredProposals"] and ignored["role"] != "snapshot" \
            and tag.endswith(f".{ignored['version']}"):
        web.ok("discard", scope, ignored["role"])  # whoever wants it gone can tombstone it
        assert status(web, scope)["ignoredProposals"] == []


# -- 20.8: a key URI holding another key (the signing-time check is in tests/test_hsm.py) ------------------------

def uri_of(machine: Machine, name: str) -> str:
    (entry,) = [k for k in json.loads(machine.ok("key", "list", "-o", "json").stdout) if k["name"] == name]
    return entry["uri"]


def test_key_import_refuses_a_file_uri_holding_another_key(world):
    security, ops = world["security"], Machine("ops", world["tmp_path"], world["security"].monkeypatch)
    online_public = world["tmp_path"] / "online.pub.json"
    online_public.write_text(security.ok("key", "export", "online").stdout)
    ops.new_key("decoy", "--unencrypted")
    result = ops("key", "import", "online", str(online_public), "--uri", uri_of(ops, "decoy"))
    assert result.exit_code == 1 and uri_of(ops, "decoy") in result.stderr and "refused" in result.stderr
    ops.ok("key", "import", "online", str(online_public), "--uri", uri_of(security, "online"))  # the right file
