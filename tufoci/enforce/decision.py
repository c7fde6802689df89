"""The verdict on one image: pure, from the policy and the scope's verified view.

No I/O and no clock of its own (``now`` is passed in), so every case is a row
in a table test. The reasons are a small fixed vocabulary, shared by the
admission webhook's messages and metrics and by the verifying mirror:

- ``signed``: admitted; ``pinned`` is ``registry/repository@sha256:<signed digest>``
- ``exempt``: an exemption of the policy matches; nothing is checked
- ``no-policy``: no rule and no exemption matches (denied: nothing is admitted by default)
- ``invalid-reference``: not a reference containerd would pull
- ``not-signed``: the tag (or, digest-only, any tag signing that digest) is not signed,
  or a required role has not signed the same digest
- ``not-pinned``: the caller demands a digest (``/validate``, rules with ``mutate: false``)
  and the image names only a tag; the message says which digest to deploy
- ``moved-tag``: tag+digest whose digest is not the tag's signed digest
- ``metadata-rejected``: the trust data failed verification (signature, rollback, expiry…)
- ``trust-data-unreachable``: the trust data could not be loaded in time
- ``stale``: the view is older than the freshness window, or a role expired
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from tufoci.enforce.policy import Exemption, Policy, Rule
from tufoci.enforce.view import REJECTED, UNREACHABLE, ScopeView, ViewFailure
from tufoci.errors import InvalidReferenceError
from tufoci.reference import Reference, parse_reference, parse_repository

# References and scopes are immutable and repeat across admissions (the same Pods, again and again):
# parse each once (bounded, so a flood of distinct names only churns the cache)
_parse_reference = functools.lru_cache(maxsize=4096)(parse_reference)
_parse_scope = functools.lru_cache(maxsize=1024)(parse_repository)


class Reason(str, Enum):
    SIGNED = "signed"
    EXEMPT = "exempt"
    NO_POLICY = "no-policy"
    INVALID_REFERENCE = "invalid-reference"
    NOT_SIGNED = "not-signed"
    NOT_PINNED = "not-pinned"
    MOVED_TAG = "moved-tag"
    METADATA_REJECTED = REJECTED
    UNREACHABLE = UNREACHABLE
    STALE = "stale"


@dataclass(frozen=True)
class Verdict:
    """What to do with one image as written."""

    image: str
    allowed: bool
    reason: Reason
    message: str
    pinned: str | None = None  # what to run instead (signed digest), when allowed and signed
    mutate: bool = False  # whether the rule asks for ``image`` to be rewritten to ``pinned``


def decide(
    image: str,
    policy: Policy,
    view_of: Callable[[str], ScopeView | ViewFailure],
    *,
    now: float,
    require_digest: bool = False,
) -> Verdict:
    """Judge ``image`` (as written in the object) under ``policy``.

    ``view_of(scope)`` gives the scope's view (only asked for images a rule
    governs). ``require_digest`` is for callers that cannot rewrite: a tag-only
    reference is then denied ``not-pinned``.
    """
    try:
        reference = _parse_reference(image)
    except InvalidReferenceError as e:
        return Verdict(image, False, Reason.INVALID_REFERENCE, f"{image}: {e}")
    match = policy.match(reference)
    if isinstance(match, Exemption):
        return Verdict(image, True, Reason.EXEMPT, f"{image}: exempt by policy")
    if match is None:
        return Verdict(image, False, Reason.NO_POLICY, f"{image}: no policy rule covers {reference.repository}")
    view = view_of(match.scope)
    if isinstance(view, ViewFailure):
        return Verdict(image, False, Reason(view.reason), f"{image}: {view.message}")
    return judge(image, reference, match, view, now=now, window=policy.freshness,
                 require_digest=require_digest or not match.mutate)


def judge(
    image: str,
    reference: Reference,
    rule: Rule,
    view: ScopeView,
    *,
    now: float,
    window: float,
    require_digest: bool,
) -> Verdict:
    """The verdict for a reference a rule governs, from that rule's scope view.

    ``require_digest``: a tag-only reference is denied ``not-pinned`` (nothing may rewrite it).
    """
    stale = view.stale_since(now, window)
    if stale is not None:
        return Verdict(image, False, Reason.STALE, f"{image}: trust data stale since {stale}")
    signed = view.signed
    relative = reference.repository.relative_to(_parse_scope(rule.scope))
    if relative is None:  # the policy checks patterns lie inside their scope; never admit on a slip
        return Verdict(image, False, Reason.NO_POLICY, f"{image}: outside the scope {rule.scope}")
    repository = str(reference.repository)

    if reference.tag is None:  # digest only: admitted if some signed tag signs that digest
        digest = reference.digest or ""
        tags = [t for t in signed.tags_signing(relative, digest)
                if _roles_missing(signed.signers.get(f"{relative}:{t}", {}), rule, digest) == []]
        if not tags:
            every = "" if not rule.required_roles else f" with every required role ({', '.join(rule.required_roles)})"
            return Verdict(image, False, Reason.NOT_SIGNED,
                           f"{image}: no signed tag of {repository} signs {digest}{every}")
        pinned = f"{repository}@{digest}"
        return Verdict(image, True, Reason.SIGNED, f"{image}: signed as {', '.join(tags)}", pinned, not require_digest)

    name = f"{relative}:{reference.tag}"
    info = signed.targets.get(name)
    if info is None:
        return Verdict(image, False, Reason.NOT_SIGNED, f"{image}: {name} is not signed in {rule.scope}")
    digest = "sha256:" + info.hashes.get("sha256", "")
    if reference.digest is not None and reference.digest != digest:
        return Verdict(image, False, Reason.MOVED_TAG,
                       f"{image}: asks for {reference.digest} but {name} is signed as {digest}")
    missing = _roles_missing(signed.signers.get(name, {}), rule, digest)
    if missing:
        return Verdict(image, False, Reason.NOT_SIGNED,
                       f"{image}: required role(s) {', '.join(missing)} have not signed {digest}")
    pinned = f"{repository}@{digest}"
    if reference.digest is None and require_digest:
        return Verdict(image, False, Reason.NOT_PINNED, f"{image}: not pinned to a digest; deploy {pinned}", pinned)
    return Verdict(image, True, Reason.SIGNED, f"{image}: signed as {digest}", pinned, not require_digest)


def _roles_missing(signers: Mapping[str, str], rule: Rule, digest: str) -> list[str]:
    return [role for role in rule.required_roles if signers.get(role) != digest]


def signed_digests(rule: Rule, view: ScopeView, relative: str) -> set[str]:
    """Every digest a tag of repository ``relative`` (below ``rule.scope``) is signed as, with every role
    the rule requires: what the verifying mirror may serve from that repository, with what they reference.
    """
    prefix = relative + ":"
    digests = set()
    for name, info in view.signed.targets.items():
        if name.startswith(prefix) and ":" not in name[len(prefix):]:
            digest = "sha256:" + info.hashes.get("sha256", "")
            if not _roles_missing(view.signed.signers.get(name, {}), rule, digest):
                digests.add(digest)
    return digests
