"""The state layer (tufoci/state/): the only SQL of state.db, its schema versions, and what callers rely on.

A state.db written before the schema carried a version (the layout tufoci created with ``CREATE TABLE
IF NOT EXISTS`` at every open) must open and keep working; writes keep their transaction semantics; and
the verify path reads the pins without importing sqlite-utils.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root

from tufoci.client.trust_pins import add_pin, pin_for_scope, remove_pin
from tufoci.errors import StateError
from tufoci.keys import held_key, list_keys, resolve_key
from tufoci.repo_tool.inspect import audit_log
from tufoci.repo_tool.staging import TargetAdd, clear_staged, record_changes, staged_changes
from tufoci.state import SCHEMA_VERSION, Mark, Pin, State, read_pins_readonly

ROOT = Path(__file__).resolve().parent.parent

# The schema as tufoci wrote it before state.db had a version (verbatim): existing files look like this.
UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, keyid TEXT NOT NULL, keytype TEXT NOT NULL, scheme TEXT NOT NULL,
    uri TEXT, public_key TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scopes (
    scope TEXT PRIMARY KEY, metadata_repo TEXT NOT NULL, root_file TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS staged (
    scope TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL,
    length INTEGER, digest TEXT, custom TEXT, staged_at TEXT NOT NULL, staged_by TEXT NOT NULL,
    PRIMARY KEY (scope, role, name));
CREATE TABLE IF NOT EXISTS pins (
    scope TEXT PRIMARY KEY, metadata TEXT NOT NULL, root_sha256 TEXT NOT NULL, root_file TEXT NOT NULL,
    added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    scope TEXT NOT NULL, role TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT, recorded_at TEXT NOT NULL,
    PRIMARY KEY (scope, role));
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, set_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, scope TEXT,
    action TEXT NOT NULL, role TEXT, version INTEGER, details TEXT);
"""
SCOPE = "localhost:5000/acme"
T0 = "2026-01-01T00:00:00Z"


def _home(tmp_path: Path, name: str = "home") -> str:
    path = tmp_path / name
    path.mkdir(mode=0o700)
    return str(path)


