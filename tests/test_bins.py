"""Hashed-bin delegations (TAP 15, python-tuf SuccinctRoles) for repositories with very many tags."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Machine, init_scope_on


def records(scope: str, tags: range) -> str:
    return "".join(f"{scope}/app:{n} sha256:{n:064x} {1000 + n}\n" for n in tags)


def test_targets_spread_over_bins_and_one_tag_re_signs_one_bin(tmp_path: Path, home: Path, monkeypatch):
    scope = f"oci:{tmp_path / 'store'}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    maintainer.new_key("bins", "--unencrypted")
    maintainer.ok("delegate", scope, "bins", "--key", "bins", "--bins", "16")
    assert json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)["published"]["targets"] == 2

    batch = tmp_path / "batch.txt"
    batch.write_text(records(scope, range(200)))
    maintainer.ok("target", "add", "--from-file", str(batch))
    published = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)["published"]
    bins = {role for role in published if role.startswith("bins-")}
    assert len(bins) == 16 and "targets" not in published  # 200 names hash into all 16 bins

    listed = json.loads(maintainer.ok("target", "list", scope, "-o", "json").stdout)
    assert len(listed) == 200
    from tuf.api.metadata import SuccinctRoles

    succinct = SuccinctRoles([], 1, 4, "bins")
    assert all(t["role"] == succinct.get_role_for_target(t["target"]) for t in listed)

    one = tmp_path / "one.txt"
    one.write_text(records(scope, range(200, 201)))
    maintainer.ok("target", "add", "--from-file", str(one))
    again = json.loads(maintainer.ok("publish", scope, "-o", "json").stdout)["published"]
    assert set(again) == {succinct.get_role_for_target("app:200"), "snapshot", "timestamp"}

    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", scope, "--root", str(root))
    out = cluster.ok("verify", "--skip-registry-check", f"{scope}/app:7", f"{scope}/app:200").stdout.split()
    assert [line.rsplit(":", 1)[1] for line in out] == [f"{7:064x}", f"{200:064x}"]
    assert cluster("verify", "--skip-registry-check", f"{scope}/app:999").exit_code == 10


def test_bins_need_a_power_of_two_and_no_named_delegations(tmp_path: Path, home: Path, monkeypatch):
    scope = f"oci:{tmp_path / 'store'}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    init_scope_on(maintainer, scope, tmp_path)
    maintainer.new_key("bins", "--unencrypted")
    assert maintainer("delegate", scope, "bins", "--key", "bins", "--bins", "12").exit_code == 2
    maintainer.ok("delegate", scope, "web", "--key", "bins", "--path", "web/*")
    maintainer.ok("publish", scope)
    maintainer.ok("delegate", scope, "bins", "--key", "bins", "--bins", "16")
    refused = maintainer("publish", scope)
    assert refused.exit_code == 2 and "undelegate those first" in refused.stderr
