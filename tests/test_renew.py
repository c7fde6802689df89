"""Issue 15.4: renewing a role (same content, fresh expiry) through the normal signing flow, and the
expiry warnings of ``status`` and the online service that say who must renew what."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.conftest import Machine, needs_registry, publish_web, reviewed_sign
from tests.test_freshness import at
from tests.test_threshold_release import proposal_of, release  # noqa: F401  (the 2-of-3 fixture)

pytestmark = needs_registry


def signed_targets(machine: Machine, scope: str) -> list[dict]:
    return json.loads(machine.ok("target", "list", scope, "-o", "json").stdout)


def role_row(machine: Machine, scope: str, role: str) -> dict:
    (row,) = [r for r in json.loads(machine.ok("status", scope, "-o", "json").stdout)["roles"] if r["role"] == role]
    return row


@pytest.fixture
def single(registry, tmp_path, home, monkeypatch):
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", scope, "--root", str(root))
    return scope, maintainer, cluster


@pytest.mark.parametrize("role", ["targets", "root"])
def test_renew_publishes_the_same_content_with_a_fresh_expiry(single, role):
    scope, maintainer, cluster = single
    before, targets = role_row(maintainer, scope, role), signed_targets(maintainer, scope)
    maintainer.ok("renew", scope, role, "--expires", "400d")
    assert "~ renew" in maintainer.ok("status", scope).stdout
    published = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)
    assert published["published"][role] == before["version"] + 1
    after = role_row(maintainer, scope, role)
    assert after["expires"] > before["expires"] and after["expiresIn"][:6] in ("in 399", "in 400")
    assert signed_targets(maintainer, scope) == targets
    cluster.ok("verify", f"{scope}/web:1.0")


def test_renew_refuses_online_roles_and_unknown_roles(single):
    scope, maintainer, _ = single
    for role in ("snapshot", "timestamp"):
        result = maintainer("renew", scope, role)
        assert result.exit_code == 2 and "online service" in result.stderr and "tufoci timestamp" in result.stderr
    result = maintainer("renew", scope, "nobody")
    assert result.exit_code == 1 and "no role 'nobody' is delegated" in result.stderr
    assert "nothing staged" in maintainer.ok("status", scope).stdout


def test_a_threshold_renewal_is_a_proposal_that_changes_only_version_and_expires(release):  # noqa: F811
    scope, alice, bob, cluster = release["scope"], release["alice"], release["bob"], release["cluster"]
    alice.ok("renew", scope, "targets", "--expires", "100d")  # not the 90d period: published seconds ago, the same expiry
    assert "proposed targets v4: 1 of 2 signatures" in alice.ok("publish", scope).stdout
    proposal = proposal_of(bob, scope, "targets")
    assert sorted(c["kind"] for c in proposal["changes"]) == ["expires", "version"]
    assert [c for c in proposal["changes"] if c["kind"] == "version"][0] == {"kind": "version", "from": 3, "to": 4}
    reviewed_sign(bob, scope, "targets")
    assert json.loads(bob.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 4
    cluster.ok("verify", f"{scope}/web:1.0")


def test_a_proposal_that_expired_before_it_went_live_is_held_and_proposed_again(release):  # noqa: F811
    """A complete proposal whose expiry passed must never go live: every consumer would refuse the repository
    (exit 12) until the next version. The publish holds it and says why, signing it is refused, and a renewal
    folded into it proposes the same content again with a fresh expiry."""
    scope, alice, bob, cluster = release["scope"], release["alice"], release["bob"], release["cluster"]
    alice.ok("renew", scope, "targets", "--expires", "3s")
    assert "proposed targets v4: 1 of 2 signatures" in alice.ok("publish", scope).stdout
    reviewed_sign(bob, scope, "targets")  # complete, but nobody publishes it in time
    time.sleep(3.5)

    held = bob("publish", scope)
    assert held.exit_code == 1 and "targets v4 is complete but expired at" in held.stderr
    proposal = proposal_of(alice, scope, "targets")
    assert proposal["complete"] and proposal["held"].startswith("expired at")
    cluster.ok("verify", f"{scope}/web:1.0")  # targets v3 still serves
    refused = alice("sign", scope, "targets", "--expect", proposal_of(alice, scope, "targets")["fingerprint"])
    assert refused.exit_code == 2 and "refusing to sign targets v4" in refused.stderr and "expired at" in refused.stderr

    bob.ok("renew", scope, "targets")
    assert "(replaces the open v4: its signers must sign again)" in bob.ok("publish", "--fold", scope).stdout
    reviewed_sign(alice, scope, "targets")
    assert json.loads(alice.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 4
    cluster.ok("verify", f"{scope}/web:1.0")
    row = role_row(alice, scope, "targets")
    assert row["version"] == 4 and row["expires"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 80 * 86400))


def test_a_team_renews_its_delegated_role(registry, tmp_path, home, monkeypatch):
    from tests.test_teams import acme as _acme  # the teams fixture, built here

    acme = _acme.__wrapped__(registry, tmp_path, home, monkeypatch)
    scope, web, consumer = acme["scope"], acme["web"], acme["consumer"]
    web.ok("target", "add", "--role", "web", f"{scope}/web/frontend:1.4")
    web.ok("publish", scope)
    web.ok("renew", scope, "web")
    assert json.loads(web.ok("publish", scope, "-o", "json").stdout)["published"]["web"] == 2
    consumer.ok("verify", f"{scope}/web/frontend:1.4")


def test_status_says_who_must_renew_a_role(release):  # noqa: F811
    scope, alice = release["scope"], release["alice"]
    result = alice.ok("status", scope, "--warn", "targets=100d", "--warn", "timestamp=2d")
    (line,) = [l for l in result.stderr.splitlines() if "targets v3 expires soon" in l]
    assert f"'tufoci renew {scope} targets', signed by 2 of " in line
    row = role_row(alice, scope, "targets")
    assert sorted(k["key"] or "" for k in row["renewBy"]) == ["", "", "alice"]  # bob and carol: not in her catalogue
    others = [k["keyid"][:12] for k in row["renewBy"] if k["key"] is None]
    assert "alice" in line and all(keyid in line for keyid in others)
    (line,) = [l for l in result.stderr.splitlines() if "timestamp v" in l]
    assert f"online service re-signs it ('tufoci timestamp {scope}'), key 1 of online" in line


@pytest.mark.skipif(shutil.which("faketime") is None and not os.environ.get("CI"), reason="Debian faketime is needed")
def test_the_online_service_warns_ahead_of_every_roles_expiry(single):
    scope, maintainer, _ = single
    result = at("+70d", maintainer, "timestamp", scope, "--revive-expired")  # targets (90d) is inside its last quarter
    assert result.returncode == 0, result.stderr
    (line,) = [l for l in result.stderr.splitlines() if "targets v" in l]
    assert "expires soon" in line and f"'tufoci renew {scope} targets', signed by 1 of targets" in line
    assert "root v1" not in result.stderr  # a year: not yet
