"""Local state that another user controls is refused, as ssh refuses such files (standard library only).

Whoever can write ``$TUFOCI_HOME`` decides what ``verify`` prints: they can put
their own trust pins in ``state.db``, their own metadata in ``cache/``, their
own keys in ``keys/``, or their own "agent" on ``agent.sock``. So every piece
of local state must belong to the user running tufoci (the effective uid) and
be writable by nobody else. The verify fast path imports this module, so it is
one ``os.stat`` per path and nothing more.
"""

from __future__ import annotations

import os
import stat

# the pieces of $TUFOCI_HOME checked when local state is opened (the home itself first); SQLite replays
# state.db's write-ahead log (indexed by its -shm file) on open, so whoever writes those writes state.db
STATE_ENTRIES = (("state.db", "local state"), ("state.db-wal", "local state log"), ("state.db-shm", "local state log"),
                 ("keys", "key directory"), ("cache", "metadata cache"), ("roots", "pinned roots directory"))


def ownership_problem(path: str, st: os.stat_result, what: str) -> str | None:
    """Why ``path`` (whose stat is ``st``) must not be trusted, in one line; None when it may be."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return (f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid {uid}): refusing to use it "
                f"(another user could decide what tufoci trusts)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): refusing "
                f"to use it; run 'chmod go-w {path}'")
    return None


def path_problem(path: str, what: str) -> str | None:
    """``ownership_problem`` of ``path`` (symbolic links followed); None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot check {what} {path}: {e.strerror}"
    return ownership_problem(path, st, what)


def home_problem(home: str) -> str | None:
    """The first problem of ``home`` and the state in it (``STATE_ENTRIES``), or None."""
    for path, what in ((home, "TUFOCI_HOME"), *((os.path.join(home, name), what) for name, what in STATE_ENTRIES)):
        problem = path_problem(path, what)
        if problem:
            return problem
    return _linked_database_problem(os.path.join(home, "state.db"))


def _linked_database_problem(database: str) -> str | None:
    """A ``state.db`` that is a symbolic link: SQLite resolves the link and keeps (and replays) the write-ahead
    log beside the file it points to, not beside the link. Whoever can write that directory can put a log of
    their own there (a trust pin of their own), or swap the file; so it is checked as the home is, and so is
    any log already there. One ``lstat`` when state.db is a plain file."""
    if not os.path.islink(database):
        return None
    real = os.path.realpath(database)
    for path, what in ((os.path.dirname(real), "local state directory"), (real + "-wal", "local state log"),
                       (real + "-shm", "local state log")):
        problem = path_problem(path, what)
        if problem:
            return problem
    return None
