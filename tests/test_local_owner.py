"""Local state another user controls is refused (issue 11 item 4), as ssh refuses such files.

Whoever can write $TUFOCI_HOME, or answer on its agent.sock, decides what
`verify` prints. Every case runs the real `tufoci` executable (the verify fast
path included). Other users are real: the tests run as root (CI does) and
hand files, or a process, to uid 65534 (nobody).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tufoci.ownership import STATE_ENTRIES

TUFOCI = str(Path(sys.executable).with_name("tufoci"))
NOBODY = 65534
FAKE = "127.0.0.1:5000/acme/web@sha256:" + "e" * 64 + "\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files and processes to another uid")


@pytest.fixture
def own_home() -> Path:
    """A home as tufoci creates it (0700, ours), short enough for a Unix socket path."""
    path = Path(tempfile.mkdtemp(prefix="own", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def tufoci(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUFOCI_HOME": str(home)}
    env.pop("TUFOCI_NO_AGENT", None)
    return subprocess.run([TUFOCI, *args], env=env, capture_output=True, text=True, timeout=60)


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "" and FAKE not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("tufoci: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def fake_agent(path: Path, *, uid: int | None = None) -> subprocess.Popen:
    """Whatever listens on ``path`` and answers every `verify` with FAKE, exit 0 (the render reply format).

    The socket is bound as the caller (so it and its directory look right) and, with ``uid``, the
    process then becomes that user before it listens: only the peer's credentials tell."""
    reply = f"0 {len(FAKE)} 0\n{FAKE}".encode()
    script = (
        "import os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o600)\n"
        f"uid = {uid!r}\n"
        "if uid is not None: os.setgid(uid); os.setuid(uid)\n"
        "s.listen(8); print('ready', flush=True)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.recv(65536); c.sendall(sys.argv[2].encode('latin-1')); c.close()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(path), reply.decode("latin-1")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def test_a_fake_agent_of_this_user_is_what_the_fast_path_asks(own_home):
    """The baseline the other tests attack: an agent socket of our own, in a home of our own, is used."""
    agent = fake_agent(own_home / "agent.sock")
    try:
        result = tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0")
    finally:
        agent.kill()
        agent.wait()
    assert (result.returncode, result.stdout) == (0, FAKE)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o720])
def test_a_home_writable_by_others_is_refused(own_home, mode):
    agent = fake_agent(own_home / "agent.sock")
    try:
        own_home.chmod(mode)
        # the verify fast path (an agent socket is there) and every other command
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), "writable by group or others",
                       f"chmod go-w {own_home}")
        (own_home / "agent.sock").unlink()
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), f"TUFOCI_HOME {own_home}")
        assert_refused(tufoci(own_home, "trust", "list"), "writable by group or others")
    finally:
        agent.kill()
        agent.wait()


@pytest.mark.parametrize("name,what", STATE_ENTRIES)
def test_state_in_the_home_writable_by_others_is_refused(own_home, name, what):
    assert tufoci(own_home, "trust", "list").returncode == 0  # creates state.db
    entry = own_home / name
    if not entry.exists():
        entry.mkdir(mode=0o700)
    entry.chmod(0o777 if entry.is_dir() else 0o666)
    assert_refused(tufoci(own_home, "trust", "list"), f"{what} {entry} is writable by group or others")


def test_a_write_ahead_log_writable_by_others_is_refused(own_home):
    """SQLite replays state.db-wal (through the index in state.db-shm) when it opens state.db: whoever can
    write them writes state.db (a trust pin of their own), however state.db itself is protected. A command
    killed before it closed leaves them behind, with the mode state.db had then (before 'chmod go-w')."""
    assert tufoci(own_home, "trust", "list").returncode == 0
    for name in ("state.db-wal", "state.db-shm"):
        log = own_home / name
        log.write_bytes(b"")
        log.chmod(0o666)
        assert_refused(tufoci(own_home, "trust", "list"), f"{log} is writable by group or others")
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), f"{log} is writable")
        log.unlink()


