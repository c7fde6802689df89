"""The attacks the core must stop, each with its documented exit code.

The attacker controls the registry: it can push any manifest or blob, move any
tag, and rewrite stored bytes. After every rejection the consumer's trusted
cache must be byte for byte what it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import init_scope, needs_registry, ok, push_test_image, run_tufoci, use_home
from tufoci.layout_spec import MANIFEST_MEDIA_TYPE, build_metadata_manifest, parse_metadata_manifest
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


def cache_snapshot(home: Path) -> dict[str, bytes]:
    """Every file of the client's trusted cache, by relative path (not the lock files beside each pin's cache,
    nor the verify fast path's record: every refresh that succeeded rewrites it, even in a call whose tag check
    then fails; it never holds more than that refresh verified, docs/security.md §9)."""
    root = home / "cache"
    files = {}
    for path in sorted(root.rglob("*")):
        if (path.is_file() or path.is_symlink()) and path.suffix not in (".lock", ".verified"):
            files[str(path.relative_to(root))] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return files


class Deployment:
    """A published scope with one signed tag, and a consumer who has verified it once."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        self.registry, self.tmp_path, self.monkeypatch = registry, tmp_path, monkeypatch
        self.maintainer, self.consumer = tmp_path / "home", tmp_path / "consumer"
        self.scope = f"{registry.host}/acme"
        self.web = f"{self.scope}/web:1.0"
        push_test_image(tmp_path, b"web release", self.web)
        use_home(monkeypatch, self.maintainer)
        self.root = init_scope(self.scope, tmp_path).root_file
        ok(run_tufoci("target", "add", self.web))
        ok(run_tufoci("publish", self.scope))
        self.signed_digest = self.metadata_store_for(self.web)
        use_home(monkeypatch, self.consumer)
        ok(run_tufoci("trust", "add", self.scope, "--root", str(self.root)))
        ok(run_tufoci("verify", self.web))

    def metadata_store_for(self, ref: str) -> str:
        repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
        return open_repository(Repository(self.registry.host, repo)).get_manifest("1.0").digest

    @property
    def tuf(self):
        return open_repository(Repository(self.registry.host, "acme/tuf"))

    def as_maintainer(self, *args: str):
        use_home(self.monkeypatch, self.maintainer)
        try:
            return run_tufoci(*args)
        finally:
            use_home(self.monkeypatch, self.consumer)

    def verify(self):
        return run_tufoci("verify", self.web)


@pytest.fixture
def deployed(registry, tmp_path: Path, home: Path, monkeypatch) -> Deployment:
    return Deployment(registry, tmp_path, monkeypatch)


def test_tag_moved_to_an_unsigned_image_exits_11_naming_both_digests(deployed, tmp_path):
    push_test_image(tmp_path, b"evil", deployed.web)
    moved = deployed.metadata_store_for(deployed.web)
    result = deployed.verify()
    assert result.exit_code == 11
    assert moved in result.stderr and deployed.signed_digest in result.stderr
    assert result.stdout == ""


def test_a_tag_nobody_signed_exits_10(deployed, tmp_path):
    unsigned = f"{deployed.scope}/web:latest-evil"
    push_test_image(tmp_path, b"evil", unsigned)
    result = run_tufoci("verify", unsigned)
    assert result.exit_code == 10
    assert "no signed target 'web:latest-evil'" in result.stderr


def test_forged_timestamp_is_rejected_and_cache_unchanged(deployed):
    before = cache_snapshot(deployed.consumer)
    current = parse_metadata_manifest(deployed.tuf.get_manifest("timestamp").data)
    forged = json.loads(deployed.tuf.get_blob(current.layer.digest, max_bytes=100_000))
    forged["signed"]["version"] += 1  # not re-signed: the signature no longer matches
    data = json.dumps(forged).encode()
    deployed.tuf.put_blob(data)
    deployed.tuf.put_manifest("timestamp", build_metadata_manifest("timestamp", 99, data), MANIFEST_MEDIA_TYPE)
    result = deployed.verify()
    assert result.exit_code == 12, result.stderr
    assert "not signed by enough of the keys" in result.stderr
    assert cache_snapshot(deployed.consumer) == before


def test_rolled_back_timestamp_is_rejected_and_cache_unchanged(deployed, tmp_path):
    old_manifest = deployed.tuf.get_manifest("timestamp").data
    push_test_image(tmp_path, b"web 1.1", f"{deployed.scope}/web:1.1")
    ok(deployed.as_maintainer("target", "add", f"{deployed.scope}/web:1.1"))
    ok(deployed.as_maintainer("publish", deployed.scope))
    ok(run_tufoci("verify", f"{deployed.scope}/web:1.1"))
    before = cache_snapshot(deployed.consumer)

    deployed.tuf.put_manifest("timestamp", old_manifest, MANIFEST_MEDIA_TYPE)  # replay the older, validly signed one
    result = deployed.verify()
    assert result.exit_code == 12
    assert "a rollback" in result.stderr or "version" in result.stderr
    assert cache_snapshot(deployed.consumer) == before


def test_altered_metadata_blob_is_rejected_and_cache_unchanged(deployed, tmp_path):
    push_test_image(tmp_path, b"web 1.1", f"{deployed.scope}/web:1.1")
    ok(deployed.as_maintainer("target", "add", f"{deployed.scope}/web:1.1"))
    ok(deployed.as_maintainer("publish", deployed.scope))
    before = cache_snapshot(deployed.consumer)

    # rewrite the new targets blob inside the registry's own storage
    snapshot_tag = parse_metadata_manifest(deployed.tuf.get_manifest("targets.3").data)
    hexdigest = snapshot_tag.layer.digest.split(":")[1]
    blob = next(deployed.registry.root.rglob(f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"))
    blob.write_bytes(blob.read_bytes().replace(b"web:1.1", b"web:6.6"))

    result = deployed.verify()
    assert result.exit_code == 12, result.stderr
    assert "hash" in result.stderr
    assert cache_snapshot(deployed.consumer) == before


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian faketime is needed")
def test_expired_timestamp_exits_12_in_a_real_process(deployed):
    before = cache_snapshot(deployed.consumer)
    tufoci = str(Path(sys.executable).with_name("tufoci"))
    env = {**os.environ, "TUFOCI_HOME": str(deployed.consumer)}
    result = subprocess.run(
        ["faketime", "-f", "+2d", tufoci, "verify", deployed.web], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 12, result.stderr
    assert "timestamp" in result.stderr and "expired" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert cache_snapshot(deployed.consumer) == before


def test_registry_down_exits_13(deployed):
    before = cache_snapshot(deployed.consumer)
    deployed.registry.stop()
    result = deployed.verify()
    assert result.exit_code == 13
    assert "cannot reach registry" in result.stderr and deployed.registry.host in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cache_snapshot(deployed.consumer) == before


def test_missing_trust_data_is_a_registry_failure(registry, tmp_path: Path, home: Path):
    other = tmp_path / "some-root.json"
    init = init_scope(f"{registry.host}/acme", tmp_path)
    other.write_bytes(init.root_file.read_bytes())
    ok(run_tufoci("trust", "add", f"{registry.host}/empty", "--root", str(other)))
    push_test_image(tmp_path, b"x", f"{registry.host}/empty/web:1")
    result = run_tufoci("verify", f"{registry.host}/empty/web:1")
    assert result.exit_code == 13
    assert "timestamp" in result.stderr
