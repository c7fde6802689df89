"""Local state in ``$TUFOCI_HOME`` (default ``~/.tufoci``).

``state.db`` (SQLite through sqlite-utils) holds the key catalogue (URIs and
public keys, never secrets), the scopes this machine maintains, staged changes,
trust pins, the timestamp service's high-water marks and an append-only audit log. Every write is one SQLite transaction,
so an interrupted command leaves the previous state. Files beside it (keys,
root files, the client cache) are written atomically.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager

from tufoci.errors import StateError
from tufoci.frozen import Frozen
from tufoci.ownership import home_problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads: the warm verify reads pins without typing/datetime
if TYPE_CHECKING:
    import datetime
    from collections.abc import Iterator
    from typing import Any

_SCHEMA = """
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


def home_dir() -> str:
    """``$TUFOCI_HOME`` or ``~/.tufoci``, created with mode 0700."""
    path = os.environ.get("TUFOCI_HOME") or os.path.join(os.path.expanduser("~"), ".tufoci")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StateError(f"cannot create TUFOCI_HOME {path}: {e.strerror}") from e
    return path


def require_own_home(home: str) -> None:
    """Refuse a home, state.db, keys, cache or roots that another user owns or can write (tufoci.ownership).

    Raises:
        StateError: naming the first such path and what to do.
    """
    problem = home_problem(home)
    if problem:
        raise StateError(problem)


def now_utc() -> datetime.datetime:
    import datetime

    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def now_iso() -> str:
    return now_utc().strftime("%Y-%m-%dT%H:%M:%SZ")


def actor() -> str:
    """Who is acting, for the audit log: ``$TUFOCI_ACTOR`` or user@host."""
    explicit = os.environ.get("TUFOCI_ACTOR")
    if explicit:
        return explicit
    import getpass  # here, not at the top: the verify fast path reads pins and never acts
    import socket

    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


PINS_QUERY = "SELECT scope, metadata, root_sha256, root_file FROM pins"  # also the verify fast path's


class Pin(Frozen):
    __slots__ = ("scope", "metadata", "root_sha256", "root_file")
    scope: str
    metadata: str
    root_sha256: str
    root_file: str

    def __init__(self, scope: str, metadata: str, root_sha256: str, root_file: str) -> None:
        self._init(scope, metadata, root_sha256, root_file)


def read_pins(home: str) -> list[Pin] | None:
    """The trust pins in ``home``'s state.db, read as ``State.pins`` reads them, without creating or changing
    anything (read-only: no schema, no WAL switch), or None when there is no state.db or it cannot be read.
    For the warm verify (client/fast_verify.py), which checks the home's ownership itself."""
    path = os.path.join(home, "state.db")
    if not os.path.exists(path):
        return None
    try:
        import urllib.parse

        connection = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=5)
        try:
            return [Pin(*row) for row in connection.execute(PINS_QUERY)]
        finally:
            connection.close()
    except sqlite3.Error:
        return None


class State:
    """The state database. Open it with ``State.open()``; use ``transaction()`` for writes."""

    def __init__(self, home: str, connection: sqlite3.Connection):
        self.home = home
        self._conn = connection

    @classmethod
    def open(cls, home: str | None = None) -> State:
        home = home or home_dir()
        require_own_home(home)
        path = os.path.join(home, "state.db")
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StateError(f"cannot open local state {path}: {e}") from e
        return cls(home, conn)

    @property
    def db(self) -> Any:
        """The same database as a ``sqlite_utils.Database`` (imported lazily)."""
        import sqlite_utils

        return sqlite_utils.Database(self._conn)

    def path(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return list(self._conn.execute(sql, params))

    # -- audit -----------------------------------------------------------------
    def audit(
        self,
        conn: sqlite3.Connection,
        action: str,
        *,
        scope: str | None = None,
        role: str | None = None,
        version: int | None = None,
        **details: Any,
    ) -> None:
        """Append one audit record inside the caller's transaction."""
        self.audit_many(conn, [(action, scope, role, version, details)])

    def audit_many(
        self, conn: sqlite3.Connection, records: list[tuple[str, str | None, str | None, int | None, dict]]
    ) -> None:
        """Append ``(action, scope, role, version, details)`` records at once (a batch of 100,000 staged tags)."""
        at, who = now_iso(), actor()
        conn.executemany(
            "INSERT INTO audit (at, actor, scope, action, role, version, details) VALUES (?,?,?,?,?,?,?)",
            [(at, who, scope, action, role, version, json.dumps(details, sort_keys=True))
             for action, scope, role, version, details in records],
        )

    # -- settings (tufoci config) ---------------------------------------------
    def setting(self, name: str) -> str | None:
        """A value set once per machine with ``tufoci config set`` (e.g. ``actor``), or None."""
        rows = self.query("SELECT value FROM settings WHERE name = ?", (name,))
        return rows[0]["value"] if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO settings (name, value, set_at) VALUES (?,?,?)",
                         (name, value, now_iso()))

    # -- trust pins ------------------------------------------------------------
    def pins(self) -> list[Pin]:
        return [Pin(*r) for r in self.query(PINS_QUERY)]

    def close(self) -> None:
        self._conn.close()