@as_root
def test_a_symlinked_state_db_is_checked_where_sqlite_keeps_its_log(own_home):
    """SQLite resolves a symlinked state.db and replays the write-ahead log beside its target, not beside the
    link: with state.db linked into a directory others can write (sticky, as /tmp), another user put a
    state.db-wal there that gave the full and the fast path a trust pin of theirs, while every checked path
    was ours. That directory (and any log in it) is now checked as the home is."""
    import shutil
    import sqlite3

    assert tufoci(own_home, "trust", "list").returncode == 0
    shared, attacker = Path(tempfile.mkdtemp(dir="/tmp")), Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shared.chmod(0o1777)
        (own_home / "state.db").rename(shared / "state.db")
        (own_home / "state.db").symlink_to(shared / "state.db")
        # the other user: a copy of the (readable) database, a pin written into its log, the log put beside it
        shutil.copy(shared / "state.db", attacker / "copy.db")
        connection = sqlite3.connect(attacker / "copy.db")
        connection.execute("INSERT INTO pins VALUES ('127.0.0.1:5000/acme', '127.0.0.1:5000/evil/tuf', ?, 'x', '')",
                           ["0" * 64])
        connection.commit()
        shutil.copy(attacker / "copy.db-wal", shared / "state.db-wal")
        connection.close()
        os.chown(shared / "state.db-wal", NOBODY, NOBODY)
        fragment = f"local state directory {shared} is writable by group or others"
        assert_refused(tufoci(own_home, "trust", "list"), fragment)
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), fragment)
        shared.chmod(0o755)  # the directory is safe now, but the other user's log is still there
        assert_refused(tufoci(own_home, "trust", "list"), f"local state log {shared / 'state.db-wal'} belongs to uid")
        (shared / "state.db-wal").unlink()
        listed = tufoci(own_home, "trust", "list")  # a symlink into a directory of our own is fine
        assert listed.returncode == 0 and "evil" not in listed.stdout, (listed.stdout, listed.stderr)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(attacker, ignore_errors=True)


@as_root
def test_a_home_owned_by_another_user_is_refused(own_home):
    agent = fake_agent(own_home / "agent.sock")
    try:
        os.chown(own_home, NOBODY, NOBODY)
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), f"belongs to uid {NOBODY}")
        (own_home / "agent.sock").unlink()
        assert_refused(tufoci(own_home, "trust", "list"), f"TUFOCI_HOME {own_home} belongs to uid {NOBODY}")
    finally:
        agent.kill()
        agent.wait()


@as_root
@pytest.mark.parametrize("name,what", STATE_ENTRIES)
def test_state_in_the_home_owned_by_another_user_is_refused(own_home, name, what):
    assert tufoci(own_home, "trust", "list").returncode == 0
    entry = own_home / name
    if not entry.exists():
        entry.mkdir(mode=0o700)
    os.chown(entry, NOBODY, NOBODY)
    assert_refused(tufoci(own_home, "trust", "list"), f"{what} {entry} belongs to uid {NOBODY}")


@as_root
def test_an_agent_socket_owned_by_another_user_is_refused(own_home):
    agent = fake_agent(own_home / "agent.sock")
    try:
        os.chown(own_home / "agent.sock", NOBODY, NOBODY)
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"), f"belongs to uid {NOBODY}")
    finally:
        agent.kill()
        agent.wait()


@as_root
def test_an_agent_running_as_another_user_is_refused_by_verify(own_home):
    """Socket and home are ours; the process answering on it is not (SO_PEERCRED)."""
    agent = fake_agent(own_home / "agent.sock", uid=NOBODY)
    try:
        assert_refused(tufoci(own_home, "verify", "127.0.0.1:5000/acme/web:1.0"),
                       f"runs as uid {NOBODY}, not as this user")
    finally:
        agent.kill()
        agent.wait()


@as_root
def test_the_agent_answers_no_other_user(own_home):
    """Even with its socket opened up to everyone, the agent answers only its own uid."""
    directory = Path(tempfile.mkdtemp(prefix="ags", dir="/tmp"))
    directory.chmod(0o755)  # reachable by nobody, writable by us alone
    path = directory / "agent.sock"
    env = {**os.environ, "TUFOCI_HOME": str(own_home)}
    agent = subprocess.Popen([TUFOCI, "agent", "--socket", str(path)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert time.monotonic() < deadline and agent.poll() is None, "agent did not start"
            time.sleep(0.05)
        path.chmod(0o666)
        ask = (
            "import os, socket, sys\n"
            "if len(sys.argv) > 2: os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))\n"
            "c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(sys.argv[1])\n"
            "try:\n"
            "    c.sendall(b'{\"references\": [\"127.0.0.1:5000/acme/web:1.0\"]}\\n'); answer = c.recv(65536)\n"
            "except (BrokenPipeError, ConnectionResetError):\n"
            "    answer = b''  # closed on us: no answer either\n"
            "sys.stdout.write(repr(answer))\n"
        )
        ours = subprocess.run([sys.executable, "-c", ask, str(path)], capture_output=True, text=True, timeout=30)
        assert "results" in ours.stdout, ours  # our own uid gets an answer
        theirs = subprocess.run([sys.executable, "-c", ask, str(path), str(NOBODY)], capture_output=True, text=True,
                                timeout=30)
        assert theirs.returncode == 0 and theirs.stdout == "b''", theirs
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=20)
        subprocess.run(["rm", "-rf", str(directory)], check=False)
    assert f"refused a request from uid {NOBODY}" in err

