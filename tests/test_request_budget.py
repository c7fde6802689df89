"""The round-trip budget of docs/layout.md §5, counted at a real registry's access log.

Not a timing test: request counts are exact and part of the layout's design.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import Machine, init_scope_on, needs_registry, push_test_image

pytestmark = needs_registry


def metadata_requests(registry, since: int) -> list[str]:
    return [f"{line.method} {line.path}" for line in registry.access_log_lines(since=since) if "/acme/tuf/" in line.path]


def test_cold_warm_and_delegated_refreshes_stay_within_budget(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    maintainer, cluster = Machine("maintainer", tmp_path, monkeypatch), Machine("cluster", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    maintainer.new_key("team")
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    push_test_image(tmp_path, b"app", f"{scope}/team/app:1.0")
    maintainer.ok("delegate", scope, "team", "--key", "team", "--path", "team/*")
    maintainer.ok("target", "add", f"{scope}/web:1.0")
    maintainer.ok("target", "add", "--role", "team", f"{scope}/team/app:1.0")
    maintainer.ok("publish", scope)
    cluster.ok("trust", "add", scope, "--root", str(root))

    mark = registry.mark()
    cluster.ok("verify", "--skip-registry-check", f"{scope}/web:1.0")
    cold = metadata_requests(registry, mark)
    assert len(cold) == 2, cold  # timestamp manifest (timestamp + snapshot inline), targets blob by digest

    mark = registry.mark()
    cluster.ok("verify", "--skip-registry-check", f"{scope}/web:1.0")
    assert metadata_requests(registry, mark) == ["GET /v2/acme/tuf/manifests/timestamp"]  # unchanged: one

    shutil.rmtree(cluster.home / "cache")
    mark = registry.mark()
    cluster.ok("verify", "--skip-registry-check", f"{scope}/team/app:1.0")
    delegated = metadata_requests(registry, mark)
    assert len(delegated) == 3, delegated  # + the delegated role's blob by digest


def test_the_warm_fast_path_makes_one_metadata_request(registry, tmp_path: Path, home: Path, monkeypatch):
    """A warm ``tufoci verify`` process answered from the record (client/fast_verify.py): the timestamp
    manifest and the tag check, nothing else."""
    from tufoci.client.fast_verify import fast_verify

    scope = f"{registry.host}/acme"
    maintainer, cluster = Machine("maintainer", tmp_path, monkeypatch), Machine("cluster", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    maintainer.ok("target", "add", "--publish", f"{scope}/web:1.0")
    cluster.ok("trust", "add", scope, "--root", str(root))
    cluster.ok("verify", f"{scope}/web:1.0")

    mark = registry.mark()
    answer = fast_verify([f"{scope}/web:1.0"], str(cluster.home))
    assert answer is not None and answer[0] == 0
    requests = [f"{line.method} {line.path}" for line in registry.access_log_lines(since=mark)]
    assert requests == ["GET /v2/acme/tuf/manifests/timestamp", "GET /v2/acme/web/manifests/1.0"], requests
