"""A publish is atomic for readers: crashes and races leave the previous consistent state."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import init_scope, needs_registry, ok, push_test_image, run_tufoci, use_home
from tests.support import crash

pytestmark = needs_registry

REPO_ROOT = Path(__file__).resolve().parent.parent


def _publish_stopped(how: str, step: str, scope: str) -> subprocess.CompletedProcess[str]:
    """``tufoci publish SCOPE`` in its own process, sent SIGKILL (``kill``) or SIGINT (``interrupt``) before
    the publish step ``step`` (tests/support/crash.py)."""
    return subprocess.run([sys.executable, "-m", "tests.support.crash", how, step, "publish", scope],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def published(registry, tmp_path: Path, home: Path, monkeypatch):
    """A scope with web:1.0 signed, a consumer that verified it, and web:1.1 pushed but unsigned."""
    scope = f"{registry.host}/acme"
    push_test_image(tmp_path, b"1.0", f"{scope}/web:1.0")
    push_test_image(tmp_path, b"1.1", f"{scope}/web:1.1")
    root = init_scope(scope, tmp_path).root_file
    ok(run_tufoci("target", "add", f"{scope}/web:1.0"))
    ok(run_tufoci("publish", scope))
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", scope, "--root", str(root)))
    ok(run_tufoci("verify", f"{scope}/web:1.0"))
    use_home(monkeypatch, home)
    return scope


@pytest.mark.parametrize("step", crash.STEPS)
def test_sigkill_at_every_publish_step_keeps_the_previous_state(published, step, tmp_path, home, monkeypatch):
    scope = published
    ok(run_tufoci("target", "add", f"{scope}/web:1.1"))
    killed = _publish_stopped("kill", step, scope)
    assert killed.returncode == -9, killed.stderr

    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("verify", f"{scope}/web:1.0"))  # the previous state is still served and valid
    assert run_tufoci("verify", f"{scope}/web:1.1").exit_code == 10  # the new one is not live

    use_home(monkeypatch, home)
    assert ok(run_tufoci("status", scope, "-o", "json")).stdout.count('"web:1.1"') == 1  # still staged
    ok(run_tufoci("publish", scope))  # a re-run completes
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("verify", f"{scope}/web:1.0", f"{scope}/web:1.1"))


def test_concurrent_publish_is_refused_and_loses_nothing(published, tmp_path, home, monkeypatch):
    scope = published
    other = tmp_path / "other-maintainer"
    shutil.copytree(home, other)  # a second maintainer holding the same keys
    ok(run_tufoci("target", "add", f"{scope}/web:1.1"))

    def race(step: str) -> None:  # before the timestamp check, the other maintainer publishes
        use_home(monkeypatch, other)
        ok(run_tufoci("target", "remove", scope, "web:1.0"))
        ok(run_tufoci("publish", scope))
        use_home(monkeypatch, home)

    with monkeypatch.context() as patched:
        crash.install("timestamp-check", race, patched.setattr)
        lost = run_tufoci("publish", scope)
    assert lost.exit_code == 1
    assert "concurrent publish" in lost.stderr
    assert '"web:1.1"' in ok(run_tufoci("status", scope, "-o", "json")).stdout  # still staged for a retry

    ok(run_tufoci("publish", scope))  # the retry builds on the other maintainer's version
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("verify", f"{scope}/web:1.1"))
    assert run_tufoci("verify", f"{scope}/web:1.0").exit_code == 10  # the other maintainer's removal survived


@pytest.mark.parametrize("step,live", [("timestamp", False), ("after-timestamp", True)])
def test_ctrl_c_during_or_after_publish_says_exactly_what_happened(published, step, live, tmp_path, home,
                                                                   monkeypatch):
    """Issue 18: Ctrl-C after the new state went live said 'aborted' (exit 130) although it was live."""
    scope = published
    ok(run_tufoci("target", "add", f"{scope}/web:1.1"))
    interrupted = _publish_stopped("interrupt", step, scope)
    assert interrupted.returncode == 130, interrupted.stderr
    assert len(interrupted.stderr.strip().splitlines()) == 1 and "Traceback" not in interrupted.stderr
    staged = ok(run_tufoci("status", scope, "-o", "json")).stdout.count('"web:1.1"')
    use_home(monkeypatch, tmp_path / "consumer")
    if live:
        assert f"published targets v3, snapshot v3, timestamp v3 to {scope} before the interrupt" \
            in interrupted.stderr
        ok(run_tufoci("verify", f"{scope}/web:1.1"))
        assert staged == 0  # recorded as published: a re-run would not apply it again
    else:
        assert f"nothing went live in {scope}; staged changes kept" in interrupted.stderr
        assert run_tufoci("verify", f"{scope}/web:1.1").exit_code == 10
        assert staged == 1


def test_a_slow_publish_shows_progress_on_stderr(published, monkeypatch):
    """Issue 18: a publish over a second says what it is doing (stderr; stdout stays the result)."""
    import tufoci.cli as cli

    scope = published
    ok(run_tufoci("target", "add", f"{scope}/web:1.1"))
    quick = cli._late_progress
    monkeypatch.setattr(cli, "_late_progress", lambda after=1.0: quick(0.0))  # as if every step were slow
    result = ok(run_tufoci("publish", scope))
    assert "tufoci: pushing 3 metadata files" in result.stderr and "the timestamp moves last" in result.stderr
    assert "pushing" not in result.stdout


def test_the_publish_path_carries_no_fault_injection():
    """Issue 12 §5: the crash tests stop the process from a store wrapper (tests/support/crash.py); no
    environment variable can make a production publish kill itself."""
    for directory in ("tufoci", "repo_tool", "client"):
        for path in (REPO_ROOT / directory).rglob("*.py"):
            assert "TUFOCI_TEST_" not in path.read_text(), path
