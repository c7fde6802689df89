"""Bad input gets one clear line and the right exit code, never a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import init_scope, needs_registry, ok, run_tufoci


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("args,code,needle", [
    (("verify", "localhost:5000/Acme/web:1"), 2, "invalid repository path"),
    (("verify", "localhost:5000/acme/web:bad tag"), 2, "invalid tag"),
    (("verify", "localhost:5000/acme/web@sha256:abc"), 2, "invalid digest"),
    (("verify", "localhost:5000/acme/web:1"), 1, "no trust pin covers"),
    (("publish", "localhost:5000/acme"), 1, "no trust pin for"),
    (("trust", "add", "localhost:5000/acme"), 2, "exactly one of --root"),
    (("trust", "add", "localhost:5000/acme", "--root-sha256", "ab", "--root", "/etc/hostname"), 2, "exactly one"),
    (("init", "localhost:5000/acme", "--root-key", "nope", "--online-key", "nope"), 1, "neither a known key name"),
    (("init", "localhost:5000/acme", "--root-key", "{broken json", "--online-key", "x"), 1, "malformed public key"),
    (("key", "generate", "bad/name"), 1, "invalid key name"),
    (("key", "export", "missing"), 1, "neither a known key name"),
    (("frobnicate",), 2, "No such command"),
    (("init", "localhost:5000/acme", "--root-key", "k", "--online-key", "k", "--expires", "root=forever"), 2, "invalid"),
])
def test_bad_input_is_one_line_with_its_exit_code(home: Path, args, code, needle):
    result = run_tufoci(*args)
    assert result.exit_code == code, result.stderr
    assert needle in one_line(result)


def test_key_generate_encrypts_and_restricts_the_private_key(home: Path):
    created = ok(run_tufoci("key", "generate", "alice"))
    name, keyid, uri = created.stdout.split()
    assert uri.startswith("encfile:")
    path = Path(uri.removeprefix("encfile:"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    ecdsa = ok(run_tufoci("key", "generate", "bob", "--type", "ecdsa-p256", "-o", "json"))
    assert '"keytype": "ecdsa"' in ecdsa.stdout
    assert ok(run_tufoci("key", "generate", "online", "--unencrypted")).stdout.split()[2].startswith("file2:")


def test_password_stdin_is_used_when_no_environment_passphrase(home: Path, monkeypatch):
    monkeypatch.delenv("TUFOCI_PASSPHRASE")
    ok(run_tufoci("key", "generate", "carol", "--password-stdin", stdin="s3cret\n"))
    no_source = run_tufoci("key", "generate", "dave", stdin="")
    assert no_source.exit_code == 2 and "no passphrase" in one_line(no_source)


@needs_registry
def test_wrong_passphrase_and_missing_key_file(registry, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    init_scope(scope, tmp_path)
    ok(run_tufoci("rotate", scope, "targets", "--threshold", "1"))  # root signs it (issue 18: removing an
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "wrong")                    # unsigned tag is refused at staging)
    wrong = run_tufoci("publish", scope)
    assert wrong.exit_code == 1 and "wrong passphrase" in one_line(wrong)
    monkeypatch.setenv("TUFOCI_PASSPHRASE", "correct horse")
    (home / "keys" / "root.pem").unlink()
    missing = run_tufoci("publish", scope)
    assert missing.exit_code == 1 and "cannot load key root" in one_line(missing)


def test_unreachable_registry_exits_13(home: Path):
    ok(run_tufoci("key", "generate", "k", "--unencrypted"))
    result = run_tufoci("init", "127.0.0.1:9/acme", "--root-key", "k", "--online-key", "k")
    assert result.exit_code == 13
    assert "cannot reach registry 127.0.0.1:9" in one_line(result)


def test_the_installed_entry_point_reports_errors_the_same_way(home: Path):
    tufoci = str(Path(sys.executable).with_name("tufoci"))
    result = subprocess.run([tufoci, "verify", "localhost:5000/acme/web:1"], capture_output=True, text=True,
                            env=dict(os.environ), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("tufoci: error: no trust pin covers")
    verbose = subprocess.run([tufoci, "-v", "publish", "localhost:5000/acme"], capture_output=True, text=True,
                             env=dict(os.environ), timeout=60)
    assert "Traceback" in verbose.stderr


def test_the_metadata_repository_cannot_be_a_target(tmp_path: Path, home: Path):
    scope = f"oci:{tmp_path}/store/acme"
    init_scope(scope, tmp_path)
    result = run_tufoci("target", "add", f"{scope}/tuf:timestamp")
    assert result.exit_code == 2 and "metadata repository" in one_line(result)


def test_version_is_the_package_version():
    from importlib.metadata import version

    assert run_tufoci("--version").stdout.strip() == f"tufoci, version {version('tufoci')}"
