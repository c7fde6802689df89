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
        "tufoci.expiry_periods",
        # and the second cut (docs/performance.md): OpenSSL's hashlib, json, sqlite3's DB-API layer and its
        # datetime, urllib.parse and ipaddress, the socket module's enums and selectors (~9 ms together)
        "hashlib", "_hashlib", "json", "sqlite3", "datetime", "urllib.parse", "ipaddress", "socket", "selectors",
        "contextlib")


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


def _fields(path: Path) -> list[list[str]]:
    """The record's lines, split into fields (client/verified_record.py: tab-separated, escaped)."""
    return [line.split("\t") for line in path.read_text(encoding="ascii").splitlines()]


def _rewrite(path: Path, change) -> None:
    """Write the record back with ``change(fields)`` applied to each line's fields (None: drop the line)."""
    lines = [changed for fields in _fields(path) if (changed := change(fields)) is not None]
    path.write_text("".join("\t".join(fields) + "\n" for fields in lines), encoding="utf-8")


def _target_names(path: Path) -> list[str]:
    return sorted(fields[1] for fields in _fields(path) if fields[0] == "target")


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
    (pin,) = [fields for fields in _fields(path) if fields[0] == "pin"]
    assert pin[1] == scope
    assert _target_names(path) == ["web:1.0", "web:1.1"]


def _set(key: str, index: int, value: str, name: str | None = None):
    def change(fields: list[str]) -> list[str]:
        if fields[0] == key and (name is None or fields[1] == name):
            fields = fields[:index] + [value] + fields[index + 1:]
        return fields
    return change


DAMAGE = {
    "empty": lambda text: "",
    "not a record": lambda text: "{not a record",
    "truncated": lambda text: text[: len(text) // 2],
    "without its last newline": lambda text: text[:-1],
    "a line too many": lambda text: text + "anything\telse\n",
    "a blank line": lambda text: text.replace("\n", "\n\n", 1),
    "a pin line twice": lambda text: text + next(line for line in text.splitlines(True) if line.startswith("pin\t")),
    "a name twice": lambda text: text + next(line for line in text.splitlines(True) if line.startswith("target\t")),
}
CHANGES = {
    # a media type is printed by no answer: only the parse can refuse these
    "not ASCII": lambda f: [*f[:4], f[4] + "é"] if f[0] == "target" else f,
    "an escape that does not decode": lambda f: [*f[:4], f[4] + "\\x"] if f[0] == "target" else f,
    "a bad digest": _set("target", 2, "sha256:abc", "web:1.0"),
    "an uppercase digest": lambda f: [f[0], f[1], f[2].upper(), *f[3:]] if f[0] == "target" else f,
    "a length that is not a count": _set("target", 3, "-1", "web:1.0"),
    "another pin": lambda f: [*f[:3], f[3] + "-other"] if f[0] == "pin" else f,
    "another root": _set("pin", 2, "0" * 64),
    "expired": _set("expires", 1, str(int(time.time()) - 1)),
    "an expiry that is no count": _set("expires", 1, "inf"),
    "no expiry": lambda f: None if f[0] == "expires" else f,
    "another trusted timestamp": _set("trustedTimestamp", 1, "0" * 64),
}


def _format_1(path: Path) -> str:
    """What the format-1 writer left: the same facts as JSON."""
    fields = _fields(path)
    value = {line[0]: line[1:] for line in fields[1:] if line[0] != "target"}
    return json.dumps({
        "format": 1, "pin": dict(zip(("scope", "rootSha256", "metadata"), value["pin"], strict=True)),
        "timestampManifest": value["timestampManifest"][0], "trustedTimestamp": value["trustedTimestamp"][0],
        "expires": float(value["expires"][0]),
        "targets": {f[1]: {"digest": f[2], "length": int(f[3]), "mediaType": f[4]} for f in fields if f[0] == "target"},
    }, sort_keys=True)


@pytest.mark.parametrize("damage", ["missing", "writable by others", "format 1 (JSON)", *DAMAGE, *CHANGES])
def test_a_record_it_cannot_rely_on_is_ignored(warm, damage):
    scope, cluster, _ = warm
    path = _record_file(cluster)
    if damage == "missing":
        path.unlink()
    elif damage == "writable by others":
        os.chmod(path, 0o666)
    elif damage == "format 1 (JSON)":
        path.write_text(_format_1(path))
    elif damage in DAMAGE:
        path.write_bytes(DAMAGE[damage](path.read_text(encoding="ascii")).encode())
    else:
        _rewrite(path, CHANGES[damage])
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
    assert _target_names(_record_file(cluster)) == ["web:1.0"]
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


def _warm_process(cluster: Machine, *args: str, importtime: bool = False,
                  bare: Path | None = None) -> subprocess.CompletedProcess:
    """``tufoci verify ARGS`` as a process; with ``bare`` (``bare_tree``), ``python -S`` on that tree alone."""
    env = {**os.environ, "TUFOCI_HOME": str(cluster.home), "TUFOCI_NO_AGENT": "1"}
    python = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    if bare:  # as the console script runs it (-m would add runpy's imports, contextlib among them)
        env["PYTHONPATH"] = str(bare)
        python += ["-S", "-c", "import sys; from tufoci.entry import main; sys.exit(main())"]
    else:
        python += ["-m", "tufoci.entry"]
    # the working directory comes first on sys.path: the tree's, not the checkout's
    return subprocess.run([*python, "verify", *args], capture_output=True, text=True, env=env, timeout=60, cwd=bare)


@pytest.fixture(scope="module")
def bare_tree(tmp_path_factory) -> Path:
    """tufoci laid out as pip installs it (tufoci/*, tufoci/client, tufoci/repo_tool; symlinks, as
    scripts/typecheck builds it), for ``python -S``: without site, the editable install's finder (which
    imports pathlib, urllib.parse, ipaddress and re at start-up) cannot hide what the warm path imports.
    The warm path needs nothing else; a fall-through to the full CLI would fail there for want of click."""
    root, tree = Path(__file__).resolve().parent.parent, tmp_path_factory.mktemp("bare")
    (tree / "tufoci").mkdir()
    for entry in (root / "tufoci").iterdir():
        if entry.name != "__pycache__":
            (tree / "tufoci" / entry.name).symlink_to(entry)
    for package in ("client", "repo_tool"):
        (tree / "tufoci" / package).symlink_to(root / package)
    return tree


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_the_warm_path_imports_no_tuf_no_crypto_no_urllib3(warm, bare_tree):
    scope, cluster, _ = warm
    done = _warm_process(cluster, f"{scope}/web:1.0", importtime=True, bare=bare_tree)
    assert done.returncode == 0, done.stderr
    modules = _imported(done.stderr)
    assert "tufoci.client.fast_verify" in modules and "site" not in modules
    packages = {name.split(".")[0] for name in modules}
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))
    assert not modules & set(SLOW), sorted(modules & set(SLOW))
    assert done.stdout == full(cluster, f"{scope}/web:1.0")[1]


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """The (host, port) of each plain-HTTP connection the bare transport opens from now on."""
    from tufoci.store import manifest_batch

    opened: list[tuple] = []
    connect = manifest_batch._connect

    def counted(*args, **kwargs):
        opened.append(args[:2])
        return connect(*args, **kwargs)

    monkeypatch.setattr(manifest_batch, "_connect", counted)
    return opened


