"""Every AdmissionReview fixture kind, through the apiserver's rules, against the real server and registry.

``tufoci admission serve`` over real TLS (test CA, SAN ``tufoci-admission.tufoci-system.svc``), a real
registry with images signed in two trust scopes, called ONLY through
:class:`tests.support.apiserver.ApiserverClient`: every answer passes kube-apiserver's acceptance rules,
every patch is applied and every patched object validated against the Kubernetes schema. Each fixture
of :mod:`tests.support.admission_reviews` goes to ``/mutate`` and ``/validate`` in enforce and in warn
mode; the patched images must be exactly the signed digests, the annotation must hold the originals,
and ``/validate`` must admit what ``/mutate`` produced. (The attacks go through the same client in
tests/test_enforce_attacks.py.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Machine, init_scope_on, needs_registry, push_test_image
from tests.support import admission_reviews as ar
from tests.support.admission_server import WebhookProcess, write_policy
from tests.support.apiserver import AdmissionResult
from tests.test_admission_server import World
from tufoci.enforce.admission import ORIGINAL_IMAGES
from tufoci.reference import Repository
from tufoci.store import open_repository

pytestmark = needs_registry


class TwoScopes(World):
    """World's ``acme`` (``web:1.0`` signed, ``unsigned:1.0`` not) plus ``acme/api:2.0`` and a second scope
    ``beta`` with ``tool:1.0``, each signed by its own maintainer."""

    def __init__(self, registry, tmp_path: Path, monkeypatch):
        super().__init__(registry, tmp_path, monkeypatch)
        self.api = f"{self.scope}/api:2.0"
        push_test_image(tmp_path, b"api", self.api)
        self.maintainer.ok("target", "add", "--publish", self.api)
        self.beta = f"{registry.host}/beta"
        beta_maintainer = Machine("beta-maintainer", tmp_path, monkeypatch)
        (tmp_path / "beta").mkdir()
        self.beta_root = init_scope_on(beta_maintainer, self.beta, tmp_path / "beta")
        self.tool = f"{self.beta}/tool:1.0"
        push_test_image(tmp_path, b"tool", self.tool)
        beta_maintainer.ok("target", "add", "--publish", self.tool)
        self.signed = {ref: self._pinned(ref) for ref in (self.web, self.api, self.tool)}

    def _pinned(self, reference: str) -> str:
        name, tag = reference.rsplit(":", 1)
        registry, repository = name.split("/", 1)
        return f"{name}@{open_repository(Repository(registry, repository)).get_manifest(tag).digest}"

    def policy(self, name: str = "policy.yaml", **options) -> Path:
        return write_policy(self.tmp_path / name, {self.scope: self.root, self.beta: self.beta_root}, **options)


@pytest.fixture
def world(registry, tmp_path: Path, home: Path, monkeypatch) -> TwoScopes:
    return TwoScopes(registry, tmp_path, monkeypatch)


def _fixtures(w: TwoScopes) -> dict[str, dict[str, Any]]:
    """Every fixture kind, with signed images given by tag (so ``/mutate`` has something to pin)."""
    digest = w.signed[w.web].split("@")[1]
    cases = {
        "pod": ar.pod_create([w.web, w.api], init_images=[w.api], sidecar_images=[w.web],
                             ephemeral_images=[w.tool]),
        "generate-name": ar.pod_generate_name([w.web]),
        # the stored Pod was admitted pinned; kubectl debug adds an ephemeral container by tag
        "ephemeral-debug": ar.ephemeral_debug([w.signed[w.web]], [w.tool]),
        "dry-run": ar.pod_create([w.web], dry_run=True),
        "tag+digest": ar.pod_create([ar.tag_and_digest(w.web, digest)]),
        "digest-only": ar.pod_create([ar.digest_only(w.web, digest)]),
        "two-scopes": ar.pod_create([w.web, w.tool]),
    }
    for kind in ar.WORKLOADS:
        cases[f"{kind}-create"] = ar.workload_review(kind, [w.web, w.tool], init_images=[w.api])
        cases[f"{kind}-update"] = ar.workload_review(kind, [w.api], operation="UPDATE", old_images=[w.web])
    return cases


def _images(obj: dict[str, Any], review: dict[str, Any]) -> dict[str, str]:
    locations = ar.image_locations(obj)
    if review["request"].get("subResource") == "ephemeralcontainers":
        return {p: i for p, i in locations.items() if "/ephemeralContainers/" in p}
    return locations


def _check_pinned(w: TwoScopes, review: dict[str, Any], result: AdmissionResult) -> None:
    """Every image of the patched object is exactly its signed digest; the annotation holds the originals."""
    original = _images(review["request"]["object"], review)
    patched = _images(result.object, review)
    assert patched.keys() == original.keys()
    changed = {}
    for pointer, image in original.items():
        expected = w.signed.get(image, image)  # tag+digest and digest-only are rewritten to the plain pin
        if "@" in image:
            expected = w.signed[w.web]
        assert patched[pointer] == expected, (pointer, image)
        if expected != image:
            changed[pointer] = image
    if not changed:
        assert result.patch is None
    else:
        assert json.loads(result.object["metadata"]["annotations"][ORIGINAL_IMAGES]) == changed
        assert {op["path"] for op in result.patch} == {*changed, "/metadata/annotations"}
    assert result.warnings == ()


def _exercise(server: WebhookProcess, w: TwoScopes, *, warn: bool) -> None:
    with server.apiserver() as client:
        for name, review in _fixtures(w).items():
            mutated = client.mutate(review)
            assert mutated.allowed, (name, mutated.message)
            _check_pinned(w, review, mutated)
            # validate after mutate: the stored object is admitted, untouched
            after = dict(review, request={**review["request"], "object": mutated.object})
            validated = client.validate(after)
            assert validated.allowed and validated.patch is None and validated.warnings == (), name
            # validate alone: tags are not pinned (the digest-only and tag+digest forms are)
            alone = client.validate(review)
            pinned_already = all("@" in i for i in _images(review["request"]["object"], review).values())
            if pinned_already:
                assert alone.allowed and alone.warnings == (), name
            elif warn:
                assert alone.allowed and alone.patch is None and alone.warnings, name
                assert all("not pinned to a digest" in text for text in alone.warnings), name
            else:
                assert not alone.allowed and alone.code == 403, name
                assert "not pinned to a digest" in alone.message, name
        for name, review in (("being-deleted", ar.pod_being_deleted([w.unsigned])), ("delete", ar.pod_delete([w.unsigned]))):
            for call in (client.mutate, client.validate):
                result = call(review)
                assert result.allowed and result.patch is None and result.warnings == (), name


def _unsigned_denied(server: WebhookProcess, w: TwoScopes, *, warn: bool) -> None:
    """An unsigned image in any fixture kind is denied (enforce) or admitted unpatched with a warning (warn)."""
    builders: list[Callable[[], dict[str, Any]]] = [
        lambda: ar.pod_create([w.web, w.unsigned]),
        lambda: ar.ephemeral_debug([w.signed[w.web]], [w.unsigned]),
        *(lambda kind=kind: ar.workload_review(kind, [w.unsigned]) for kind in ar.WORKLOADS),
    ]
    expected = f"{w.unsigned}: unsigned:1.0 is not signed in {w.scope}"
    with server.apiserver() as client:
        for build in builders:
            review = build()
            for call in (client.mutate, client.validate):
                result = call(review)
                if warn:
                    assert result.allowed and expected in result.warnings
                    if result.patch:  # the signed images are still pinned; the unsigned one is left as written
                        assert w.unsigned in ar.image_locations(result.object).values()
                else:
                    assert not result.allowed and expected in result.message and result.code == 403


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_every_fixture_kind_through_the_apiserver_rules(world, mode):
    server = world.start(mode, mode=mode)
    try:
        _exercise(server, world, warn=mode == "warn")
        _unsigned_denied(server, world, warn=mode == "warn")
        assert not server.log_events("internal-error")
    finally:
        server.stop()



def test_warn_mode_warnings_reach_the_user_unaltered(world):
    """Warnings the apiserver would drop or cut (over 256 characters each, 4,096 in all) are never sent:
    each is cut to what the apiserver delivers, and past the total one warning says how many more there are."""
    long_name = f"{world.scope}/" + "/".join(["deep"] * 40) + "/app:1.0"  # a 220-character reference
    many = [f"{world.scope}/unsigned-{i:02d}:1.0" for i in range(60)]
    server = world.start("warn", mode="warn")
    try:
        with server.apiserver() as client:
            result = client.validate(ar.pod_create([long_name, *many]))  # judged by the warnings rule
            assert result.allowed and result.warnings[0].startswith(f"{long_name}: ")
            assert len(result.warnings[0]) <= 256 and sum(map(len, result.warnings)) <= 4096
            assert result.warnings[-1].endswith("more images not verified; see the webhook's log")
    finally:
        server.stop()
