"""Local state robustness: a damaged cache, a damaged state.db, commands killed half-way.

What a consumer's machine holds is never trusted more than the registry: a
cached metadata file that does not verify is re-fetched (and the file
replaced); a state.db that SQLite cannot read is reported in one line; and a
``tufoci`` process SIGKILLed at any moment leaves state.db consistent and the
cache made of whole files only (atomic replace + SQLite transactions).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from tests.conftest import Machine, init_scope, needs_registry, push_test_image
from tufoci.reference import parse_reference

pytestmark = needs_registry

TUFOCI = os.path.join(os.path.dirname(sys.executable), "tufoci")
SEED = int(os.environ.get("TUFOCI_KILL_SEED", str(int(time.time()))))
KILLS = int(os.environ.get("TUFOCI_KILLS", "6"))


@dataclass
class World:
    scope: str
    web: str
    maintainer: Machine
    consumer: Machine
    root_file: Path

    def cache(self) -> Path:
        (entry,) = [p for p in (self.consumer.home / "cache").iterdir() if not p.name.startswith(".")]
        return entry

    def signed_digest(self) -> str:
        out = self.consumer.ok("verify", self.web, "-o", "json").stdout
        return json.loads(out)["results"][0]["digest"]


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch) -> World:
    scope = f"{registry.host}/acme"
    web = f"{scope}/web:1.0"
    push_test_image(tmp_path, b"web 1.0", web)
    maintainer = Machine("home", tmp_path, monkeypatch)  # the `home` fixture's TUFOCI_HOME
    signed = init_scope(scope, tmp_path)
    maintainer.ok("target", "add", web)
    maintainer.ok("publish", scope)
    consumer = Machine("consumer", tmp_path, monkeypatch)
    consumer.ok("trust", "add", scope, "--root", str(signed.root_file))
    consumer.ok("verify", web)  # a warm cache: timestamp, snapshot, targets, root_history/1.root.json
    return World(scope, web, maintainer, consumer, signed.root_file)


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ, TUFOCI_HOME=str(home), TUFOCI_PASSPHRASE="correct horse")
    env.pop("TUFOCI_ACTOR", None)
    return env


def run_cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real ``tufoci`` executable, as a user runs it."""
    return subprocess.run([TUFOCI, *args], env=env_for(home), capture_output=True, text=True, timeout=timeout)


# -- 1. damaged cache files are re-fetched, never trusted -----------------------------
def _tampered(original: bytes, role: str) -> bytes:
    """Well-formed metadata whose signed part was edited: would change the answer if trusted."""
    doc = json.loads(original)
    signed = doc["signed"]
    signed["version"] += 1000  # trusted, this would make the registry's real version a rollback
    if role == "targets":
        for info in signed["targets"].values():
            info["hashes"]["sha256"] = "0" * 64  # trusted, verify would print another digest
    if role == "root":
        signed["keys"] = {}
    return json.dumps(doc).encode()