def test_a_single_warm_verify_asks_the_timestamp_and_the_tag_on_one_connection(warm, connections):
    """Pipelined in one write (manifest_batch.fetch_in_order): one round trip, not two one after the other."""
    scope, cluster, _ = warm
    answer = fast_verify([f"{scope}/web:1.0"], str(cluster.home))
    assert answer is not None and answer[0] == 0
    assert len(connections) == 1, connections


def test_the_plain_http_warm_path_loads_no_tls_no_idna_and_no_registries_conf_parser(warm, tmp_path, monkeypatch,
                                                                                      bare_tree):
    """ssl (~5 ms) is imported only where a TLS context is built, tomllib (~11 ms) only for a registries.conf
    with content (not for the all-comments file distributions install), and an ASCII registry host is
    resolved without the idna codec (unicodedata, stringprep: ~2 ms)."""
    scope, cluster, _ = warm
    conf = tmp_path / "registries.conf"
    conf.write_text("# containers-registries.conf(5)\n#\n# unqualified-search-registries = []\n")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    done = _warm_process(cluster, f"{scope}/web:1.0", importtime=True, bare=bare_tree)
    assert done.returncode == 0, done.stderr
    imported = _imported(done.stderr)
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


def test_a_large_batch_is_spread_over_three_connections_and_still_all_or_nothing(warm, registry, bare_tree,
                                                                                connections):
    """From 80 references on, three connections on three threads (``_fetch``, on ``_thread``: not even then
    ``threading``); every answer still counts: a tag moved in the last chunk sends the whole call to the full
    path."""
    from tufoci.store.registry import RegistryClient

    scope, cluster, maintainer = warm
    images = RegistryClient(registry.host).repository("acme/web")
    signed = images.get_manifest("1.0")
    tags = [f"b{i:03d}" for i in range(85)]
    for tag in tags:
        images.put_manifest(tag, signed.data, signed.content_type)
    refs = [f"{scope}/web:{tag}" for tag in tags]
    maintainer.ok("target", "add", "--publish", *refs)
    assert full(cluster, *refs)[0] == 0  # the full path resolves them, and records them
    opened = len(connections)
    answer = fast_verify(refs, str(cluster.home))
    assert len(connections) - opened == 3
    assert answer is not None and answer == full(cluster, *refs)
    done = _warm_process(cluster, *refs, importtime=True, bare=bare_tree)
    assert (done.returncode, done.stdout) == answer[:2]
    assert not _imported(done.stderr) & set(SLOW), sorted(_imported(done.stderr) & set(SLOW))

    other = images.get_manifest("1.1")
    images.put_manifest(tags[-1], other.data, other.content_type)
    assert fast_verify(refs, str(cluster.home)) is None
    assert full(cluster, *refs)[0] == 11
