"""Story 1: the security team delegates to teams, teams sign their own tags and nothing else.

Each machine is its own TUFOCI_HOME; they share nothing but the registry (and
the public keys and root file handed over out of band).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, push_test_image, reviewed_sign, use_home
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


@pytest.fixture
def acme(registry, tmp_path: Path, home: Path, monkeypatch):
    """The security team's scope, with web and db delegated to their teams."""
    scope = f"{registry.host}/acme"
    security = Machine("security", tmp_path, monkeypatch)
    web = Machine("web-team", tmp_path, monkeypatch)
    db1, db2 = Machine("db-alice", tmp_path, monkeypatch), Machine("db-bob", tmp_path, monkeypatch)
    consumer = Machine("cluster", tmp_path, monkeypatch)

    security.new_key("root")
    security.new_key("targets")
    security.new_key("online", "--unencrypted")
    root_file = tmp_path / "root.json"
    security.ok("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                "--root-out", str(root_file))
    web_keys = [web.new_key(f"web{i}") for i in (1, 2, 3)]
    db_keys = [db1.new_key("db1"), db2.new_key("db2")]
    security.ok("delegate", scope, "web", *sum((["--key", str(k)] for k in web_keys), []), "--path", "web/*")
    security.ok("delegate", scope, "db", *sum((["--key", str(k)] for k in db_keys), []), "--path", "db/*",
                "--threshold", "2")
    published = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert published["published"]["targets"] == 2
    assert published["proposed"] == {}
    assert published["awaitingFirstVersion"] == ["web", "db"]  # their teams' first publish creates them

    for machine in (web, db1, db2, consumer):
        machine.ok("trust", "add", scope, "--root", str(root_file))
    for machine in (web, db1, db2):
        security.share_key(machine, "online")  # the online key runs wherever publishing happens
    for name in ("web/frontend:1.4", "web/api:2.0", "db/postgres:15", "db/postgres:16"):
        push_test_image(tmp_path, name.encode(), f"{scope}/{name}")
    return {"scope": scope, "security": security, "web": web, "db1": db1, "db2": db2, "consumer": consumer}


def test_a_team_signs_its_own_tags_without_root_or_targets_keys(acme):
    scope, web, consumer = acme["scope"], acme["web"], acme["consumer"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    published = json.loads(web.ok("publish", scope, "-o", "json").stdout)
    assert published["published"]["web"] == 1 and "targets" not in published["published"]
    consumer.ok("verify", f"{scope}/web/frontend:1.4")
    assert consumer("verify", f"{scope}/web/api:2.0").exit_code == 10  # pushed, never signed


def test_a_team_cannot_sign_outside_its_paths(acme, tmp_path):
    scope, web, consumer = acme["scope"], acme["web"], acme["consumer"]
    refused = web("target", "add", "--role", "web", f"{scope}/db/postgres:16")  # issue 18: refused when staged
    assert refused.exit_code == 2 and "outside the paths delegated to role web" in refused.stderr
    assert "web/*" in refused.stderr and "nothing staged" in web.ok("status", scope).stdout

    # a web-team insider bypasses tufoci and publishes web metadata listing a db tag anyway
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    _publish_raw_web_version_with(acme, "db/postgres:16")
    result = consumer("verify", f"{scope}/db/postgres:16")
    assert result.exit_code == 10, result.stderr  # the search for db/* never consults web
    consumer.ok("verify", f"{scope}/web/frontend:1.4")


def _publish_raw_web_version_with(acme, name: str, image: str | None = None, *, propose: bool = False,
                                  signed: bool = True) -> None:
    """What a malicious web-team member could push with their key and the online key, bypassing tufoci:
    ``name`` signed as the digest of ``image`` (default: ``name``'s own); with ``propose``, pushed as a
    complete proposal for a routine publish to promote instead (without ``signed``: an unsigned one)."""
    from tufoci.client.refresh import trusted_session
    from tufoci.client.trust_pins import pin_for_scope
    from tufoci.keys import env_secrets_handler
    from tufoci.reference import parse_reference
    from tufoci.repo_tool.current import load_current
    from tufoci.repo_tool.plan import apply_target_change
    from tufoci.repo_tool.push import MetadataFile, push_metadata
    from tufoci.repo_tool.roles import RoleTree
    from tufoci.repo_tool.signing import available_signers, sign_with
    from tufoci.repo_tool.staging import TargetAdd, resolve_image
    from tufoci.repo_tool.versions import bump, next_snapshot, next_timestamp, to_bytes
    from tufoci.state import State, now_utc

    web = acme["web"]
    use_home(web.monkeypatch, web.home)
    state, secrets, now = State.open(), env_secrets_handler(), now_utc()
    pin = pin_for_scope(state, acme["scope"])
    digest, length, custom = resolve_image(parse_reference(f"{acme['scope']}/{image or name}"))
    with trusted_session(state.home, pin) as session:
        current = load_current(session)
        tree = RoleTree(session, current.root.signed)
        md = tree.metadata("web")
        web_keys = tree.delegation("web").keyids
    apply_target_change(md.signed, TargetAdd(pin.scope, "web", name, length, digest, custom))
    bump(md, current.expiry_periods, now)
    if signed:
        sign_with(md, available_signers(state, web_keys, secrets))
    store = open_repository(Repository(acme["scope"].split("/")[0], "acme/tuf"))
    if propose:
        from tufoci.repo_tool.proposals import push_proposal

        push_proposal(store, "web", md, "mallory")
        return
    data = to_bytes(md)
    online = available_signers(state, current.root.signed.roles["snapshot"].keyids, secrets)
    snapshot = next_snapshot(current.snapshot, {"web": (md.signed.version, data)}, current.expiry_periods, now)
    sign_with(snapshot, online)
    timestamp = next_timestamp(current.timestamp, snapshot.signed.version, to_bytes(snapshot), current.expiry_periods, now)
    sign_with(timestamp, online)
    push_metadata(store, [MetadataFile("web", md.signed.version, data),
                          MetadataFile("snapshot", snapshot.signed.version, to_bytes(snapshot))],
                  MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
                  root_version=current.root.signed.version, expected_timestamp=current.timestamp_manifest_digest)


def test_db_release_needs_both_db_maintainers(acme):
    scope, db1, db2, consumer = acme["scope"], acme["db1"], acme["db2"], acme["consumer"]
    db1.ok("target", "add", "--role", "db", f"{scope}/db/postgres:15")
    proposed = json.loads(db1.ok("publish", scope, "-o", "json").stdout)
    assert proposed["published"] == {}
    assert proposed["proposed"]["db"]["thresholds"][0] == {"label": "db", "have": 1, "need": 2}
    assert consumer("verify", f"{scope}/db/postgres:15").exit_code in (10, 12)  # not live yet

    status = json.loads(db2.ok("status", scope, "-o", "json").stdout)
    (proposal,) = [p for p in status["proposals"] if p["role"] == "db"]
    targets = [c for c in proposal["changes"] if c["kind"] == "target"]
    assert targets == [{"kind": "target", "change": "added", "target": "db/postgres:15", "digest": targets[0]["digest"]}]
    # db's first version: everything it signs is new, and nothing else is in it
    assert sorted(c.get("field", c["kind"]) for c in proposal["changes"]) == [
        "_type", "expires", "spec_version", "target", "version"]
    assert proposal["thresholds"][0]["have"] == 1 and proposal["thresholds"][0]["need"] == 2
    assert [m["key"] for m in proposal["thresholds"][0]["missing"]] == ["db2"]

    reviewed_sign(db2, scope, "db")
    db2.ok("publish", scope)
    consumer.ok("verify", f"{scope}/db/postgres:15")


def test_nested_delegation_to_a_sub_team(acme, tmp_path):
    scope, web, consumer = acme["scope"], acme["web"], acme["consumer"]
    frontend = web.new_key("frontend1")
    delegated = web.ok("delegate", scope, "web-frontend", "--key", str(frontend), "--path", "web/frontend:*",
                       "--parent", "web")
    assert "warning" not in delegated.stderr
    # the pattern of the README and examples/teams is one repository: its sibling stays out of reach
    push_test_image(tmp_path, b"admin", f"{scope}/web/frontend-admin:1.0")
    outside = web("target", "add", "--role", "web-frontend", f"{scope}/web/frontend-admin:1.0")
    assert outside.exit_code == 2 and "(web/frontend:*)" in outside.stderr, outside.stderr
    web.ok("target", "add", "--role", "web-frontend", f"{scope}/web/frontend:1.4")
    published = json.loads(web.ok("publish", scope, "-o", "json").stdout)
    assert published["published"]["web"] == 1 and published["published"]["web-frontend"] == 1
    consumer.ok("verify", f"{scope}/web/frontend:1.4")
    assert consumer("verify", f"{scope}/web/api:2.0").exit_code == 10


PATTERNS = [  # pattern, the start of delegate's warning (None: none), a sibling repository's target it matches
    ("web/frontend:*", None, None), ("web/frontend:1.*", None, None), ("web/*", None, None),
    ("web/*/*", None, None), ("*", None, None), ("web/*:1.*", None, None), ("db/postgres:15", None, None),
    ("web/frontend*", "path pattern 'web/frontend*' also matches sibling repositories (e.g. web/frontend-admin:1.0): "
                      "for one repository write 'web/frontend:*'", "web/frontend-admin:1.0"),
    ("web/frontend*:1.0", "path pattern 'web/frontend*:1.0' also matches sibling repositories",
     "web/frontends:1.0"),
    ("web/front?nd:*", "path pattern 'web/front?nd:*' also matches sibling repositories", "web/frontand:1.0"),
    ("web/[ab]pi:*", "path pattern 'web/[ab]pi:*' also matches sibling repositories", "web/bpi:1.0"),
    ("web/frontend", "path pattern 'web/frontend' matches no target: names end in ':TAG'", None),
]


@pytest.mark.parametrize("pattern,warning,sibling", PATTERNS)
def test_patterns_that_grant_more_than_they_say_are_named(pattern, warning, sibling):
    from tuf.api.metadata import DelegatedRole

    from tufoci.repo_tool.delegations import pattern_warning

    got = pattern_warning(pattern)
    assert (got is None) == (warning is None) and (got or "").startswith(warning or ""), got
    if sibling:  # the warning is right: python-tuf's own matching grants the sibling
        assert DelegatedRole("r", [], 1, False, paths=[pattern]).is_delegated_path(sibling)


def test_delegate_warns_about_sibling_repositories_on_one_line(acme):
    scope, security = acme["scope"], acme["security"]
    key = security.new_key("ops1")
    result = security.ok("delegate", scope, "ops", "--key", str(key), "--path", "web/frontend*", "--path", "db/*")
    assert result.stderr.splitlines() == [
        "tufoci: warning: path pattern 'web/frontend*' also matches sibling repositories "
        "(e.g. web/frontend-admin:1.0): for one repository write 'web/frontend:*'"]
    assert "web/frontend-admin" in security.ok("delegate", "--help").stdout


def test_several_roles_matching_one_name_and_terminating_delegations(acme, tmp_path):
    scope, security, web, consumer = acme["scope"], acme["security"], acme["web"], acme["consumer"]
    second = web.new_key("backup1")
    # a second role also matching web/*, after web in delegation order
    security.ok("delegate", scope, "web-backup", "--key", str(second), "--path", "web/*")
    security.ok("publish", scope)
    web.ok("target", "add", "--role", "web-backup", f"{scope}/web/api:2.0")
    web.ok("publish", scope)
    # web has no metadata of its own yet: the walk fails there before reaching web-backup
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    consumer.ok("verify", f"{scope}/web/api:2.0")  # not in web: backtracks to web-backup (pre-order)

    # web's delegation becomes terminating: a miss in web ends the search
    keys = [str(tmp_path / f"web{i}.pub.json") for i in (1, 2, 3)]
    security.ok("delegate", scope, "web", *sum((["--key", k] for k in keys), []), "--path", "web/*", "--terminating")
    security.ok("publish", scope)
    result = consumer("verify", f"{scope}/web/api:2.0")
    assert result.exit_code == 10
    consumer.ok("verify", f"{scope}/web/frontend:1.4")


def test_undelegate_removes_a_team(acme):
    scope, security, web, consumer = acme["scope"], acme["security"], acme["web"], acme["consumer"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    consumer.ok("verify", f"{scope}/web/frontend:1.4")
    security.ok("undelegate", scope, "web")
    security.ok("publish", scope)
    assert consumer("verify", f"{scope}/web/frontend:1.4").exit_code == 10


def test_a_delegated_role_that_never_published_has_signed_nothing(acme):
    result = acme["consumer"]("verify", f"{acme['scope']}/web/frontend:1.4")
    assert result.exit_code == 10
    assert "role web is delegated but has published no metadata yet" in result.stderr


def test_status_and_target_list_cover_delegated_roles(acme):
    scope, web, security = acme["scope"], acme["web"], acme["security"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    roles = {r["role"]: r for r in json.loads(security.ok("status", scope, "-o", "json").stdout)["roles"]}
    assert roles["web"]["version"] == 1 and roles["web"]["threshold"] == 1 and roles["web"]["keys"] == 3
    assert "db" not in roles  # delegated, never published
    listed = json.loads(security.ok("target", "list", scope, "-o", "json").stdout)
    assert [(t["role"], t["target"]) for t in listed] == [("web", "web/frontend:1.4")]


# -- issue 20.7: every consumer of metadata applies the delegation paths -----------------------------


def _release_db_postgres_15(acme) -> None:
    scope, db1, db2 = acme["scope"], acme["db1"], acme["db2"]
    db1.ok("target", "add", "--role", "db", f"{scope}/db/postgres:15")
    db1.ok("publish", scope)
    reviewed_sign(db2, scope, "db")
    db2.ok("publish", scope)


def test_copy_and_target_list_ignore_targets_outside_a_roles_paths(acme, registry2, tmp_path):
    """A web insider lists db's released tag with another digest in web's metadata: clients never consult web
    for db/*, and neither may ``target list`` (listing it) nor ``copy`` (replacing db's image at the mirror)."""
    scope, web, security, consumer = acme["scope"], acme["web"], acme["security"], acme["consumer"]
    _release_db_postgres_15(acme)
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    push_test_image(tmp_path, b"not the db team's postgres", f"{scope}/db/postgres:evil")  # push access only
    _publish_raw_web_version_with(acme, "db/postgres:15", image="db/postgres:evil")
    released = consumer.ok("verify", f"{scope}/db/postgres:15").stdout.strip().split("@")[1]

    listed = json.loads(security.ok("target", "list", scope, "-o", "json").stdout)
    assert sorted((t["role"], t["target"]) for t in listed) == [("db", "db/postgres:15"), ("web", "web/frontend:1.4")]
    assert all(t["digest"] == released for t in listed if t["target"] == "db/postgres:15")

    mirror = f"{registry2.host}/acme"
    report = json.loads(security.ok("copy", scope, mirror, "-o", "json").stdout)
    assert report["targets"] == ["db/postgres:15", "web/frontend:1.4"]
    assert registry2.get_manifest("acme/db/postgres", "15")[1] == released  # not the insider's digest
    consumer.ok("trust", "add", mirror, "--root", str(tmp_path / "root.json"))
    assert consumer.ok("verify", f"{mirror}/db/postgres:15").stdout.strip().split("@")[1] == released


def test_publish_refuses_a_complete_proposal_outside_its_paths(acme):
    scope, web, security = acme["scope"], acme["web"], acme["security"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    _publish_raw_web_version_with(acme, "db/postgres:16", propose=True)  # signed by a web key: complete

    security.ok("target", "add", f"{scope}/web/api:2.0")  # a routine publish by someone else
    result = json.loads(security.ok("publish", scope, "-o", "json").stdout)
    assert "web" not in result["published"] and result["published"]["targets"] >= 2
    held = result["proposed"]["web"]["held"]
    assert "db/postgres:16" in held and "outside its delegated paths" in held, held
    (threshold,) = result["proposed"]["web"]["thresholds"]
    assert threshold["have"] >= threshold["need"]  # complete, refused all the same
    listed = json.loads(security.ok("target", "list", scope, "-o", "json").stdout)
    assert ("web", "db/postgres:16") not in [(t["role"], t["target"]) for t in listed]


def test_publish_with_nothing_to_do_never_calls_an_unsigned_refused_proposal_complete(acme):
    """The held reasons publish names when it has nothing to do (§18): a proposal refused for its paths is
    held whatever its signatures, so only a complete one may be called complete."""
    scope, web, security = acme["scope"], acme["web"], acme["security"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    _publish_raw_web_version_with(acme, "db/postgres:16", propose=True, signed=False)

    nothing = security("publish", scope)
    assert nothing.exit_code == 1 and "web v2 is refused: lists db/postgres:16" in nothing.stderr, nothing.stderr
    assert "complete" not in nothing.stderr