CORRUPTIONS = {
    "garbage": lambda data, role: os.urandom(len(data)),
    "truncated": lambda data, role: data[: len(data) // 2],
    "empty": lambda data, role: b"",
    "not-json-object": lambda data, role: b"[]",
    "tampered": _tampered,
}


@pytest.mark.parametrize("filename", ["timestamp.json", "snapshot.json", "targets.json", "root.json"])
def test_corrupt_cache_file_is_refetched_not_trusted(world: World, filename: str) -> None:
    expected = world.signed_digest()
    role = filename.removesuffix(".json")
    link = world.cache() / filename
    # root.json is ngclient's symlink to root_history/N.root.json: damage what it points at
    path = Path(os.path.realpath(link))
    assert path.is_file() and (filename != "root.json" or link.is_symlink())
    good = path.read_bytes()
    for name, corrupt in CORRUPTIONS.items():
        damaged = corrupt(good, role)
        path.write_bytes(damaged)
        result = world.consumer("verify", world.web, "-o", "json")
        assert result.exit_code == 0, f"{filename} {name}: exit {result.exit_code}: {result.stderr}"
        assert json.loads(result.stdout)["results"][0]["digest"] == expected, f"{filename} {name}"
        # the damaged file was replaced by the verified one, byte for byte
        assert path.read_bytes() == good, f"{filename} ({name}) was not replaced"
        Metadata.from_bytes(path.read_bytes())
        if filename == "root.json":
            assert link.is_symlink() and Path(os.path.realpath(link)) == path


def test_missing_cache_files_are_refetched(world: World) -> None:
    expected = world.signed_digest()
    cache = world.cache()
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        (cache / name).unlink()
    os.unlink(os.path.realpath(cache / "root.json"))  # a dangling root.json symlink
    assert world.signed_digest() == expected
    for name in ("timestamp.json", "snapshot.json", "targets.json", "root.json"):
        Metadata.from_bytes((cache / name).read_bytes())


# -- 2. a damaged state.db: one line, no traceback --------------------------------------
def _settle(db: Path) -> None:
    """Fold the WAL into state.db so that damaging the file damages the data."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _overwrite_pages(data: bytes) -> bytes:
    """Keep the header page; every later page becomes noise ('database disk image is malformed')."""
    page = int.from_bytes(data[16:18], "big") or 65536
    return data[:page] + bytes(random.Random(1).getrandbits(8) for _ in range(len(data) - page))


STATE_CORRUPTIONS = {
    "garbage": lambda data: os.urandom(max(len(data), 8192)),
    "truncated-header": lambda data: data[:50],
    "truncated": lambda data: data[: len(data) // 3],
    "pages-overwritten": _overwrite_pages,
    "header-damaged": lambda data: b"SQLite format 2\x00" + data[16:],
}


@pytest.mark.parametrize("kind", sorted(STATE_CORRUPTIONS))
def test_corrupt_state_db_is_one_line_error(world: World, kind: str) -> None:
    db = world.consumer.home / "state.db"
    assert run_cli(world.consumer.home, "verify", world.web).returncode == 0
    _settle(db)
    damaged = STATE_CORRUPTIONS[kind](db.read_bytes())
    db.write_bytes(damaged)
    for args in (("verify", world.web), ("trust", "list"), ("log", world.scope)):
        result = run_cli(world.consumer.home, *args)
        assert result.returncode == 1, f"{kind} {args}: exit {result.returncode}: {result.stderr}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, f"{kind} {args}: {result.stderr}"
        assert lines[0].startswith("tufoci: error:") and "state" in lines[0], lines[0]
        assert "internal error" not in lines[0]
        assert result.stdout == ""
    assert db.read_bytes() == damaged, "tufoci must not overwrite a damaged state.db (the user may repair it)"


# -- 3. SIGKILL at a random moment ------------------------------------------------------
def _db_ok(home: Path) -> None:
    conn = sqlite3.connect(home / "state.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("SELECT count(*) FROM staged").fetchone()
        conn.execute("SELECT count(*) FROM audit").fetchone()
    finally:
        conn.close()


def _cache_whole(home: Path) -> list[str]:
    """Every cache file the client would read is whole, verifiable-shaped metadata.
    Returns the leftovers of killed runs (scratch directories, temp files), which no reader opens."""
    leftovers: list[str] = []
    cache = home / "cache"
    if not cache.exists():
        return leftovers
    for entry in cache.iterdir():
        if entry.name.startswith("."):
            leftovers.append(entry.name)  # .refresh-* scratch copy of a killed run: never read
            continue
        for directory, _, files in os.walk(entry):
            for name in files:
                path = Path(directory, name)
                if name.startswith(".tmp-") or name.endswith(".tmp-link") or name.startswith("tmp"):
                    leftovers.append(str(path.relative_to(cache)))
                    continue
                if path.is_symlink():
                    assert path.exists(), f"{path} points at nothing"
                Metadata.from_bytes(path.read_bytes())  # raises on a half-written file
    return leftovers


def _kill_at_random(cmd: list[str], home: Path, delay: float) -> int | None:
    process = subprocess.Popen(cmd, env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return process.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return None


def _duration(cmd: list[str], home: Path) -> float:
    start = time.monotonic()
    result = subprocess.run(cmd, env=env_for(home), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - start


def _staged(home: Path, scope: str) -> dict[str, str]:
    """The staged rows, read straight from state.db after a kill (what the next command will see)."""
    conn = sqlite3.connect(home / "state.db")
    try:
        return dict(conn.execute("SELECT name, action FROM staged WHERE scope = ?", (scope,)).fetchall())
    finally:
        conn.close()


def test_sigkill_target_add_never_breaks_state(world: World, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    home = world.maintainer.home
    refs, names = [world.web], ["web:1.0"]
    for name in ("api:2.0", "db:3.1"):
        ref = f"{world.scope}/{name}"
        push_test_image(tmp_path, name.encode(), ref)
        refs.append(ref)
        names.append(name)
    cmd = [TUFOCI, "target", "add", *refs]
    took = _duration(cmd, home)
    before = {name: "remove" for name in names}
    after = {name: "add" for name in names}
    killed = 0
    for round_ in range(KILLS):
        # every round starts from "all three staged as removals"; a whole `target add` turns them
        # into additions in one transaction, so a kill leaves one state or the other, never a mix
        assert run_cli(home, "target", "remove", world.scope, *names).returncode == 0
        assert _staged(home, world.scope) == before
        delay = rng.uniform(0.02, took * 1.1)
        if _kill_at_random(cmd, home, delay) is None:
            killed += 1
        _db_ok(home)
        staged = _staged(home, world.scope)
        assert staged in (before, after), f"seed {SEED} round {round_}: half-applied batch {staged}"
    print(f"\ntarget add: {killed}/{KILLS} runs killed mid-flight (seed {SEED}, run takes {took:.2f}s)")
    # and the machine still works: status, stage, publish, verify
    status = run_cli(home, "status", world.scope, "-o", "json")
    assert status.returncode == 0, status.stderr
    assert run_cli(home, "target", "add", *refs).returncode == 0
    assert _staged(home, world.scope) == after
    publish = run_cli(home, "publish", world.scope)
    assert publish.returncode == 0, publish.stderr
    verify = run_cli(world.consumer.home, "verify", *refs)
    assert verify.returncode == 0, verify.stderr


def test_sigkill_verify_never_half_writes_the_cache(world: World, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    consumer = world.consumer.home
    cmd = [TUFOCI, "verify", world.web]
    took = _duration(cmd, consumer)
    killed, leftovers = 0, set()
    for round_ in range(KILLS):
        # make the next verify write: a cold cache, or a new publish (new timestamp, snapshot, targets)
        if round_ % 2 == 0:
            shutil.rmtree(consumer / "cache", ignore_errors=True)
        else:
            push_test_image(tmp_path, f"web {round_}".encode(), world.web)
            world.maintainer.ok("target", "add", world.web)
            world.maintainer.ok("publish", world.scope)
        delay = rng.uniform(0.02, took * 1.3)
        if _kill_at_random(cmd, consumer, delay) is None:
            killed += 1
        _db_ok(consumer)
        leftovers.update(_cache_whole(consumer))
        # the next verify succeeds with the digest signed now
        result = run_cli(consumer, "verify", world.web, "-o", "json")
        assert result.returncode == 0, f"seed {SEED} round {round_}: {result.stderr}"
        digest = json.loads(result.stdout)["results"][0]["digest"]
        assert result.stdout and digest.startswith("sha256:")
        assert str(parse_reference(world.web).repository) in json.loads(result.stdout)["results"][0]["pinned"]
        leftovers.update(_cache_whole(consumer))
    print(f"\nverify: {killed}/{KILLS} runs killed mid-flight (seed {SEED}, run takes {took:.2f}s); "
          f"leftovers never read by a client: {sorted(leftovers) or 'none'}")
