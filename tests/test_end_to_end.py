"""The whole flow, on a real registry and on the OCI image-layout backend.

A maintainer generates keys, initialises a scope, stages tags and publishes;
a consumer on another TUFOCI_HOME pins the root and verifies. Digests are
checked against skopeo's view of the same manifests, not tufoci's own.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Scope, init_scope, needs_registry, ok, push_test_image, run_tufoci, use_home
from tufoci.reference import parse_reference

pytestmark = needs_registry


@pytest.fixture(params=["registry", "layout"])
def prefix(request, tmp_path: Path) -> str:
    """Where scopes live: a real registry, or a directory of OCI layouts."""
    if request.param == "registry":
        return request.getfixturevalue("registry").host
    return f"oci:{tmp_path / 'store'}"


def skopeo_digest(ref: str) -> str:
    """The manifest digest as skopeo sees it (independent of tufoci)."""
    transport = ref if ref.startswith("oci:") else f"docker://{ref}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", transport], check=True, capture_output=True
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def signed_web(prefix: str, tmp_path: Path, payload: bytes = b"web") -> tuple[str, str, Scope]:
    """``PREFIX/acme`` with ``web:1.0`` pushed, signed and published from the current home: (scope, ref, scope keys)."""
    scope = f"{prefix}/acme"
    web = f"{scope}/web:1.0"
    push_test_image(tmp_path, payload, web)
    signed = init_scope(scope, tmp_path)
    ok(run_tufoci("target", "add", "--publish", web))
    return scope, web, signed


def test_publish_and_verify(prefix: str, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{prefix}/acme"
    web, api = f"{scope}/web:1.0", f"{scope}/api:2.3"
    push_test_image(tmp_path, b"web 1.0", web)
    push_test_image(tmp_path, b"api 2.3", api)

    signed = init_scope(scope, tmp_path)
    assert json.loads(signed.root_file.read_text())["signed"]["_type"] == "root"

    # nothing staged yet: publish says so and fails
    empty = run_tufoci("publish", scope)
    assert empty.exit_code == 1 and "nothing staged" in empty.stderr

    added = ok(run_tufoci("target", "add", web, api, "-o", "json"))
    staged = {c["target"]: c["digest"] for c in json.loads(added.stdout)}
    assert staged == {"web:1.0": skopeo_digest(web), "api:2.3": skopeo_digest(api)}
    status = json.loads(ok(run_tufoci("status", scope, "-o", "json")).stdout)
    assert sorted(c["target"] for c in status["staged"]) == ["api:2.3", "web:1.0"]
    assert {r["role"]: r["version"] for r in status["roles"]} == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}

    published = json.loads(ok(run_tufoci("publish", scope, "-o", "json")).stdout)
    assert published["published"] == {"targets": 2, "snapshot": 2, "timestamp": 2}
    assert published["proposed"] == {}
    assert json.loads(ok(run_tufoci("status", scope, "-o", "json")).stdout)["staged"] == []

    # a consumer on another machine: pin the root file, verify
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", scope, "--root", str(signed.root_file)))
    result = ok(run_tufoci("verify", web, api))
    web_repo = str(parse_reference(web).repository)
    api_repo = str(parse_reference(api).repository)
    assert result.stdout.splitlines() == [f"{web_repo}@{skopeo_digest(web)}", f"{api_repo}@{skopeo_digest(api)}"]

    as_json = json.loads(ok(run_tufoci("verify", web, "-o", "json")).stdout)
    (entry,) = as_json["results"]
    assert entry["verified"] is True
    assert entry["target"] == "web:1.0"
    assert entry["digest"] == skopeo_digest(web)
    assert entry["pinned"] == f"{web_repo}@{entry['digest']}"
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_republish_replaces_and_removes_targets(prefix: str, tmp_path: Path, home: Path, monkeypatch):
    scope, web, signed = signed_web(prefix, tmp_path, b"one")
    first = skopeo_digest(web)

    push_test_image(tmp_path, b"two", web)  # the tag moves to a new release ...
    ok(run_tufoci("target", "add", web))  # ... and the maintainer signs it
    ok(run_tufoci("publish", scope))

    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", scope, "--root", str(signed.root_file)))
    assert ok(run_tufoci("verify", web)).stdout.strip().endswith(skopeo_digest(web))
    assert skopeo_digest(web) != first

    use_home(monkeypatch, home)
    ok(run_tufoci("target", "remove", scope, "web:1.0"))
    ok(run_tufoci("publish", scope))
    use_home(monkeypatch, tmp_path / "consumer")
    gone = run_tufoci("verify", web)
    assert gone.exit_code == 10 and "no signed target 'web:1.0'" in gone.stderr


def test_verify_by_digest_checks_the_signed_digest(prefix: str, tmp_path: Path, home: Path):
    scope, web, _ = signed_web(prefix, tmp_path)
    digest = skopeo_digest(web)
    assert ok(run_tufoci("verify", f"{web}@{digest}")).stdout.strip().endswith(digest)
    wrong = run_tufoci("verify", f"{web}@sha256:{'0' * 64}")
    assert wrong.exit_code == 11 and digest in wrong.stderr


def test_trust_add_by_root_sha256_finds_the_root_in_the_registry(prefix: str, tmp_path: Path, home: Path, monkeypatch):
    scope, web, signed = signed_web(prefix, tmp_path)
    sha = hashlib.sha256(signed.root_file.read_bytes()).hexdigest()

    use_home(monkeypatch, tmp_path / "consumer")
    wrong = run_tufoci("trust", "add", scope, "--root-sha256", "f" * 64)
    assert wrong.exit_code == 12
    ok(run_tufoci("trust", "add", scope, "--root-sha256", sha))
    ok(run_tufoci("verify", web))


def test_audit_log_records_who_did_what(prefix: str, tmp_path: Path, home: Path, monkeypatch):
    monkeypatch.setenv("TUFOCI_ACTOR", "alice@ci")
    scope, web, _ = signed_web(prefix, tmp_path)
    log = json.loads(ok(run_tufoci("log", scope, "-o", "json")).stdout)
    actions = [entry["action"] for entry in log]
    assert actions[:1] == ["trust-add"] and "init" in actions and actions[-2:] == ["stage-add", "publish"]
    assert {entry["actor"] for entry in log} == {"alice@ci"}
    assert log[-1]["details"]["changes"][0]["digest"] == skopeo_digest(web)


def test_digests_supplied_by_the_build(prefix: str, tmp_path: Path, home: Path, monkeypatch):
    scope = f"{prefix}/acme"
    web = f"{scope}/web:1.0"
    push_test_image(tmp_path, b"web", web)
    signed = init_scope(scope, tmp_path)
    digest = skopeo_digest(web)
    size = len(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                               web if web.startswith("oci:") else f"docker://{web}"],
                              check=True, capture_output=True).stdout)
    records = tmp_path / "build.txt"
    records.write_text(f"# from the build\n{web} {digest} {size}\n")
    # staged and published in one process (--publish): what a CI job runs after the push
    done = json.loads(ok(run_tufoci("target", "add", "--from-file", str(records), "--publish", "-o", "json")).stdout)
    assert done["staged"][0]["digest"] == digest and done["staged"][0]["length"] == size
    (published,) = done["published"]
    assert published["published"] == {"targets": 2, "snapshot": 2, "timestamp": 2}
    assert "nothing staged" in run_tufoci("publish", scope).stderr  # nothing left behind
    use_home(monkeypatch, tmp_path / "consumer")
    ok(run_tufoci("trust", "add", scope, "--root", str(signed.root_file)))
    assert ok(run_tufoci("verify", web)).stdout.strip().endswith(digest)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{web} sha256:1234 12\n")
    assert run_tufoci("target", "add", "--from-file", str(bad)).exit_code == 2
    both = run_tufoci("target", "add", "--from-file", "-", "--publish", "--password-stdin", stdin="")
    assert both.exit_code == 2 and "both read standard input" in both.stderr
