"""``state.db`` through sqlite-utils: its schema and migrations, and ``State``, whose named methods are every
read and write of it (tufoci.state explains the layer).

Plain sqlite3 statements remain where sqlite-utils was measured to cost: the trust
pins (``State.pins``, on the full verify path) and the schema version check of
``State.open`` use the standard library, and the batch statements
(``_insert_batch``, ``_delete_each``) run as ``executemany``. sqlite-utils itself
is imported on the first other call.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from tufoci.errors import StateError
from tufoci.state import PINS_QUERY, Pin, actor, home_dir, now_iso, pin_from_row, require_own_home

if TYPE_CHECKING:
    from sqlite_utils import Database

# -- schema ----------------------------------------------------------------------------
# table -> (columns, primary key, NOT NULL columns). Version 1 is the schema tufoci created before
# state.db carried a version (``CREATE TABLE IF NOT EXISTS`` at every open), so such a file needs no change.
_TABLES: dict[str, tuple[dict[str, type], str | tuple[str, ...], tuple[str, ...]]] = {
    "keys": ({"name": str, "keyid": str, "keytype": str, "scheme": str, "uri": str, "public_key": str,
              "created_at": str}, "name", ("keyid", "keytype", "scheme", "public_key", "created_at")),
    "scopes": ({"scope": str, "metadata_repo": str, "root_file": str, "created_at": str}, "scope",
               ("metadata_repo", "root_file", "created_at")),
    "staged": ({"scope": str, "role": str, "name": str, "action": str, "length": int, "digest": str,
                "custom": str, "staged_at": str, "staged_by": str}, ("scope", "role", "name"),
               ("scope", "role", "name", "action", "staged_at", "staged_by")),
    "pins": ({"scope": str, "metadata": str, "root_sha256": str, "root_file": str, "added_at": str}, "scope",
             ("metadata", "root_sha256", "root_file", "added_at")),
    "marks": ({"scope": str, "role": str, "version": int, "sha256": str, "recorded_at": str}, ("scope", "role"),
              ("scope", "role", "version", "recorded_at")),
    "settings": ({"name": str, "value": str, "set_at": str}, "name", ("value", "set_at")),
    # ids only grow: nothing ever deletes an audit record (the pre-version schema said AUTOINCREMENT)
    "audit": ({"id": int, "at": str, "actor": str, "scope": str, "action": str, "role": str, "version": int,
               "details": str}, "id", ("at", "actor", "action")),
}


def _create_tables(db: Database) -> None:
    for name, (columns, pk, not_null) in _TABLES.items():
        db.table(name).create(columns, pk=pk, not_null=not_null, if_not_exists=True)


# migrations[i] brings a state.db from version i to i + 1 (``PRAGMA user_version``; 0 = new or unversioned)
_MIGRATIONS = (_create_tables,)
SCHEMA_VERSION = len(_MIGRATIONS)


# -- records ---------------------------------------------------------------------------
class StoredKey(NamedTuple):
    """A key catalogue entry as stored: ``public_key`` is securesystemslib's dict (tufoci.keys makes the key)."""

    name: str
    keyid: str
    keytype: str
    scheme: str
    uri: str | None
    public_key: dict


class StagedRow(NamedTuple):
    """One staged target change as stored (tufoci.repo_tool.staging gives it meaning)."""

    scope: str
    role: str
    name: str
    action: str
    length: int | None = None
    digest: str | None = None
    custom: dict | None = None


class Mark(NamedTuple):
    """One role's highest version seen or signed, and the sha256 of those bytes when known."""

    version: int
    sha256: str | None


class AuditEntry(NamedTuple):
    """One record to append to the audit log; who and when are added as it is written."""

    action: str
    scope: str | None = None
    role: str | None = None
    version: int | None = None
    details: dict | None = None


class AuditRecord(NamedTuple):
    """One record of the audit log as written."""

    id: int
    at: str
    actor: str
    scope: str | None
    action: str
    role: str | None
    version: int | None
    details: dict