def _unversioned_state_db(home: str) -> dict:
    """A state.db as the unversioned schema's code left it, with a row in every table; what was written."""
    public = CryptoSigner.generate_ed25519().public_key
    conn = sqlite3.connect(os.path.join(home, "state.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(UNVERSIONED_SCHEMA)
    conn.execute("INSERT INTO keys VALUES (?,?,?,?,?,?,?)", ("alice", public.keyid, public.keytype, public.scheme,
                                                              None, json.dumps(public.to_dict()), T0))
    conn.execute("INSERT INTO pins VALUES (?,?,?,?,?)", (SCOPE, SCOPE + "/tuf", "ab" * 32, "/roots/r.json", T0))
    conn.execute("INSERT INTO staged VALUES (?,?,?,?,?,?,?,?,?)",
                 (SCOPE, "targets", "web:1.0", "add", 512, "sha256:" + "cd" * 32, '{"mediaType": "x"}', T0, "me"))
    conn.execute("INSERT INTO marks VALUES (?,?,?,?,?)", (SCOPE, "timestamp", 7, "ef" * 32, T0))
    conn.execute("INSERT INTO settings VALUES (?,?,?)", ("actor", "alice@acme", T0))
    conn.execute("INSERT INTO audit (at, actor, scope, action, role, version, details) VALUES (?,?,?,?,?,?,?)",
                 (T0, "me", SCOPE, "init", "root", 1, '{"root_sha256": "ab"}'))
    conn.close()
    return {"keyid": public.keyid}


def _columns(path: str) -> dict[str, list[tuple]]:
    """Per table: (name, type, not null, primary key position) of each column."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: [(r[1], r[2], r[3], r[5]) for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        conn.close()


def _user_version(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_an_unversioned_state_db_opens_and_keeps_working(tmp_path: Path) -> None:
    home = _home(tmp_path)
    written = _unversioned_state_db(home)
    state = State.open(home)
    assert _user_version(os.path.join(home, "state.db")) == SCHEMA_VERSION
    # everything the old code wrote reads back through the callers
    assert [k.name for k in list_keys(state)] == ["alice"] and resolve_key(state, "alice").keyid == written["keyid"]
    assert held_key(state, written["keyid"]) is None  # no private URI
    assert state.pins() == [Pin(SCOPE, SCOPE + "/tuf", "ab" * 32, "/roots/r.json")]
    assert staged_changes(state, SCOPE) == [
        TargetAdd(SCOPE, "targets", "web:1.0", 512, "sha256:" + "cd" * 32, {"mediaType": "x"})]
    assert state.marks(SCOPE) == {"timestamp": Mark(7, "ef" * 32)}
    assert state.setting("actor") == "alice@acme"
    assert [(r["id"], r["action"], r["details"]) for r in audit_log(state, SCOPE)] == [(1, "init", {"rootSha256": "ab"})]
    # and it takes new writes
    record_changes(state, [TargetAdd(SCOPE, "targets", "api:2.0", 1, "sha256:" + "00" * 32, None)])
    remove_pin(state, SCOPE)
    assert [r["id"] for r in audit_log(state)] == [1, 2, 3]
    assert [c.name for c in staged_changes(state, SCOPE)] == ["web:1.0", "api:2.0"]
    state.close()
    # the migrated file still has the old layout: an older tufoci opening it finds what it wrote
    old = os.path.join(_home(tmp_path, "old"), "state.db")
    conn = sqlite3.connect(old)
    conn.executescript(UNVERSIONED_SCHEMA)
    conn.close()
    assert _columns(os.path.join(home, "state.db")) == _columns(old)


def test_a_new_state_db_has_the_unversioned_layout(tmp_path: Path) -> None:
    """Tables created through sqlite-utils have the columns, types, NOT NULLs and keys the old DDL gave."""
    new = _home(tmp_path, "new")
    State.open(new).close()
    old = os.path.join(_home(tmp_path, "old"), "state.db")
    conn = sqlite3.connect(old)
    conn.executescript(UNVERSIONED_SCHEMA)
    conn.close()
    assert _columns(os.path.join(new, "state.db")) == _columns(old)
    assert _user_version(os.path.join(new, "state.db")) == SCHEMA_VERSION


def test_a_newer_schema_is_one_state_error(tmp_path: Path) -> None:
    home = _home(tmp_path)
    State.open(home).close()
    conn = sqlite3.connect(os.path.join(home, "state.db"))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this tufoci knows"):
        State.open(home)


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    """Staged rows and their audit records go in together or not at all (publish and staging rely on it)."""
    state = State.open(_home(tmp_path))
    change = TargetAdd(SCOPE, "targets", "web:1.0", 1, "sha256:" + "11" * 32, None)
    with pytest.raises(RuntimeError), state.transaction():
        record_changes(state, [change])  # its own transaction joins the outer one
        raise RuntimeError("interrupted")
    assert staged_changes(state, SCOPE) == [] and state.audit_log() == []
    record_changes(state, [change])
    assert staged_changes(state, SCOPE) == [change]


def test_staging_order_replacement_and_clearing(tmp_path: Path) -> None:
    state = State.open(_home(tmp_path))
    a = TargetAdd(SCOPE, "targets", "a:1", 1, "sha256:" + "aa" * 32, {"mediaType": "m"})
    b = TargetAdd(SCOPE, "targets", "b:1", 2, "sha256:" + "bb" * 32, None)
    a_again = TargetAdd(SCOPE, "targets", "a:1", 3, "sha256:" + "cc" * 32, None)
    record_changes(state, [a, b])
    record_changes(state, [a_again])  # replaces a and goes last
    assert staged_changes(state, SCOPE) == [b, a_again]
    with state.transaction():
        clear_staged(state, SCOPE, [a, b])  # a publish that applied the first a: the re-staged one stays
    assert staged_changes(state, SCOPE) == [a_again]
    assert state.unstage_role(SCOPE, "targets") == 1 and staged_changes(state, SCOPE) == []


def test_marks_are_never_lowered(tmp_path: Path) -> None:
    state = State.open(_home(tmp_path))
    state.raise_marks(SCOPE, {"timestamp": Mark(5, "a"), "snapshot": Mark(3, None)})
    state.raise_marks(SCOPE, {"timestamp": Mark(4, "b"), "snapshot": Mark(3, "c"), "targets": Mark(1, None)})
    assert state.marks(SCOPE) == {"timestamp": Mark(5, "a"), "snapshot": Mark(3, "c"), "targets": Mark(1, None)}
    assert state.marks("other/scope") == {}


def test_pins_read_only_and_through_state(tmp_path: Path) -> None:
    home = _home(tmp_path)
    state = State.open(home)
    pin = add_pin(state, SCOPE, root_data=Metadata(Root()).to_bytes())
    assert pin_for_scope(state, SCOPE) == pin
    assert read_pins_readonly(os.path.join(home, "state.db")) == state.pins() == [pin]
    with pytest.raises(StateError):
        read_pins_readonly(os.path.join(home, "missing.db"))
    assert not os.path.exists(os.path.join(home, "missing.db"))


@pytest.mark.parametrize("name", ["a b", "what?mode=rw", "hash#tag", "100%", "état", "~user-1.x_y"])
def test_pins_are_read_from_a_home_whose_path_a_uri_would_misread(tmp_path: Path, name: str) -> None:
    """read_pins_readonly opens ``file:PATH?mode=ro``: the path is percent-encoded as urllib.parse.quote
    would (without importing it, issue 19), so ``?``, ``#`` or ``%`` in it cannot change what is opened."""
    import urllib.parse

    from tufoci.state import _uri_path

    home = str(tmp_path / name / ".tufoci")
    os.makedirs(home, mode=0o700)
    state = State.open(home)
    pin = add_pin(state, SCOPE, root_data=Metadata(Root()).to_bytes())
    path = os.path.join(home, "state.db")
    assert _uri_path(path) == urllib.parse.quote(path)
    assert read_pins_readonly(path) == [pin]


def test_a_home_beginning_with_two_slashes_is_never_read_as_a_uri_authority(tmp_path: Path) -> None:
    """``//localhost/x`` is the file ``/localhost/x`` to the full path (POSIX: two leading slashes are one), but
    in ``file://localhost/x?mode=ro`` SQLite reads ``localhost`` as the URI's authority and opens ``/x``: a
    ``$TUFOCI_HOME`` of that shape had the warm verify take its pins from another directory's state.db (one
    another local user may have written). Review of session 6 (§11.4): the URI's authority is always empty."""
    home = _home(tmp_path)
    add_pin(State.open(home), SCOPE, root_data=Metadata(Root()).to_bytes())
    misread = "//localhost" + os.path.join(home, "state.db")
    assert not os.path.exists(misread)  # what the full path opens: nothing there
    with pytest.raises(StateError):
        read_pins_readonly(misread)
    assert read_pins_readonly("/" + os.path.join(home, "state.db")) == State.open(home).pins()


def test_the_verify_path_reads_state_without_sqlite_utils(tmp_path: Path) -> None:
    """Opening an existing state.db and reading its pins (what every full verify does) imports no sqlite-utils
    (≈ 25 ms); only creating or migrating a state.db does."""
    home = _home(tmp_path)
    State.open(home).close()
    code = ("import sys; from tufoci.state import State; s = State.open(sys.argv[1]); s.pins(); "
            "print('sqlite_utils' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, home], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_fast_path_modules_do_not_load_the_database_module() -> None:
    """The warm verify imports tufoci.state for ``Pin`` and ``read_pins_readonly`` only: ``State`` and its
    records (tufoci/state/database.py, ≈ 1 ms to define) stay unloaded, as do sqlite-utils."""
    code = ("import sys, tufoci.client.fast_verify, tufoci.client.trust_pins, tufoci.client.verified_record; "
            "from tufoci.state import Pin, read_pins_readonly; "
            "print(sorted({'tufoci.state.database', 'sqlite_utils'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_no_sql_outside_the_state_module() -> None:
    """issue 12 §5: SQL of state.db lives in the state layer (tufoci/state/) alone."""
    pattern = re.compile(r"sqlite3|sqlite_utils|\.execute(many)?\(|\b(SELECT|INSERT|DELETE FROM|CREATE TABLE|PRAGMA)\b")
    found = []
    for package in ("tufoci", "repo_tool", "client"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.parent == ROOT / "tufoci" / "state":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("statement,command", [
    ("INSERT INTO pins VALUES ('127.0.0.1:5999/acme', 'x/tuf', 'abc', X'00ff', 'x')",
     ("verify", "127.0.0.1:5999/acme/web:1.0")),
    ("INSERT INTO keys VALUES ('k', 'id', 'ed25519', 'ed25519', NULL, 'not json', 'x')", ("key", "list")),
    ("INSERT INTO audit VALUES (NULL, 'x', 'a', 's', 'act', NULL, NULL, '[1')", ("log",)),
])
def test_a_damaged_row_is_one_line_naming_state_db(tmp_path: Path, statement: str, command: tuple) -> None:
    """SQLite stores whatever it is given (a hand edit, another program, a damaged copy): a row tufoci cannot
    read is one line naming state.db and the row (exit 1), not an internal error."""
    home = _home(tmp_path)
    State.open(home).close()
    conn = sqlite3.connect(os.path.join(home, "state.db"))
    conn.execute(statement)
    conn.commit()
    conn.close()
    result = subprocess.run([str(Path(sys.executable).with_name("tufoci")), *command], capture_output=True,
                            text=True, env={**os.environ, "TUFOCI_HOME": home, "TUFOCI_NO_AGENT": "1"}, timeout=60)
    assert result.returncode == 1 and result.stdout == "", (result.returncode, result.stdout, result.stderr)
    assert len(result.stderr.splitlines()) == 1 and "internal error" not in result.stderr, result.stderr
    assert f"local state {os.path.join(home, 'state.db')} is damaged" in result.stderr, result.stderr


def test_a_damaged_staged_row_is_a_state_error(tmp_path: Path) -> None:
    state = State.open(_home(tmp_path))
    state._conn.execute(f"INSERT INTO staged VALUES ('{SCOPE}', 'targets', 'web:1.0', 'add', 1, 'd', '{{bad', 'x', 'y')")
    with pytest.raises(StateError, match="staged row 'web:1.0' is not valid JSON"):
        state.staged(SCOPE)
