"""The in-process Verifier (admission controllers, `tufoci agent`) with no freshness window.

Between refreshes it re-reads only the timestamp manifest: the same digest means the same metadata, so
the last answers stand; anything else, or a trusted cache another process moved on, means a full refresh.
Request counts come from the real registry's access log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web, push_test_image
from tests.test_request_budget import metadata_requests
from tufoci.client.verify import Verifier
from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import TIMESTAMP_TAG
from tufoci.reference import parse_repository
from tufoci.state import State
from tufoci.store import open_repository

pytestmark = needs_registry


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch):
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", scope, "--root", str(root))
    return scope, maintainer, cluster


def digest_of(verifier: Verifier, ref: str) -> str:
    (outcome,) = verifier.verify([ref], check_registry=False)
    if outcome.error is not None:
        raise outcome.error
    return outcome.image.digest


def test_an_unchanged_timestamp_costs_one_request_and_a_publish_is_seen_at_once(registry, world, tmp_path):
    scope, maintainer, cluster = world
    ref = f"{scope}/web:1.0"
    verifier = Verifier(State.open(str(cluster.home)))
    first = digest_of(verifier, ref)
    # what a full refresh would re-read and re-verify: damaged, it would be fetched again (a second request)
    (cached_targets,) = (cluster.home / "cache").glob("*/targets.json")
    cached_targets.write_text("{}")

    mark = registry.mark()
    assert digest_of(verifier, ref) == first
    assert metadata_requests(registry, mark) == [f"GET /v2/acme/tuf/manifests/{TIMESTAMP_TAG}"]

    push_test_image(tmp_path, b"web, rebuilt", ref)
    maintainer.ok("target", "add", ref)
    maintainer.ok("publish", scope)
    mark = registry.mark()
    second = digest_of(verifier, ref)
    assert second != first  # a new timestamp: a full refresh, no stale answer
    assert len(metadata_requests(registry, mark)) > 1


def test_a_rollback_the_shared_cache_would_catch_is_not_skipped(registry, world, tmp_path, monkeypatch):
    """The verifier verified publish A; another process on the machine then trusted publish B; the registry
    serves A's timestamp manifest again. Byte for byte what this verifier saw, but a rollback for the cache."""
    scope, maintainer, cluster = world
    ref = f"{scope}/web:1.0"
    metadata = open_repository(parse_repository(f"{scope}/tuf"))
    old = metadata.get_manifest(TIMESTAMP_TAG)
    verifier = Verifier(State.open(str(cluster.home)))
    digest_of(verifier, ref)

    maintainer.ok("timestamp", scope)  # publish B: a new timestamp version
    cluster.ok("verify", "--skip-registry-check", ref)  # the other process: the cache now trusts B
    metadata.put_manifest(TIMESTAMP_TAG, old.data, old.content_type)  # the registry rolls back to A

    with pytest.raises(MetadataRejectedError, match="timestamp"):
        digest_of(verifier, ref)


def test_a_name_asked_earlier_that_stops_resolving_never_fails_a_later_call(registry, world, tmp_path, monkeypatch):
    """The verifier re-answers names it was asked before; one whose lookup now raises (a role delegated but not
    yet published) is forgotten, where a fresh verify of the other name succeeds."""
    scope, maintainer, cluster = world
    verifier = Verifier(State.open(str(cluster.home)))
    (web, team_app) = verifier.verify([f"{scope}/web:1.0", f"{scope}/team/app:1.0"], check_registry=False)
    assert web.image is not None and team_app.error is not None and team_app.error.exit_code == 10

    team_key = Machine("team", tmp_path, monkeypatch).new_key("team")  # the team's own machine: no first version
    maintainer.ok("delegate", scope, "team", "--key", str(team_key), "--path", "team/*")
    maintainer.ok("publish", scope)
    assert cluster("verify", "--skip-registry-check", f"{scope}/team/app:1.0").exit_code == 10
    assert digest_of(verifier, f"{scope}/web:1.0") == web.image.digest
