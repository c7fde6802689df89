"""The examples are runnable scripts; the suite runs them like a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(script: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TUFOCI_BIN": str(Path(sys.executable).parent), "TMPDIR": str(tmp_path), **env}
    environment.pop("TUFOCI_HOME", None)
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=environment, timeout=300)


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_quickstart(backend: str, tmp_path: Path):
    result = run_example(EXAMPLES / "quickstart" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"quickstart finished ({backend} backend)" in result.stderr
    assert "exit code 11" in result.stderr and "exit code 10" in result.stderr
    verified = [line for line in result.stdout.splitlines() if "/acme/web@sha256:" in line]
    assert verified, result.stdout


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_teams(backend: str, tmp_path: Path):
    result = run_example(EXAMPLES / "teams" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"teams finished ({backend} backend)")
    assert "outside the paths delegated to role web" in result.stderr  # the web team's db tag is refused
    assert "proposed db v1: 1 of 2 signatures" in result.stdout
    # issue 15: no team holds the online key; every team release goes live through the online service
    assert "key import online" not in result.stderr and "web v1 complete; goes live within" in result.stdout
    assert '"promoted": ["web"]' in result.stderr and '"promoted": ["db"]' in result.stderr
    for name in ("web/frontend", "db/postgres"):
        assert f"/acme/{name}@sha256:" in result.stdout, result.stdout


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_threshold_release(backend: str, tmp_path: Path):
    result = run_example(EXAMPLES / "threshold-release" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"threshold-release finished ({backend} backend)")
    assert "proposed targets v4: 1 of 2 signatures" in result.stdout
    assert "exit code 10" in result.stderr  # web:1.1 is not live while it is a proposal
    assert "published to" in result.stdout and "targets v4" in result.stdout


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_rotate_keys(backend: str, tmp_path: Path):
    result = run_example(EXAMPLES / "rotate-keys" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"rotate-keys finished ({backend} backend)" in result.stderr
    assert "0 of 1 signatures" in result.stdout + result.stderr  # the revoked key counts for nothing
    assert result.stdout.count("/acme/web@sha256:") >= 4  # the cluster kept verifying through every rotation


@needs_registry
def test_ci_pipeline_signs_exactly_the_digest_skopeo_pushed(tmp_path: Path):
    """examples/ci: umoci builds, skopeo copy --digestfile pushes, tufoci signs that digest, a consumer verifies."""
    result = run_example(EXAMPLES / "ci" / "run.sh", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith("ci finished (registry backend)")
    pushed = next(line for line in result.stderr.splitlines() if line.startswith("pushed "))
    digest = pushed.rsplit("@", 1)[1]
    assert f"/acme/web@{digest}" in result.stdout, result.stdout
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        text = (EXAMPLES / "ci" / name).read_text()
        assert "examples/ci/push-and-sign.sh" in text and "tufoci verify" in text


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_online_service(backend: str, tmp_path: Path):
    """Issue 15 story: the team publishes without the online key; the online service makes it live."""
    result = run_example(EXAMPLES / "online-service" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"online-service finished ({backend} backend)")
    assert "proposed web v1: 1 of 2 signatures" in result.stdout
    assert '"promoted": ["web"]' in result.stderr
    assert "/acme/web/frontend@sha256:" in result.stdout


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_threshold_from_init(backend: str, tmp_path: Path):
    """Issue 15.1 story: 2-of-3 targets from init; nothing is live until the first complete set."""
    result = run_example(EXAMPLES / "threshold-from-init" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"threshold-from-init finished ({backend} backend)")
    assert "awaiting its first signatures" in result.stderr and "exit code 13" in result.stderr
    assert "published to" in result.stdout and "root v1, targets v1, snapshot v1, timestamp v1" in result.stdout
    assert "/acme/web@sha256:" in result.stdout


@pytest.mark.parametrize("backend", [pytest.param("registry", marks=needs_registry), "layout"])
def test_root_threshold_from_init(backend: str, tmp_path: Path):
    """Issue 15.1 story: root 2 of 3 and targets 2 of 3 from init; the key holders pin the root file, compare
    its fingerprint, review and sign; the first complete set goes live."""
    result = run_example(EXAMPLES / "root-threshold-from-init" / "run.sh", tmp_path, TUFOCI_DEMO_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.rstrip().endswith(f"root-threshold-from-init finished ({backend} backend)")
    assert "proposed root v1: 1 of 2 signatures, targets v1: 1 of 2 signatures" in result.stderr
    assert "exit code 13" in result.stderr and "signed root v1 with bob-root" in result.stdout
    assert "root v1, targets v1, snapshot v1, timestamp v1" in result.stdout
    assert "/acme/web@sha256:" in result.stdout
