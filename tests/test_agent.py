"""The resident verifier: `tufoci agent` answers `tufoci verify` over a Unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import needs_registry, publish_web, push_test_image
from tufoci.client.agent_client import MAX_REQUEST_BYTES, format_rendered, parse_rendered, render_request

pytestmark = needs_registry
TUFOCI = str(Path(sys.executable).with_name("tufoci"))


@pytest.fixture
def agent_setup(registry, tmp_path: Path, home: Path, monkeypatch):
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    consumer_home = Path(tempfile.mkdtemp(prefix="ag", dir="/tmp"))  # Unix socket paths must be short
    env = {**os.environ, "TUFOCI_HOME": str(consumer_home)}
    subprocess.run([TUFOCI, "trust", "add", scope, "--root", str(root)], env=env, check=True, capture_output=True)
    agent = subprocess.Popen([TUFOCI, "agent", "--freshness", "30s"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (consumer_home / "agent.sock").exists():
        assert time.monotonic() < deadline and agent.poll() is None, "agent did not start"
        time.sleep(0.05)
    yield {"scope": scope, "env": env, "registry": registry, "agent": agent, "maintainer": maintainer,
           "tmp_path": tmp_path}
    agent.terminate()
    agent.wait(timeout=20)
    shutil.rmtree(consumer_home, ignore_errors=True)


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TUFOCI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_verify_uses_the_agent_and_reuses_its_refresh(agent_setup):
    scope, env, registry = agent_setup["scope"], agent_setup["env"], agent_setup["registry"]
    direct = run({**env, "TUFOCI_NO_AGENT": "1"}, "verify", f"{scope}/web:1.0", "-o", "json")
    first = run(env, "verify", f"{scope}/web:1.0", "-o", "json")
    assert first.returncode == 0 and json.loads(first.stdout) == json.loads(direct.stdout)
    mark = registry.mark()
    again = run(env, "verify", f"{scope}/web:1.0", "--skip-registry-check")
    assert again.returncode == 0 and again.stdout.strip().startswith(f"{scope}/web@sha256:")
    assert registry.request_count(since=mark) == 0  # within the freshness window: no request at all
    missing = run(env, "verify", f"{scope}/web:9.9")
    assert missing.returncode == 10 and "no signed target 'web:9.9'" in missing.stderr


def test_agent_sees_registry_attacks_on_the_tag(agent_setup):
    scope, env = agent_setup["scope"], agent_setup["env"]
    assert run(env, "verify", f"{scope}/web:1.0").returncode == 0
    push_test_image(agent_setup["tmp_path"], b"evil", f"{scope}/web:1.0")
    moved = run(env, "verify", f"{scope}/web:1.0")
    assert moved.returncode == 11 and "the registry serves" in moved.stderr


def test_without_the_agent_verify_still_works(agent_setup):
    scope, env, agent = agent_setup["scope"], agent_setup["env"], agent_setup["agent"]
    agent.terminate()
    assert agent.wait(timeout=20) == 0
    assert not Path(env["TUFOCI_HOME"], "agent.sock").exists()
    assert run(env, "verify", f"{scope}/web:1.0").returncode == 0


def test_programs_ask_in_json_on_the_same_socket(agent_setup):
    scope, env = agent_setup["scope"], agent_setup["env"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(Path(env["TUFOCI_HOME"]) / "agent.sock"))
        client.sendall(json.dumps({"references": [f"{scope}/web:1.0", f"{scope}/web:9.9"]}).encode() + b"\n")
        with client.makefile("rb") as reply:
            results = json.loads(reply.readline())["results"]
    assert results[0]["verified"] and results[0]["pinned"].startswith(f"{scope}/web@sha256:")
    assert results[1]["error"]["code"] == 10


def test_the_render_line_format_and_what_falls_back():
    request = render_request(["r/a:1", "r/b:2"], output="json", check_registry=False)
    assert request == b"render\tjson\t0\tr/a:1\tr/b:2\n"
    assert render_request(["r/a:1\tinjected"], output="text", check_registry=True) is None
    assert parse_rendered(format_rendered(11, "dépôt@sha256:…\n", "tufoci: error: x\n")) == (
        11, "dépôt@sha256:…\n", "tufoci: error: x\n")
    # an older agent's JSON, a truncated reply, nothing: the verify process then verifies by itself
    for reply in (b'{"results": []}\n', b"0 10 0\nshort", b"", b"0 2 0\n\xff\xfe"):
        assert parse_rendered(reply) is None


def test_a_request_over_the_limit_is_not_answered_so_nothing_goes_unchecked(agent_setup):
    """A cut request line would drop references (or cut a tag to another tag) and still answer 0."""
    scope, env = agent_setup["scope"], agent_setup["env"]
    refs = [f"{scope}/web:1.0"] * (MAX_REQUEST_BYTES // len(f"{scope}/web:1.0") + 10)
    assert render_request(refs, output="text", check_registry=False) is None  # the client does not even ask
    line = "\t".join(["render", "text", "0", *refs]).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(Path(env["TUFOCI_HOME"]) / "agent.sock"))
        answer = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed on us: no answer either
            client.sendall(line)
            answer = client.recv(100)
        assert answer == b""  # no answer: the verify process checks every reference itself
