"""Trust data moves with the images: skopeo sync to another registry, verify there with the same root."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import init_scope, needs_registry, ok, push_test_image, run_tufoci, use_home
from tests.support.images import skopeo_sync

pytestmark = needs_registry


def test_skopeo_sync_to_a_second_registry_and_a_renamed_namespace(registry, registry2, tmp_path: Path, home: Path,
                                                                  monkeypatch):
    scope = f"{registry.host}/acme"
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    push_test_image(tmp_path, b"api", f"{scope}/api:2.3")
    signed = init_scope(scope, tmp_path)
    ok(run_tufoci("target", "add", f"{scope}/web:1.0", f"{scope}/api:2.3"))
    ok(run_tufoci("publish", scope))
    original = ok(run_tufoci("verify", f"{scope}/web:1.0", f"{scope}/api:2.3")).stdout.split()
    digests = [line.split("@")[1] for line in original]

    # same namespace on another registry, and a mirror under another namespace
    for prefix in (f"{registry2.host}/acme", f"{registry2.host}/mirror/cache/acme"):
        for repo in ("web", "api", "tuf"):
            skopeo_sync(f"{scope}/{repo}", prefix)
        use_home(monkeypatch, tmp_path / f"consumer-{prefix.count('/')}")
        ok(run_tufoci("trust", "add", prefix, "--root", str(signed.root_file)))
        mirrored = ok(run_tufoci("verify", f"{prefix}/web:1.0", f"{prefix}/api:2.3")).stdout.split()
        assert mirrored == [f"{prefix}/web@{digests[0]}", f"{prefix}/api@{digests[1]}"]


def test_mirror_verification_survives_a_tampered_mirror(registry, registry2, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{registry.host}/acme"
    push_test_image(tmp_path, b"web", f"{scope}/web:1.0")
    signed = init_scope(scope, tmp_path)
    ok(run_tufoci("target", "add", f"{scope}/web:1.0"))
    ok(run_tufoci("publish", scope))
    mirror = f"{registry2.host}/acme"
    for repo in ("web", "tuf"):
        skopeo_sync(f"{scope}/{repo}", mirror)
    push_test_image(tmp_path, b"mirror operator's own build", f"{mirror}/web:1.0")
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", mirror, "--root", str(signed.root_file)))
    assert run_tufoci("verify", f"{mirror}/web:1.0").exit_code == 11


def test_skopeo_copy_all_of_a_multi_arch_index_verifies_on_the_mirror(registry, registry2, tmp_path: Path, home: Path,
                                                                       monkeypatch):
    from tests.support.images import build_index, push_image, skopeo_copy

    scope = f"{registry.host}/acme"
    push_image(build_index(tmp_path / "index"), "latest", f"{scope}/multi:1.0", all_platforms=True)
    signed = init_scope(scope, tmp_path)
    added = ok(run_tufoci("target", "add", f"{scope}/multi:1.0", "-o", "json"))
    assert '"x-tufoci-platforms"' in added.stdout
    ok(run_tufoci("publish", scope))
    mirror = f"{registry2.host}/acme"
    skopeo_copy(f"docker://{scope}/multi:1.0", f"docker://{mirror}/multi:1.0", all_platforms=True)
    skopeo_sync(f"{scope}/tuf", mirror)
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", mirror, "--root", str(signed.root_file)))
    assert ok(run_tufoci("verify", f"{mirror}/multi:1.0")).stdout.strip().startswith(f"{mirror}/multi@sha256:")
