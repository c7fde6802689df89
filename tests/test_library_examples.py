"""docs/library.md's examples (examples/library/) run against a real registry, as an embedder runs them: no
TUFOCI_HOME, no state.db, an empty HOME, trust from a root file or its sha256 and a cache directory alone."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_registry, publish_web, push_test_image
from tests.support.registry import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "library"
pytestmark = needs_registry


@pytest.fixture
def published(registry: RegistryServer, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch):
    """``REGISTRY/acme`` with ``web:1.0`` signed and ``web:2.0`` pushed but never signed."""
    scope, maintainer, root = publish_web(registry.host, tmp_path, monkeypatch)
    push_test_image(tmp_path, b"unsigned", f"{scope}/web:2.0")
    deploy = maintainer.ok("verify", f"{scope}/web:1.0").stdout.strip()
    return scope, root, deploy


def run(script: str, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The script in a process whose environment says nothing about tufoci: no TUFOCI_*, no DOCKER_CONFIG, and a
    HOME that must still be empty afterwards (nothing is written under it)."""
    home = tmp_path / "empty-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUFOCI_") and k != "DOCKER_CONFIG"}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert "TUFOCI_HOME" not in env and list(home.iterdir()) == []
    return done


def test_verify_one_prints_what_to_deploy_and_raises_for_an_unsigned_tag(published, tmp_path: Path):
    scope, root, deploy = published
    cache = str(tmp_path / "one-cache")
    done = run("verify_one.py", tmp_path, scope, str(root), cache, f"{scope}/web:1.0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == deploy
    refused = run("verify_one.py", tmp_path, scope, str(root), cache, f"{scope}/web:2.0")
    assert refused.returncode == 1 and "(exit 10)" in refused.stderr  # NotSignedError, raised


def test_verify_batch_pins_by_sha256_and_reports_each_reference(published, tmp_path: Path):
    scope, root, deploy = published
    sha256 = hashlib.sha256(root.read_bytes()).hexdigest()
    done = run("verify_batch.py", tmp_path, scope, sha256, str(tmp_path / "batch-cache"),
               f"{scope}/web:1.0", f"{scope}/web:2.0")
    assert done.returncode == 10, done.stderr  # the first failure's exit code, as `tufoci verify` exits
    lines = done.stdout.splitlines()
    assert lines[0] == f"{scope}/web:1.0: deploy {deploy}"
    assert lines[1].startswith(f"{scope}/web:2.0: refused: ")
    wrong = run("verify_batch.py", tmp_path, scope, "ab" * 32, str(tmp_path / "wrong-cache"), f"{scope}/web:1.0")
    assert wrong.returncode == 1 and "no root in" in wrong.stderr  # the hash decides, not the registry


def test_a_long_running_verifier_asks_the_registry_once_per_freshness_window(published, registry: RegistryServer,
                                                                              tmp_path: Path):
    scope, root, deploy = published
    mark = registry.mark()
    done = run("long_running.py", tmp_path, scope, str(root), str(tmp_path / "long-cache"), "300",
               stdin=f"{scope}/web:1.0\n" * 3)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [deploy] * 3
    timestamps = [line for line in registry.access_log_lines(mark) if line.path.endswith("/manifests/timestamp")]
    assert len(timestamps) == 1  # the first answer refreshed; the next two came from within the window


def test_docs_show_the_examples_as_they_run():
    """docs/library.md quotes each script whole, so what a reader copies is what the suite runs."""
    text = (ROOT / "docs" / "library.md").read_text()
    for script in sorted(EXAMPLES.glob("*.py")):
        assert script.read_text() in text, f"docs/library.md does not quote {script.name} as it is"


def test_the_public_api_is_declared_and_lazy():
    code = ("import sys, tufoci; assert 'tufoci.client.verify' not in sys.modules; "
            "missing = [n for n in tufoci.__all__ if getattr(tufoci, n, None) is None]; assert not missing, missing; "
            "assert sorted(tufoci.__all__) == sorted(['__version__', *tufoci._EXPORTS])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
