"""Shared fixtures: real registries on loopback, isolated TUFOCI_HOMEs, the CLI in-process.

Registries are real ``docker-registry`` processes (Debian's CNCF distribution
2.8) on free loopback ports, started per test (≈0.1 s each); images are built by
umoci and pushed by skopeo.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.images import build_image, images_available, push_image, skopeo_copy
from tests.support.registry import RegistryServer, registry_available

# On CI the tools are installed by `make test`; a missing one must fail loudly there, not skip.
needs_registry = pytest.mark.skipif(
    not os.environ.get("CI") and not (registry_available() and images_available()),
    reason="docker-registry, umoci and skopeo are needed (make test installs them)",
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    if not registry_available():
        pytest.skip("docker-registry is not installed")
    with RegistryServer.start(tmp_path) as server:
        yield server


@pytest.fixture
def registry2(tmp_path: Path) -> Iterator[RegistryServer]:
    if not registry_available():
        pytest.skip("docker-registry is not installed")
    with RegistryServer.start(tmp_path) as server:
        yield server


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_tufoci(*args: str, stdin: str | None = None) -> CliResult:
    """Run the real CLI entry point in-process and capture what a user would see."""
    from tufoci.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TUFOCI_HOME (one maintainer or consumer machine)."""
    path = tmp_path / "home"
    monkeypatch.setenv("TUFOCI_HOME", str(path))
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return path


def use_home(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Switch the current machine (TUFOCI_HOME) inside a test."""
    monkeypatch.setenv("TUFOCI_HOME", str(path))


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result


@dataclass
class Scope:
    """An initialised trust repository and the files a test needs about it."""

    name: str
    root_file: Path


def init_scope(scope: str, tmp_path: Path, *, extra: tuple[str, ...] = ()) -> Scope:
    """Generate keys in the current home and ``tufoci init`` the scope."""
    for name, options in (("root", ()), ("targets", ("--type", "ecdsa-p256")), ("online", ("--unencrypted",))):
        result = run_tufoci("key", "generate", name, *options)
        assert result.exit_code == 0 or "already exists" in result.stderr, result.stderr
    root_file = tmp_path / f"root-{abs(hash(scope))}.json"
    ok(run_tufoci("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                  "--root-out", str(root_file), *extra))
    return Scope(scope, root_file)


def push_test_image(tmp_path: Path, payload: bytes, dest: str) -> None:
    """Build a real image with umoci and push it with skopeo (registry or oci: layout)."""
    layout = build_image(tmp_path / "images", payload)
    if dest.startswith("oci:"):
        Path(dest[4:].rsplit(":", 1)[0]).mkdir(parents=True, exist_ok=True)
        skopeo_copy(f"oci:{layout}:latest", dest)
    else:
        push_image(layout, "latest", dest)


class Machine:
    """One maintainer's or consumer's machine: its own TUFOCI_HOME."""

    def __init__(self, name: str, tmp_path: Path, monkeypatch):
        self.name, self.home, self.tmp_path, self.monkeypatch = name, tmp_path / name, tmp_path, monkeypatch

    def __call__(self, *args: str):
        use_home(self.monkeypatch, self.home)
        return run_tufoci(*args)

    def ok(self, *args: str):
        return ok(self(*args))

    def new_key(self, name: str, *options: str) -> Path:
        """Generate a key here; returns its exported public key file (what a team hands over)."""
        self.ok("key", "generate", name, *options)
        public = self.tmp_path / f"{name}.pub.json"
        public.write_text(self.ok("key", "export", name).stdout)
        return public

    def share_key(self, other: Machine, name: str) -> None:
        """Give ``other`` this machine's private key (the online key a team may also run)."""
        key = json.loads(self.ok("key", "list", "-o", "json").stdout)
        (entry,) = [k for k in key if k["name"] == name]
        public = self.tmp_path / f"{name}.shared.json"
        public.write_text(self.ok("key", "export", name).stdout)
        other.ok("key", "import", name, str(public), "--uri", entry["uri"])


def reviewed_sign(machine: Machine, scope: str, role: str | None = None, *options: str):
    """``tufoci sign`` as a careful maintainer runs it: with the fingerprints ``status -o json`` showed."""
    proposals = json.loads(machine.ok("status", scope, "-o", "json").stdout)["proposals"]
    expect = sum((["--expect", p["fingerprint"]] for p in proposals if role in (None, p["role"])), [])
    return machine.ok("sign", scope, *([role] if role else []), *expect, *options)


def init_scope_on(machine: Machine, scope: str, tmp_path: Path) -> Path:
    """``machine`` generates root, targets and online keys and initialises ``scope``; returns the root to pin."""
    for key, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",))):
        machine.new_key(key, *options)
    root = tmp_path / "root.json"
    machine.ok("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
               "--root-out", str(root))
    return root


def publish_web(registry_host: str, tmp_path: Path, monkeypatch) -> tuple[str, Machine, Path]:
    """The usual start: a maintainer initialises ``REGISTRY/acme``, signs and publishes ``web:1.0``.

    Returns (scope, the maintainer's machine, the root file consumers pin).
    """
    scope = f"{registry_host}/acme"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    maintainer.ok("target", "add", "--publish", f"{scope}/web:1.0")
    return scope, maintainer, root


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
