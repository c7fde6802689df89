"""The verdict on one image, as a table: pure, no registry, the clock passed in."""

from __future__ import annotations

import datetime

import pytest
from tuf.api.metadata import TargetFile

from tufoci.client.signed_targets import SignedTargets
from tufoci.enforce.decision import Reason, decide
from tufoci.enforce.policy import parse_policy
from tufoci.enforce.view import ScopeView, ViewFailure

A, B, C = ("sha256:" + c * 64 for c in "abc")
NOW = 1_800_000_000.0
SCOPE = "r.example/acme"

POLICY = parse_policy({
    "apiVersion": "tufoci.dev/v1", "kind": "AdmissionPolicy", "freshness": "60s",
    "trust": [{"scope": SCOPE, "root": "/r.json"}, {"scope": "r.example/down", "root": "/d.json"},
              {"scope": "r.example/bad", "root": "/b.json"}],
    "rules": [
        {"images": ["r.example/acme/qa/**"], "scope": SCOPE, "requiredRoles": ["qa"]},
        {"images": ["r.example/acme/fixed/*"], "scope": SCOPE, "mutate": False},
        {"images": ["r.example/acme/**"], "scope": SCOPE},
        {"images": ["r.example/down/**"], "scope": "r.example/down"},
        {"images": ["r.example/bad/**"], "scope": "r.example/bad"},
    ],
    "exempt": [{"images": ["registry.k8s.io/**"]}],
}, "policy.yaml")


def target(digest: str) -> TargetFile:
    return TargetFile(100, {"sha256": digest.removeprefix("sha256:")}, "x")


def view(*, loaded_at: float = NOW - 10, expires_in: float = 3600) -> ScopeView:
    targets = {"web:1.0": A, "web:latest": A, "web:2.0": B, "qa/app:1": A, "qa/app:2": B, "fixed/db:1": C}
    signers = {name: {"targets": digest} for name, digest in targets.items()}
    signers["qa/app:1"]["qa"] = A  # qa signed app:1 as the same digest; app:2 it signed differently
    signers["qa/app:2"]["qa"] = C
    expires = datetime.datetime.fromtimestamp(NOW + expires_in, datetime.UTC)
    return ScopeView(SignedTargets(SCOPE, {n: target(d) for n, d in targets.items()}, signers, expires), loaded_at)


VIEWS = {
    SCOPE: view(),
    "r.example/down": ViewFailure("trust-data-unreachable", "trust data of r.example/down unreachable: refused"),
    "r.example/bad": ViewFailure("metadata-rejected", "trust data of r.example/bad rejected: rollback"),
}

CASES = [
    # image, require_digest, allowed, reason, pinned, message fragment
    ("r.example/acme/web:1.0", False, True, Reason.SIGNED, f"r.example/acme/web@{A}", ""),
    ("r.example/acme/web", False, True, Reason.SIGNED, f"r.example/acme/web@{A}", ""),  # :latest
    (f"r.example/acme/web:2.0@{B}", False, True, Reason.SIGNED, f"r.example/acme/web@{B}", ""),
    (f"r.example/acme/web:2.0@{A}", False, False, Reason.MOVED_TAG, None, f"is signed as {B}"),
    (f"r.example/acme/web@{B}", False, True, Reason.SIGNED, f"r.example/acme/web@{B}", "signed as 2.0"),
    (f"r.example/acme/web@{A}", True, True, Reason.SIGNED, f"r.example/acme/web@{A}", "signed as 1.0, latest"),
    (f"r.example/acme/web@{C}", False, False, Reason.NOT_SIGNED, None, "no signed tag"),
    (f"r.example/acme/other@{A}", False, False, Reason.NOT_SIGNED, None, "no signed tag"),
    ("r.example/acme/web:3.0", False, False, Reason.NOT_SIGNED, None, "web:3.0 is not signed"),
    ("r.example/acme/web:1.0", True, False, Reason.NOT_PINNED, f"r.example/acme/web@{A}", "not pinned"),
    ("r.example/acme/fixed/db:1", False, False, Reason.NOT_PINNED, f"r.example/acme/fixed/db@{C}", "deploy"),
    (f"r.example/acme/fixed/db:1@{C}", False, True, Reason.SIGNED, f"r.example/acme/fixed/db@{C}", ""),
    ("r.example/acme/qa/app:1", False, True, Reason.SIGNED, f"r.example/acme/qa/app@{A}", ""),
    ("r.example/acme/qa/app:2", False, False, Reason.NOT_SIGNED, None, "required role(s) qa"),
    (f"r.example/acme/qa/app@{B}", False, False, Reason.NOT_SIGNED, None, "every required role (qa)"),
    ("registry.k8s.io/pause:3.9", True, True, Reason.EXEMPT, None, "exempt"),
    ("nginx", False, False, Reason.NO_POLICY, None, "docker.io/library/nginx"),
    ("r.example/acmeevil/web:1.0", False, False, Reason.NO_POLICY, None, ""),
    ("r.example/acme/Web:1.0", False, False, Reason.INVALID_REFERENCE, None, "invalid repository path"),
    ("r.example/down/web:1", False, False, Reason.UNREACHABLE, None, "unreachable"),
    ("r.example/bad/web:1", False, False, Reason.METADATA_REJECTED, None, "rollback"),
]


@pytest.mark.parametrize("image, require_digest, allowed, reason, pinned, fragment", CASES)
def test_decision_table(image, require_digest, allowed, reason, pinned, fragment):
    verdict = decide(image, POLICY, VIEWS.__getitem__, now=NOW, require_digest=require_digest)
    assert (verdict.allowed, verdict.reason, verdict.pinned) == (allowed, reason, pinned), verdict
    assert verdict.message.startswith(f"{image}: ") and fragment in verdict.message
    assert verdict.mutate == (allowed and reason is Reason.SIGNED and "fixed" not in image and not require_digest)


@pytest.mark.parametrize("loaded_at, expires_in, stale", [
    (NOW - 59, 3600, False),
    (NOW - 60, 3600, True),  # older than W: fail closed
    (NOW - 1, 0, True),  # a role expired: fail closed at once, whatever the window
    (NOW - 1, -5, True),
])
def test_a_stale_view_fails_closed_with_the_time(loaded_at, expires_in, stale):
    views = {SCOPE: view(loaded_at=loaded_at, expires_in=expires_in)}
    verdict = decide("r.example/acme/web:1.0", POLICY, views.__getitem__, now=NOW)
    assert verdict.allowed is not stale
    if stale:
        assert verdict.reason is Reason.STALE and "trust data stale since 20" in verdict.message
