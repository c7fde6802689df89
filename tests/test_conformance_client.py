"""tests/conformance/tufoci-conformance-client: the TUF conformance suite's client-under-test CLI.

A small plain TUF repository (python-tuf's Metadata API, consistent snapshots,
ed25519 keys) is served over HTTP on loopback and the executable is run as a
subprocess, exactly as the suite would run it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib import parse

import pytest
from securesystemslib.signer import CryptoSigner, Signature
from tuf.api.metadata import (
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

CLIENT = Path(__file__).resolve().parent / "conformance" / "tufoci-conformance-client"


# -- a plain TUF repository on disk -------------------------------------------------
class Repository:
    """Top-level metadata and artifacts laid out as a consistent-snapshot TUF repository."""

    def __init__(self, base: Path):
        self.metadata_dir = base / "metadata"
        self.targets_dir = base / "targets"
        self.metadata_dir.mkdir()
        self.targets_dir.mkdir()
        self.signers = {role: CryptoSigner.generate_ed25519() for role in TOP_LEVEL_ROLE_NAMES}
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
        root = Root(expires=expires, consistent_snapshot=True)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=expires))
        self.snapshot = Metadata(Snapshot(expires=expires))
        self.timestamp = Metadata(Timestamp(expires=expires))
        self._published = False

    def _bytes(self, md: Metadata, role: str) -> bytes:
        md.signatures.clear()
        md.sign(self.signers[role])
        return md.to_bytes(JSONSerializer(compact=True))

    def root_bytes(self) -> bytes:
        return self._bytes(self.root, Root.type)

    def publish_root(self) -> bytes:
        data = self.root_bytes()
        (self.metadata_dir / f"{self.root.signed.version}.root.json").write_bytes(data)
        return data

    def add_artifact(self, path: str, data: bytes) -> TargetFile:
        info = TargetFile.from_data(path, data, ["sha256"])
        directory, _, name = path.rpartition("/")
        location = self.targets_dir / directory / f"{info.hashes['sha256']}.{name}"
        location.parent.mkdir(parents=True, exist_ok=True)
        location.write_bytes(data)
        self.targets.signed.targets[path] = info
        return info

    def artifact_file(self, path: str) -> Path:
        directory, _, name = path.rpartition("/")
        return self.targets_dir / directory / f"{self.targets.signed.targets[path].hashes['sha256']}.{name}"

    def publish(self) -> None:
        """Publish targets, snapshot and timestamp (each a new version after the first publish)."""
        if self._published:
            for md in (self.targets, self.snapshot, self.timestamp):
                md.signed.version += 1
        self._published = True
        version = self.targets.signed.version
        (self.metadata_dir / f"{version}.targets.json").write_bytes(self._bytes(self.targets, Targets.type))
        self.snapshot.signed.meta["targets.json"] = MetaFile(version=version)
        version = self.snapshot.signed.version
        (self.metadata_dir / f"{version}.snapshot.json").write_bytes(self._bytes(self.snapshot, Snapshot.type))
        self.timestamp.signed.snapshot_meta = MetaFile(version=version)
        self.publish_timestamp()

    def publish_timestamp(self, *, bump: bool = False, tamper: bool = False) -> bytes:
        if bump:
            self.timestamp.signed.version += 1
        data = self._bytes(self.timestamp, Timestamp.type)
        if tamper:  # a signature by the right key id that does not verify
            keyid, signature = next(iter(self.timestamp.signatures.items()))
            flipped = ("0" if signature.signature[0] != "0" else "1") + signature.signature[1:]
            self.timestamp.signatures[keyid] = Signature(keyid, flipped)
            data = self.timestamp.to_bytes(JSONSerializer(compact=True))
        (self.metadata_dir / "timestamp.json").write_bytes(data)
        return data


# -- serving it ---------------------------------------------------------------
@dataclass
class Served:
    repo: Repository
    metadata_url: str
    targets_url: str
    requests: list[str] = field(default_factory=list)

    def target_requests(self) -> list[str]:
        return [path for path in self.requests if path.startswith("/targets/")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    base = tmp_path / "repository"
    base.mkdir()
    repo = Repository(base)
    repo.publish_root()
    repo.add_artifact("hello.txt", b"hello, world\n")
    repo.add_artifact("dir/file two.bin", bytes(range(256)) * 4)
    repo.publish()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            requests.append(parse.unquote(self.path))
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(base)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Served(repo, f"{url}/metadata", f"{url}/targets", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- running the client ---------------------------------------------------------
@dataclass
class Client:
    served: Served
    metadata_dir: Path
    target_dir: Path
    root_file: Path

    def run(self, *args: str, python: tuple[str, ...] | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        command = [*(python or (sys.executable,)), str(CLIENT), "--metadata-dir", str(self.metadata_dir), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    def init(self, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run("init", str(self.root_file), **kwargs)

    def refresh(self, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run("--metadata-url", self.served.metadata_url, "refresh", **kwargs)

    def download(self, *names: str) -> subprocess.CompletedProcess[str]:
        flags = [flag for name in names for flag in ("--target-name", name)]
        return self.run("--metadata-url", self.served.metadata_url, *flags,
                        "--target-base-url", self.served.targets_url, "--target-dir", str(self.target_dir), "download")

    def version(self, role: str) -> int:
        return Metadata.from_file(str(self.metadata_dir / f"{role}.json")).signed.version

    def artifact(self, name: str) -> Path:
        return self.target_dir / parse.quote(name, safe="")

    def downloaded(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.target_dir.iterdir())} if self.target_dir.exists() else {}


@pytest.fixture
def client(served: Served, tmp_path: Path) -> Client:
    root_file = tmp_path / "initial_root.json"
    root_file.write_bytes(served.repo.root_bytes())
    metadata_dir, target_dir = tmp_path / "client" / "metadata", tmp_path / "client" / "targets"
    metadata_dir.mkdir(parents=True)
    target_dir.mkdir()
    return Client(served, metadata_dir, target_dir, root_file)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def fails(result: subprocess.CompletedProcess[str], *words: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stderr.strip(), "a failure must say why on stderr"
    for word in words:
        assert word in result.stderr, result.stderr
    return result


def tree(directory: Path) -> dict[str, tuple[object, int]]:
    """Everything a directory holds: file bytes or symlink targets, with mtimes."""
    return {
        path.relative_to(directory).as_posix(): (
            ("link", os.readlink(path)) if path.is_symlink() else path.read_bytes(),
            path.lstat().st_mtime_ns,
        )
        for path in sorted(directory.rglob("*"))
        if path.is_symlink() or path.is_file()
    }


# -- the protocol ---------------------------------------------------------------
def test_init_refresh_download_and_reuse(client: Client, served: Served):
    ok(client.init())
    assert served.requests == [], "init must not touch the network"
    assert sorted(os.listdir(client.metadata_dir)) == ["root.json"]
    assert (client.metadata_dir / "root.json").read_bytes() == client.root_file.read_bytes()

    ok(client.refresh())
    # unversioned names, as CLIENT-CLI.md requires; root.json is ngclient's link into root_history/
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= set(os.listdir(client.metadata_dir))
    assert [name for name in os.listdir(client.metadata_dir) if name.endswith(".json")
            and name.removesuffix(".json") not in TOP_LEVEL_ROLE_NAMES] == []
    for role in TOP_LEVEL_ROLE_NAMES:
        assert client.version(role) == 1
    assert (client.metadata_dir / "timestamp.json").read_bytes() == (served.repo.metadata_dir / "timestamp.json").read_bytes()
    assert (client.metadata_dir / "root.json").read_bytes() == client.root_file.read_bytes()
    assert served.target_requests() == []

    ok(client.download("hello.txt", "dir/file two.bin"))
    assert client.downloaded() == {
        parse.quote("dir/file two.bin", safe=""): bytes(range(256)) * 4,
        "hello.txt": b"hello, world\n",
    }
    # consistent snapshots: artifacts are fetched under their hash-prefixed names
    digest = hashlib.sha256(b"hello, world\n").hexdigest()
    assert f"/targets/{digest}.hello.txt" in served.target_requests()
    assert len(served.target_requests()) == 2

    # a second download reuses the verified files: metadata requests only
    before = served.requests[:]
    mtimes = {p.name: p.stat().st_mtime_ns for p in client.target_dir.iterdir()}
    ok(client.download("dir/file two.bin", "hello.txt"))
    assert served.target_requests() == [r for r in before if r.startswith("/targets/")]
    assert {p.name: p.stat().st_mtime_ns for p in client.target_dir.iterdir()} == mtimes
    # nothing changed upstream: only timestamp.json and the next root were asked for
    assert sorted(served.requests[len(before):]) == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_a_new_repository_version_is_picked_up(client: Client, served: Served):
    ok(client.init())
    ok(client.download("hello.txt"))
    repo = served.repo
    repo.root.signed.version += 1  # root v2, with a new timestamp key
    repo.signers[Timestamp.type] = CryptoSigner.generate_ed25519()
    repo.root.signed.revoke_key(repo.root.signed.roles[Timestamp.type].keyids[0], Timestamp.type)
    repo.root.signed.add_key(repo.signers[Timestamp.type].public_key, Timestamp.type)
    repo.publish_root()
    repo.add_artifact("hello.txt", b"hello again\n")
    repo.add_artifact("new.txt", b"new\n")
    repo.publish()

    ok(client.refresh())
    assert {role: client.version(role) for role in TOP_LEVEL_ROLE_NAMES} == {
        "root": 2, "timestamp": 2, "snapshot": 2, "targets": 2}
    assert os.readlink(client.metadata_dir / "root.json") == os.path.join("root_history", "2.root.json")
    assert client.downloaded() == {"hello.txt": b"hello, world\n"}

    ok(client.download("hello.txt", "new.txt"))
    assert client.downloaded() == {"hello.txt": b"hello again\n", "new.txt": b"new\n"}


def test_runs_by_its_shebang_and_without_the_package_installed(client: Client, served: Served, tmp_path: Path):
    assert os.access(CLIENT, os.X_OK)
    assert CLIENT.read_text().startswith("#!/usr/bin/env python3\n")
    # the shebang, with this interpreter first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(CLIENT), "--metadata-dir", str(client.metadata_dir), "init", str(client.root_file)],
                            capture_output=True, text=True, timeout=60, env=env)
    ok(result)
    # -S: no site processing, so no editable install of tufoci; its dependencies come from PYTHONPATH
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sorted(paths))}
    ok(client.refresh(python=(sys.executable, "-S"), env=env))
    assert client.version(Timestamp.type) == 1


# -- failures ---------------------------------------------------------------------
def test_refresh_before_init_fails(client: Client, served: Served):
    fails(client.refresh(), "init")
    assert served.requests == []


def test_bad_timestamp_signature_is_rejected_and_the_cache_is_unchanged(client: Client, served: Served):
    ok(client.init())
    ok(client.refresh())
    before = tree(client.metadata_dir)
    served.repo.publish_timestamp(bump=True, tamper=True)
    fails(client.refresh(), "timestamp")
    assert tree(client.metadata_dir) == before
    fails(client.download("hello.txt"))
    assert tree(client.metadata_dir) == before
    assert client.downloaded() == {}


def test_bad_timestamp_signature_on_first_refresh_leaves_only_the_root(client: Client, served: Served):
    ok(client.init())
    root = (client.metadata_dir / "root.json").read_bytes()
    served.repo.publish_timestamp(tamper=True)
    fails(client.refresh())
    # the verified root is kept (as the specification persists it), nothing of the rejected timestamp
    assert (client.metadata_dir / "root.json").read_bytes() == root
    assert sorted(p.name for p in client.metadata_dir.glob("*.json")) == ["root.json"]


def test_rolled_back_timestamp_is_rejected(client: Client, served: Served):
    ok(client.init())
    old = (served.repo.metadata_dir / "timestamp.json").read_bytes()
    served.repo.publish_timestamp(bump=True)
    ok(client.refresh())
    assert client.version(Timestamp.type) == 2
    before = tree(client.metadata_dir)
    (served.repo.metadata_dir / "timestamp.json").write_bytes(old)
    fails(client.refresh(), "timestamp")
    assert tree(client.metadata_dir) == before
    assert client.version(Timestamp.type) == 2


def test_missing_target_fails(client: Client, served: Served):
    ok(client.init())
    fails(client.download("no-such-file.txt"), "no-such-file.txt")
    assert client.downloaded() == {}
    assert served.target_requests() == []
    # the metadata the lookup verified is kept (the suite counts it), unlike after a rejected refresh
    assert client.version(Targets.type) == 1


def test_signed_target_absent_from_the_server_fails(client: Client, served: Served):
    ok(client.init())
    served.repo.artifact_file("hello.txt").unlink()
    fails(client.download("hello.txt"), "hello.txt")
    assert client.downloaded() == {}


def test_target_with_wrong_hash_is_not_written(client: Client, served: Served):
    ok(client.init())
    served.repo.artifact_file("hello.txt").write_bytes(b"hello, w0rld\n")  # same length, other bytes
    fails(client.download("hello.txt"), "hello.txt")
    assert client.downloaded() == {}
    assert os.listdir(client.target_dir) == []  # no temporary file left behind either


def test_substituted_artifact_does_not_replace_a_verified_one(client: Client, served: Served):
    ok(client.init())
    ok(client.download("hello.txt"))
    repo = served.repo
    repo.add_artifact("hello.txt", b"a legitimate new version\n")
    repo.publish()
    repo.artifact_file("hello.txt").write_bytes(b"malicious bytes of some length\n")
    fails(client.download("hello.txt"))
    assert client.downloaded() == {"hello.txt": b"hello, world\n"}
    # the refresh itself was valid: its metadata is kept
    assert client.version(Targets.type) == 2


def test_download_stops_at_the_first_failure(client: Client, served: Served):
    ok(client.init())
    fails(client.download("hello.txt", "missing.txt", "dir/file two.bin"), "missing.txt")
    assert client.downloaded() == {"hello.txt": b"hello, world\n"}
    assert len(served.target_requests()) == 1


def test_usage_errors_exit_1(client: Client):
    fails(client.run("--metadata-url", "http://127.0.0.1:9/", "download"), "--target-name")
    fails(client.run("refresh"), "--metadata-url")
    fails(client.run("init", str(client.metadata_dir / "absent.json")))
