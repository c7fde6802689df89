"""Local state in ``$TUFOCI_HOME`` (default ``~/.tufoci``): the state layer, the only code that speaks SQL.

``state.db`` (SQLite through sqlite-utils) holds the key catalogue (URIs and
public keys, never secrets), the scopes this machine maintains, staged changes,
trust pins, the timestamp service's high-water marks and an append-only audit log. Every write is one SQLite transaction,
so an interrupted command leaves the previous state. Files beside it (keys,
root files, the client cache) are written atomically.

Everything that reads or writes ``state.db`` is a named method of ``State``
(tufoci/state/database.py: schema, migrations, inserts, upserts, queries, on
sqlite-utils); callers never see SQL or a connection. This file is what the
verify path needs, on the standard library alone: the paths, ``Pin`` and
``read_pins_readonly`` (the fast path's one query). ``State`` and its records are
loaded on first use (PEP 562 ``__getattr__``), so a warm verify pays neither for
sqlite-utils (≈ 25 ms) nor for defining the maintainer's records (≈ 0.7 ms). A
module the fast path imports names ``State`` under ``TYPE_CHECKING`` only
(tests/test_state.py checks it).
"""

from __future__ import annotations

import os

try:
    # the C module sqlite3 wraps (same classes, same connect): ``import sqlite3`` would also load its DB-API
    # adapters and their datetime, ~1.5 ms of a warm verify that reads text columns only (docs/performance.md)
    import _sqlite3 as sqlite3
except ImportError:  # pragma: no cover  (an interpreter whose sqlite3 is built otherwise)
    import sqlite3  # type: ignore[no-redef]

from tufoci.errors import StateError
from tufoci.frozen import Frozen
from tufoci.ownership import home_problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import datetime
    from typing import Any

    from tufoci.state.database import (
        SCHEMA_VERSION,
        AuditEntry,
        AuditRecord,
        Mark,
        StagedRow,
        State,
        StoredKey,
    )

__all__ = [
    "SCHEMA_VERSION", "AuditEntry", "AuditRecord", "DatabaseError", "Mark", "Pin", "StagedRow", "State",
    "StoredKey", "actor", "home_dir", "now_iso", "now_utc", "pin_from_row", "read_pins_readonly", "require_own_home",
]
_DATABASE_NAMES = frozenset({"SCHEMA_VERSION", "AuditEntry", "AuditRecord", "Mark", "StagedRow", "State", "StoredKey"})


def __getattr__(name: str) -> Any:
    """``from tufoci.state import State`` (and the records) loads tufoci.state.database on first use."""
    if name not in _DATABASE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tufoci.state import database

    return getattr(database, name)


# What a damaged or locked state.db raises from any State call: the CLI turns it into one line.
DatabaseError = sqlite3.DatabaseError

# The trust pins as the verify path reads them (here and in State.pins), without sqlite-utils.
PINS_QUERY = "SELECT scope, metadata, root_sha256, root_file FROM pins"


def home_dir(path: str | None = None) -> str:
    """``path``, else ``$TUFOCI_HOME`` or ``~/.tufoci``; created with mode 0700."""
    path = path or os.environ.get("TUFOCI_HOME") or os.path.join(os.path.expanduser("~"), ".tufoci")
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
    import datetime  # here: the verify fast path imports this module and never needs the clock

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


class Pin(Frozen):
    """A trust pin: a scope, where its metadata lives, and the root it starts from. ``Frozen``
    (tufoci/frozen.py), not a dataclass: the warm verify builds it."""

    __slots__ = ("scope", "metadata", "root_sha256", "root_file")
    scope: str
    metadata: str
    root_sha256: str
    root_file: str

    def __init__(self, scope: str, metadata: str, root_sha256: str, root_file: str) -> None:
        self._init(scope, metadata, root_sha256, root_file)


def pin_from_row(row: tuple, path: str) -> Pin:
    """A trust pin as ``PINS_QUERY`` reads it from the state.db at ``path``.

    Raises:
        StateError: a column is not text (a damaged or hand-edited state.db): SQLite stores what it is given.
    """
    if not all(isinstance(value, str) and "\0" not in value for value in row):
        raise StateError(f"local state {path} is damaged: the trust pin {row[0]!r} is not text; remove it with "
                         "'tufoci trust remove' and add it again")
    return Pin(*row)


def read_pins_readonly(path: str) -> list[Pin]:
    """The trust pins in the state.db at ``path``, as ``State.pins`` reads them, on the standard library alone
    and read-only: nothing is created or migrated (the verify fast path).

    Raises:
        StateError: no database there, or SQLite cannot read it.
    """
    try:
        # "file://" and an empty authority before an absolute path: after a bare "file:", a path beginning
        # "//localhost/" would be read as the URI's authority and another file opened (docs/security.md §11.4)
        authority = "//" if path.startswith("/") else ""
        connection = sqlite3.connect(f"file:{authority}{_uri_path(path)}?mode=ro", uri=True, timeout=5)
        try:
            return [pin_from_row(row, path) for row in connection.execute(PINS_QUERY)]
        finally:
            connection.close()
    except sqlite3.Error as e:
        raise StateError(f"cannot read trust pins from {path}: {e}") from e


_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")


def _uri_path(path: str) -> str:
    """``path`` percent-encoded for a ``file:`` URI as ``urllib.parse.quote`` would (without importing it:
    the warm verify does not otherwise need urllib.parse): ``?``, ``#``, ``%`` and the rest cannot end it."""
    return "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in os.fsencode(path))
