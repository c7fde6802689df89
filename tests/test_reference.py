"""Reference parsing follows distribution/reference, and target names are scope-relative."""

from __future__ import annotations

import os

import pytest

from tufoci.errors import InvalidReferenceError
from tufoci.reference import Repository, parse_reference, parse_repository, reference_for_target, target_name

PARSE_CASES = [
    # text, registry, path, tag, digest
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("acme/web", "docker.io", "acme/web", "latest", None),
    ("localhost/web:1", "localhost", "web", "1", None),
    ("localhost:5000/acme/web:1.0", "localhost:5000", "acme/web", "1.0", None),
    ("127.0.0.1:5000/acme/web", "127.0.0.1:5000", "acme/web", "latest", None),
    ("ghcr.io/org/team/app:v1.2.3-rc_1", "ghcr.io", "org/team/app", "v1.2.3-rc_1", None),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
    ("reg.example:443/a__b/c-d.e:t", "reg.example:443", "a__b/c-d.e", "t", None),
    ("r.io/a@sha256:" + "a" * 64, "r.io", "a", None, "sha256:" + "a" * 64),
    ("r.io/a:1@sha256:" + "b" * 64, "r.io", "a", "1", "sha256:" + "b" * 64),
]


@pytest.mark.parametrize("text,registry,path,tag,digest", PARSE_CASES)
def test_parse_reference(text, registry, path, tag, digest):
    ref = parse_reference(text)
    assert (ref.repository.registry, ref.repository.path, ref.tag, ref.digest) == (registry, path, tag, digest)


BAD_REFERENCES = [
    "",
    "r.io/Acme/web",
    "r.io/a//b",
    "r.io/a:bad tag",
    "r.io/a:-leading",
    "r.io/a@sha256:short",
    "r.io/a@md5:" + "a" * 32,
    "r.io/" + "a" * 300,
    "r.io/a/../b",
    "oci:",
    "oci:/tmp/x@sha256:nothex",
]


@pytest.mark.parametrize("text", BAD_REFERENCES)
def test_bad_references_raise_invalid_reference(text):
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_layout_references_are_absolute_paths_with_skopeo_syntax(tmp_path):
    ref = parse_reference(f"oci:{tmp_path}/acme/web:1.0")
    assert ref.repository == Repository(None, f"{tmp_path}/acme/web")
    assert ref.tag == "1.0"
    relative = parse_reference("oci:store/web")
    assert relative.repository.path == os.path.abspath("store/web") and relative.tag == "latest"


TARGET_CASES = [
    ("localhost:5000/acme", "localhost:5000/acme/web:1.0", "web:1.0"),
    ("localhost:5000/acme", "localhost:5000/acme/web/frontend:1.4", "web/frontend:1.4"),
    ("r.io/org/team", "r.io/org/team/app:v2", "app:v2"),
]


@pytest.mark.parametrize("scope,ref,name", TARGET_CASES)
def test_target_names_are_relative_and_invert(scope, ref, name):
    scope_repo = parse_repository(scope)
    assert target_name(parse_reference(ref), scope_repo) == name
    assert str(reference_for_target(name, scope_repo)) == ref


def test_target_name_is_registry_independent():
    a = target_name(parse_reference("one.example/acme/web:1"), parse_repository("one.example/acme"))
    b = target_name(parse_reference("mirror.local/cache/acme/web:1"), parse_repository("mirror.local/cache/acme"))
    assert a == b == "web:1"


@pytest.mark.parametrize("scope,ref", [
    ("localhost:5000/acme", "localhost:5001/acme/web:1"),  # other registry
    ("localhost:5000/acme", "localhost:5000/acmeweb:1"),  # prefix of a component is not inside
    ("localhost:5000/acme", "localhost:5000/acme:1"),  # the scope itself is not a target
])
def test_references_outside_the_scope_are_refused(scope, ref):
    with pytest.raises(InvalidReferenceError):
        target_name(parse_reference(ref), parse_repository(scope))