class State:
    """The state database. Open it with ``State.open()``; group writes with ``transaction()``.

    A write method called outside ``transaction()`` is a transaction of its own.
    """

    def __init__(self, home: str, connection: sqlite3.Connection):
        self.home = home
        self._conn = connection
        self._database: Database | None = None

    @classmethod
    def open(cls, home: str | None = None) -> State:
        """Open (creating or migrating) ``home``'s state.db.

        Raises:
            StateError: the home is not this user's, or SQLite cannot open the file or bring it to this
                version's schema (a state.db written by a newer tufoci included).
        """
        home = home or home_dir()
        require_own_home(home)
        path = os.path.join(home, "state.db")
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            state = cls(home, conn)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                if state._schema_version() != SCHEMA_VERSION:
                    state._migrate()
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as e:
            raise StateError(f"cannot open local state {path}: {e}") from e
        return state

    def _schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction():  # BEGIN IMMEDIATE: two first commands at once migrate one after the other
            version = self._schema_version()
            if version > SCHEMA_VERSION:
                raise StateError(f"local state {self.path('state.db')} has schema version {version}, newer than "
                                 f"this tufoci knows ({SCHEMA_VERSION}): upgrade tufoci")
            for migrate in _MIGRATIONS[version:]:
                migrate(self._db)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def _db(self) -> Database:
        """The connection as a ``sqlite_utils.Database``, made (and sqlite-utils imported) on first use."""
        if self._database is None:
            from sqlite_utils import Database

            self._database = Database(self._conn, recursive_triggers=False, execute_plugins=False)
        return self._database

    def path(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the block; inside another, the block joins it.

        ``BEGIN IMMEDIATE`` takes the write lock at once, so two commands never interleave
        a read and a write of the same rows; an exception rolls everything back.
        """
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # The batch statements (100,000 staged tags, their audit records, a publish clearing them) run as
    # executemany: sqlite-utils converts every value on the way in (jsonify_if_needed), which made
    # staging 100,000 build records 45% slower (5.0 s against 3.5 s). Same connection, same transactions.
    def _insert_batch(self, table: str, rows: Iterable[tuple], *, replace: bool = False) -> None:
        """Insert rows holding every column of ``table`` in schema order."""
        columns = list(_TABLES[table][0])
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self.transaction():
            self._conn.executemany(
                f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)

    def _delete_each(self, table: str, where: str, args: Iterable[tuple]) -> None:
        """Delete the rows matching ``where`` with each of ``args``."""
        with self.transaction():
            self._conn.executemany(f"DELETE FROM {table} WHERE {where}", args)

    def _rows(self, table: str, where: str | None = None, args: Iterable[Any] = (), order_by: str | None = None,
              select: str = "*") -> list[dict[str, Any]]:
        return list(self._db.table(table).rows_where(where, list(args), order_by=order_by, select=select))

    def _json(self, text: Any, table: str, row: Any) -> Any:
        """A JSON column as stored.

        Raises:
            StateError: it is not JSON text (a damaged or hand-edited state.db), naming the table and the row.
        """
        try:
            return json.loads(text)
        except (ValueError, TypeError) as e:
            raise StateError(f"local state {self.path('state.db')} is damaged: {table} row {row!r} is not valid "
                             f"JSON ({e}); restore state.db from a backup or move it away") from e

    # -- audit -----------------------------------------------------------------
    def record_audit(
        self, action: str, *, scope: str | None = None, role: str | None = None, version: int | None = None,
        **details: Any,
    ) -> None:
        """Append one audit record (inside the caller's transaction, if any)."""
        self.record_audits([AuditEntry(action, scope, role, version, details)])

    def record_audits(self, entries: Iterable[AuditEntry]) -> None:
        """Append records at once (a batch of 100,000 staged tags), stamped with one time and actor."""
        at, who = now_iso(), actor()
        with self.transaction():
            self._insert_batch("audit", ((None, at, who, e.scope, e.action, e.role, e.version,
                                          json.dumps(e.details or {}, sort_keys=True)) for e in entries))

    def audit_log(self, scope: str | None = None, actions: Iterable[str] = ()) -> list[AuditRecord]:
        """The audit log in the order it was written, of one scope or of all (only ``actions``, if given)."""
        conditions, args = (["scope = ?"], [scope]) if scope else ([], [])
        if actions := list(actions):
            conditions.append(f"action IN ({', '.join('?' for _ in actions)})")
            args += actions
        rows = self._rows("audit", " AND ".join(conditions) or None, args, order_by="id")
        return [AuditRecord(**{**r, "details": self._json(r["details"] or "{}", "audit", r["id"])}) for r in rows]

    # -- settings (tufoci config) ----------------------------------------------
    def setting(self, name: str) -> str | None:
        """A value set once per machine with ``tufoci config set`` (e.g. ``actor``), or None."""
        rows = self._rows("settings", "name = ?", [name])
        return rows[0]["value"] if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self.transaction():
            self._db.table("settings").insert({"name": name, "value": value, "set_at": now_iso()}, replace=True)

    # -- trust pins ------------------------------------------------------------
    def pins(self) -> list[Pin]:
        """Every trust pin (standard library only: the full verify path reads this).

        Raises:
            StateError: a pin's row is damaged.
        """
        return [pin_from_row(row, self.path("state.db")) for row in self._conn.execute(PINS_QUERY)]

    def put_pin(self, pin: Pin) -> None:
        """Add the scope's pin, or replace it."""
        with self.transaction():
            self._db.table("pins").insert({"scope": pin.scope, "metadata": pin.metadata,
                                           "root_sha256": pin.root_sha256, "root_file": pin.root_file,
                                           "added_at": now_iso()}, replace=True)

    def remove_pin(self, scope: str) -> bool:
        """Drop the scope's pin; False when there was none."""
        return self._delete("pins", "scope = ?", [scope]) > 0

    def _delete(self, table: str, where: str, args: list[Any]) -> int:
        """Delete matching rows in one transaction; how many there were."""
        with self.transaction():
            count = self._db.table(table).count_where(where, args)
            self._db.table(table).delete_where(where, args)
        return count

    # -- key catalogue ---------------------------------------------------------
    def keys(self) -> list[StoredKey]:
        """The whole catalogue, by name."""
        return self._keys(order_by="name")

    def key_named(self, name: str) -> StoredKey | None:
        keys = self._keys("name = ?", [name])
        return keys[0] if keys else None

    def keys_matching(self, spec: str) -> list[StoredKey]:
        """Keys whose name, key id or URI is ``spec``."""
        return self._keys("name = ? OR keyid = ? OR uri = ?", [spec, spec, spec])

    def keys_by_keyid(self, keyid: str, *, prefix: bool = False) -> list[StoredKey]:
        """Keys with that key id, or (``prefix``) whose key id starts with those hex digits."""
        return self._keys("keyid LIKE ?", [keyid + "%"]) if prefix else self._keys("keyid = ?", [keyid])

    def _keys(self, where: str | None = None, args: list[Any] | None = None,
              order_by: str | None = None) -> list[StoredKey]:
        return [StoredKey(r["name"], r["keyid"], r["keytype"], r["scheme"], r["uri"],
                          self._json(r["public_key"], "keys", r["name"]))
                for r in self._rows("keys", where, args or [], order_by)]

    def add_key(self, key: StoredKey) -> None:
        """Add a catalogue entry.

        Raises:
            sqlite3.IntegrityError: the name is taken.
        """
        with self.transaction():
            self._db.table("keys").insert({"name": key.name, "keyid": key.keyid, "keytype": key.keytype,
                                           "scheme": key.scheme, "uri": key.uri,
                                           "public_key": json.dumps(key.public_key), "created_at": now_iso()})

    # -- staged changes --------------------------------------------------------
    def stage(self, rows: Iterable[StagedRow]) -> None:
        """Stage changes at once (a later change to the same name replaces an earlier one and goes last)."""
        when, who = now_iso(), actor()
        with self.transaction():
            self._insert_batch("staged", ((r.scope, r.role, r.name, r.action, r.length, r.digest,
                                           json.dumps(r.custom, sort_keys=True) if r.custom is not None else None,
                                           when, who) for r in rows), replace=True)

    def staged(self, scope: str) -> list[StagedRow]:
        """The scope's staged changes in staging order (delegations are searched in the order they were added)."""
        return [StagedRow(r["scope"], r["role"], r["name"], r["action"], r["length"], r["digest"],
                          self._json(r["custom"], "staged", r["name"]) if r["custom"] else None)
                for r in self._rows("staged", "scope = ?", [scope], order_by="rowid",
                                    select="scope, role, name, action, length, digest, custom")]

    def unstage(self, scope: str, rows: Iterable[StagedRow]) -> None:
        """Drop exactly these staged changes (what a publish applied): a change staged again since, to
        another digest or action, stays."""
        self._delete_each("staged", "scope = ? AND role = ? AND name = ? AND action = ? AND coalesce(digest, '') = ?",
                          ((scope, r.role, r.name, r.action, r.digest or "") for r in rows))

    def unstage_role(self, scope: str, role: str) -> int:
        """Drop every staged change to ``role``; how many there were."""
        return self._delete("staged", "scope = ? AND role = ?", [scope, role])

    # -- high-water marks (repo_tool.high_water) --------------------------------
    def marks(self, scope: str) -> dict[str, Mark]:
        return {r["role"]: Mark(r["version"], r["sha256"]) for r in self._rows("marks", "scope = ?", [scope])}

    def raise_marks(self, scope: str, marks: dict[str, Mark]) -> None:
        """Raise the scope's marks to ``marks``, never lowering one (an equal version takes the new hash)."""
        at = now_iso()
        with self.transaction():
            current = self.marks(scope)
            self._db.table("marks").upsert_all(
                ({"scope": scope, "role": role, "version": mark.version, "sha256": mark.sha256, "recorded_at": at}
                 for role, mark in marks.items() if role not in current or mark.version >= current[role].version),
                pk=("scope", "role"),
            )

    def close(self) -> None:
        self._conn.close()
