"""Every signed target through the delegation graph, digest-only references, and a Verifier without state.db.

Hermetic: the trust repositories live in OCI image-layout directories, targets
are staged from records (name, digest, length) with no image behind them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Machine, init_scope_on
from tufoci.client.trust_pins import make_pin
from tufoci.client.verify import Verifier
from tufoci.errors import MetadataRejectedError, NotSignedError
from tufoci.reference import parse_reference


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def publish_records(tmp_path: Path, monkeypatch, name: str, delegation: tuple[str, ...],
                    records: Callable[[str], dict[str | None, str]]) -> tuple[str, Machine, Path]:
    """A layout scope with one delegation (``delegate SCOPE *delegation``), targets staged from records
    per role (None: top-level targets), published. Returns (scope, maintainer, root file)."""
    scope = f"oci:{tmp_path / 'store'}/{name}"
    maintainer = Machine("maintainer", tmp_path, monkeypatch)
    root = init_scope_on(maintainer, scope, tmp_path)
    role = delegation[0]
    maintainer.new_key(role, "--unencrypted")
    maintainer.ok("delegate", scope, role, "--key", role, *delegation[1:])
    for target_role, lines in records(scope).items():
        path = tmp_path / f"{target_role or 'targets'}.txt"
        path.write_text(lines)
        maintainer.ok("target", "add", *(("--role", target_role) if target_role else ()), "--from-file", str(path))
    maintainer.ok("publish", scope)
    return scope, maintainer, root


@pytest.fixture
def published(tmp_path: Path, home: Path, monkeypatch):
    """``acme`` with a path delegation (team/*) and several tags per digest, pinned on a cluster machine."""
    scope, maintainer, root = publish_records(tmp_path, monkeypatch, "acme", ("team", "--path", "team/*"), lambda s: {
        None: f"{s}/web:1.0 {digest(1)} 100\n{s}/web:latest {digest(1)} 100\n{s}/web:2.0 {digest(2)} 200\n"
              f"{s}/db:1 {digest(1)} 100\n",
        "team": f"{s}/team/app:1 {digest(3)} 300\n"})
    cluster = Machine("cluster", tmp_path, monkeypatch)
    cluster.ok("trust", "add", scope, "--root", str(root))
    return scope, maintainer, cluster, root


def test_signed_targets_lists_every_role_and_who_signed(published, tmp_path):
    scope, _, cluster, root = published
    pin = make_pin(scope, root.read_bytes(), directory=str(tmp_path / "pins"))
    signed = Verifier(pins=[pin], cache=str(tmp_path / "cache")).signed_targets(pin)
    assert {name: "sha256:" + info.hashes["sha256"] for name, info in signed.targets.items()} == {
        "web:1.0": digest(1), "web:latest": digest(1), "web:2.0": digest(2), "db:1": digest(1),
        "team/app:1": digest(3)}
    assert signed.signers["team/app:1"] == {"team": digest(3)}
    assert signed.signers["web:1.0"] == {"targets": digest(1)}
    assert signed.tags_signing("web", digest(1)) == ["1.0", "latest"]
    assert signed.tags_signing("web", digest(3)) == []
    assert signed.tags_signing("team/app", digest(3)) == ["1"]
    # no state.db and no TUFOCI_HOME were touched: only the given cache directory
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "cache"]


def test_hashed_bins_are_walked_too(tmp_path: Path, home: Path, monkeypatch):
    scope, _, root = publish_records(tmp_path, monkeypatch, "bins", ("bins", "--bins", "8"), lambda s: {
        None: "".join(f"{s}/app:{n} {digest(n % 5)} 10\n" for n in range(40))})
    pin = make_pin(scope, root.read_bytes(), directory=str(tmp_path / "pins"))
    signed = Verifier(pins=[pin], cache=str(tmp_path / "cache")).signed_targets(pin)
    assert len(signed.targets) == 40
    assert signed.tags_signing("app", digest(2)) == sorted(str(n) for n in range(40) if n % 5 == 2)


def test_verify_by_digest_names_the_signed_tags(published):
    scope, _, cluster, _ = published
    result = cluster.ok("verify", "--skip-registry-check", f"{scope}/web@{digest(1)}")
    assert result.stdout == f"{scope}/web@{digest(1)}\n"
    assert "signed as tag(s) 1.0, latest" in result.stderr
    out = json.loads(cluster.ok("verify", "--skip-registry-check", "-o", "json", f"{scope}/web@{digest(2)}",
                                f"{scope}/team/app@{digest(3)}").stdout)["results"]
    assert [(r["verified"], r["tags"], r["digest"]) for r in out] == [(True, ["2.0"], digest(2)),
                                                                      (True, ["1"], digest(3))]

    unsigned = cluster("verify", "--skip-registry-check", f"{scope}/web@{digest(3)}")  # signed, but for team/app
    assert unsigned.exit_code == 10 and f"no signed tag of {scope[:4]}" in unsigned.stderr
    moved = cluster("verify", "--skip-registry-check", f"{scope}/web:2.0@{digest(1)}")
    assert moved.exit_code == 11 and f"signed as {digest(2)}" in moved.stderr
    assert cluster.ok("verify", "--skip-registry-check", f"{scope}/web:2.0@{digest(2)}").stdout.strip() \
        == f"{scope}/web@{digest(2)}"


def test_a_pinned_root_of_the_wrong_hash_is_refused(published, tmp_path):
    scope, _, _, root = published
    with pytest.raises(MetadataRejectedError):
        make_pin(scope, root.read_bytes(), directory=str(tmp_path / "pins"), expected_sha256="0" * 64)
    with pytest.raises(TypeError):
        Verifier(pins=[])


def test_digest_only_through_the_library(published, tmp_path):
    scope, _, _, root = published
    pin = make_pin(scope, root.read_bytes(), directory=str(tmp_path / "pins"))
    verifier = Verifier(pins=[pin], cache=str(tmp_path / "cache"), check_registry=False)
    good, bad = verifier.verify([f"{scope}/db@{digest(1)}", f"{scope}/db@{digest(2)}"])
    assert good.image.tags == ("1",) and good.image.pinned == f"{scope}/db@{digest(1)}"
    assert isinstance(bad.error, NotSignedError)


@pytest.mark.parametrize("text, normalised", [
    ("nginx", "docker.io/library/nginx:latest"),
    ("foo:5000", "docker.io/library/foo:5000"),  # a tag, not a port: there is no '/'
    ("foo:5000/x", "foo:5000/x:latest"),
    ("localhost/x", "localhost/x:latest"),
    ("[::1]:5000/acme/web:1", "[::1]:5000/acme/web:1"),
    ("index.docker.io/acme/web", "docker.io/acme/web:latest"),
    ("docker.io/nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64),
])
def test_references_are_normalised_as_containerd_does(text, normalised):
    assert str(parse_reference(text)) == normalised


def test_uppercase_repositories_are_refused():
    from tufoci.errors import InvalidReferenceError

    with pytest.raises(InvalidReferenceError):
        parse_reference("r.example/Acme/web:1")
    assert str(parse_reference("R.EXAMPLE/acme/web:1")) == "R.EXAMPLE/acme/web:1"  # a registry may be upper case
