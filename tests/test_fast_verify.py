"""The warm verify fast path (issue 19): answers from the record a full refresh left, or falls through.

What it may say is exactly what the full path says (same bytes on stdout and
stderr, same exit code); whatever it is not sure of is the full path's. The
hostile-registry table is in tests/test_hostile_registry.py (it reuses that
module's world); the request budget in tests/test_request_budget.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Machine, needs_registry, publish_web, push_test_image
from tufoci.client.fast_verify import fast_verify
from tufoci.client.verified_record import cache_dir, read_record, record_path
from tufoci.state import State

pytestmark = needs_registry

# what the warm path must not import (the whole point: ~200 ms of start-up)
HEAVY = ("tuf", "securesystemslib", "cryptography", "urllib3", "click", "sqlite_utils")
# and the standard-library and tufoci modules it was cut loose from (issue 19, docs/performance.md): dataclasses
# (inspect, ast, dis: ~3.5 ms, and ~1.2 ms per frozen class built), typing, the layout's parsers, threads for one
# tag, base64 for a registry that asks no credentials
SLOW = ("dataclasses", "inspect", "ast", "typing", "tufoci.layout_spec", "tufoci.store.base", "threading", "base64",
        "tufoci.expiry_periods")


@pytest.fixture
def warm(registry, home, tmp_path: Path, monkeypatch):
    """A consumer that verified web:1.0 and web:1.1 once (the full path wrote the record)."""
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    push_test_image(tmp_path, b"web 1.1", f"{scope}/web:1.1")
    maintainer.ok("target", "add", "--publish", f"{scope}/web:1.1")
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", scope, "--root", str(root))
    cluster.ok("verify", f"{scope}/web:1.0", f"{scope}/web:1.1")
    return scope, cluster, maintainer


def _record_file(cluster: Machine) -> Path:
    (pin,) = State.open(str(cluster.home)).pins()
    return Path(record_path(cache_dir(str(cluster.home), pin)))


def full(cluster: Machine, *args: str) -> tuple[int, str, str]:
    result = cluster("verify", *args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("options", [(), ("-o", "json"), ("--skip-registry-check",), ("--timeout", "10s")])
def test_the_fast_path_says_exactly_what_the_full_path_says(warm, options):
    scope, cluster, _ = warm
    refs = [f"{scope}/web:1.1", f"{scope}/web:1.0"]
    answer = fast_verify([*refs, *options], str(cluster.home))
    assert answer is not None
    assert answer == full(cluster, *refs, *options)
    assert answer[0] == 0


def test_a_reference_with_its_digest_is_answered_and_a_wrong_digest_falls_through(warm):
    scope, cluster, _ = warm
    digest = full(cluster, f"{scope}/web:1.0")[1].strip().split("@")[1]
    good = f"{scope}/web:1.0@{digest}"
    assert fast_verify([good], str(cluster.home)) == full(cluster, good)
    wrong = f"{scope}/web:1.0@sha256:{'0' * 64}"
    assert fast_verify([wrong], str(cluster.home)) is None
    assert full(cluster, wrong)[0] == 11


def test_the_record_is_owner_only_and_names_the_pin(warm):
    scope, cluster, _ = warm
    path = _record_file(cluster)
    assert path.stat().st_mode & 0o777 == 0o600
    record = json.loads(path.read_text())
    assert record["pin"]["scope"] == scope
    assert sorted(record["targets"]) == ["web:1.0", "web:1.1"]


@pytest.mark.parametrize("damage", ["missing", "empty", "not json", "truncated", "another shape", "a bad digest",
                                    "another pin", "another root", "writable by others", "expired",
                                    "another trusted timestamp"])
def test_a_record_it_cannot_rely_on_is_ignored(warm, damage):
    scope, cluster, _ = warm
    path = _record_file(cluster)
    record = json.loads(path.read_text())
    text = path.read_text()
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_text("")
    elif damage == "not json":
        path.write_text("{not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "another shape":
        path.write_text(json.dumps({**record, "targets": [1, 2]}))
    elif damage == "a bad digest":
        record["targets"]["web:1.0"]["digest"] = "sha256:abc"
        path.write_text(json.dumps(record))
    elif damage == "another pin":
        record["pin"]["metadata"] = f"{scope}/other-tuf"
        path.write_text(json.dumps(record))
    elif damage == "another root":
        record["pin"]["rootSha256"] = "0" * 64
        path.write_text(json.dumps(record))
    elif damage == "writable by others":
        os.chmod(path, 0o666)
    elif damage == "expired":
        record["expires"] = time.time() - 1
        path.write_text(json.dumps(record))
    elif damage == "another trusted timestamp":
        record["trustedTimestamp"] = "0" * 64
        path.write_text(json.dumps(record))
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None
    # the full path is unaffected, and leaves a good record again
    assert full(cluster, f"{scope}/web:1.0")[0] == 0
    if damage not in ("writable by others",):
        assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) == full(cluster, f"{scope}/web:1.0")


def test_a_record_of_another_pin_for_the_scope_is_ignored(warm, tmp_path):
    """Re-pinning the scope to another root: the cache key changes, and a record copied over is refused."""
    scope, cluster, _ = warm
    old = _record_file(cluster)
    other = Machine("other", tmp_path, cluster.monkeypatch)
    other_root = tmp_path / "other-root.json"
    other.new_key("root")
    other.new_key("targets")
    other.new_key("online", "--unencrypted")
    other.ok("init", f"{scope}-other", "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
             "--root-out", str(other_root))
    cluster.ok("trust", "add", scope, "--root", str(other_root), "--metadata", f"{scope}-other/tuf", "--replace")
    new = _record_file(cluster)
    assert new != old
    new.write_bytes(old.read_bytes())
    os.chmod(new, 0o600)
    (pin,) = State.open(str(cluster.home)).pins()
    assert read_record(cache_dir(str(cluster.home), pin), pin) is None
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None


def test_names_not_resolved_yet_and_unsigned_names_fall_through(warm):
    scope, cluster, _ = warm
    assert fast_verify([f"{scope}/web:1.0", f"{scope}/web:9.9"], str(cluster.home)) is None
    assert full(cluster, f"{scope}/web:9.9")[0] == 10
    assert fast_verify([f"{scope}/web@sha256:{'0' * 64}"], str(cluster.home)) is None  # digest-only: full path


def test_a_new_process_resolves_again_the_names_the_last_one_asked(warm):
    """The full path carries the record's names (not its answers) into its refresh: after a new timestamp,
    a single-name verify leaves every name asked before answerable again; one no longer signed is dropped."""
    scope, cluster, maintainer = warm
    maintainer.ok("timestamp", scope)
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None  # the timestamp moved
    assert full(cluster, f"{scope}/web:1.0")[0] == 0
    assert fast_verify([f"{scope}/web:1.1"], str(cluster.home)) == full(cluster, f"{scope}/web:1.1")

    maintainer.ok("target", "remove", scope, "web:1.1")
    maintainer.ok("publish", scope)
    assert full(cluster, f"{scope}/web:1.0")[0] == 0
    assert sorted(json.loads(_record_file(cluster).read_text())["targets"]) == ["web:1.0"]
    assert fast_verify([f"{scope}/web:1.1"], str(cluster.home)) is None
    assert full(cluster, f"{scope}/web:1.1")[0] == 10


def test_a_moved_tag_falls_through_to_the_full_answer(warm, tmp_path):
    scope, cluster, _ = warm
    push_test_image(tmp_path, b"not what was signed", f"{scope}/web:1.0")
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None
    assert full(cluster, f"{scope}/web:1.0")[0] == 11


def test_the_budget_holds_on_the_fast_path(warm, monkeypatch):
    """--timeout: an already spent budget makes the fast path give up (and the full path report it)."""
    from tufoci import budget

    scope, cluster, _ = warm
    with budget.budget(0.000001):
        time.sleep(0.01)
        assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None


def _warm_process(cluster: Machine, *args: str, importtime: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUFOCI_HOME": str(cluster.home), "TUFOCI_NO_AGENT": "1"}
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "tufoci.entry", "verify", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_the_warm_path_imports_no_tuf_no_crypto_no_urllib3(warm):
    scope, cluster, _ = warm
    done = _warm_process(cluster, f"{scope}/web:1.0", importtime=True)
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not modules & set(SLOW), sorted(modules & set(SLOW))
    assert done.stdout == full(cluster, f"{scope}/web:1.0")[1]


def test_a_single_warm_verify_asks_the_timestamp_and_the_tag_on_one_connection(warm, monkeypatch):
    """Pipelined in one write (manifest_batch.fetch_in_order): one round trip, not two one after the other."""
    import socket

    connections = []
    create_connection = socket.create_connection

    def counted(*args, **kwargs):
        connections.append(args[0])
        return create_connection(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    scope, cluster, _ = warm
    answer = fast_verify([f"{scope}/web:1.0"], str(cluster.home))
    assert answer is not None and answer[0] == 0
    assert len(connections) == 1, connections


def test_the_plain_http_warm_path_loads_no_tls_no_idna_and_no_registries_conf_parser(warm, tmp_path, monkeypatch):
    """ssl (~5 ms) is imported only where a TLS context is built, tomllib (~11 ms) only for a registries.conf
    with content (not for the all-comments file distributions install), and an ASCII registry host is
    resolved without the idna codec (unicodedata, stringprep: ~2 ms)."""
    scope, cluster, _ = warm
    conf = tmp_path / "registries.conf"
    conf.write_text("# containers-registries.conf(5)\n#\n# unqualified-search-registries = []\n")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    done = _warm_process(cluster, f"{scope}/web:1.0", importtime=True)
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "tufoci.client.fast_verify" in imported
    costly = {"ssl", "_ssl", "tomllib", "encodings.idna", "unicodedata"}
    assert not imported & costly, sorted(imported & costly)
    assert done.stdout == full(cluster, f"{scope}/web:1.0")[1]


def test_without_a_record_the_process_runs_the_full_path(warm):
    scope, cluster, _ = warm
    _record_file(cluster).unlink()
    done = _warm_process(cluster, f"{scope}/web:1.0", importtime=True)
    assert done.returncode == 0, done.stderr
    assert "| tuf" in done.stderr  # the full refresh ran
    assert _record_file(cluster).exists()  # and left a record for the next process


def test_many_references_share_kept_alive_connections(warm):
    """More tag checks than connections: each connection serves several requests in turn."""
    scope, cluster, _ = warm
    refs = [f"{scope}/web:1.0", f"{scope}/web:1.1"] * 6
    answer = fast_verify(refs, str(cluster.home))
    assert answer is not None and answer == full(cluster, *refs)


def test_a_reference_given_twice_is_checked_once(warm, registry):
    scope, cluster, _ = warm
    refs = [f"{scope}/web:1.0", f"{scope}/web:1.1"] * 3
    mark = registry.mark()
    answer = fast_verify(refs, str(cluster.home))
    requests = [f"{line.method} {line.path}" for line in registry.access_log_lines(since=mark)]
    assert requests == ["GET /v2/acme/tuf/manifests/timestamp", "GET /v2/acme/web/manifests/1.0",
                        "GET /v2/acme/web/manifests/1.1"], requests
    assert answer is not None and answer == full(cluster, *refs)


def test_the_fast_path_connects_as_the_full_path_is_configured(warm, tmp_path, monkeypatch):
    """Registry configuration (docs/registries.md) decides the fast path's connections too: a registry that
    is reached through a proxy is left to the full path, never reached directly behind the user's back."""
    scope, cluster, _ = warm
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is not None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: only a direct connection works
    monkeypatch.setenv("NO_PROXY", "")
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is None
    assert full(cluster, f"{scope}/web:1.0")[0] == 13
    monkeypatch.setenv("NO_PROXY", scope.split("/")[0].split(":")[0])
    assert fast_verify([f"{scope}/web:1.0"], str(cluster.home)) is not None
