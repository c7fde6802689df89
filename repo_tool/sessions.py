"""Signing sessions: review, sign and discard open proposals.

A session is an open proposal for the next version of a role. ``review``
describes each one the way a maintainer needs to decide (what changes, who has
signed, whose signatures did not count and why, how many are still needed);
``sign`` adds this machine's signatures; ``discard`` abandons one. None of them
changes anything live.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from securesystemslib.signer import SecretsHandler

from tufoci.errors import ReviewMismatchError, SigningKeyError, UsageError
from tufoci.identity import actor_name, machine_id
from tufoci.layout_spec import proposal_tag
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.repo_tool.plan import Plan
from tufoci.repo_tool.proposals import Proposal, ProposalState, discard_proposal, push_signatures, sign_proposal
from tufoci.repo_tool.review import describe, fingerprint, fingerprint_matches
from tufoci.state import AuditEntry


@dataclass
class Review:
    """One open proposal, evaluated against the live state."""

    proposal: Proposal
    changes: list[dict]
    held: str | None = None  # why it may not go live yet (plan.Plan.held): waits for another version, or refused

    @property
    def state(self) -> ProposalState:
        return ProposalState.of(self.proposal.complete, self.held)

    def to_dict(self, names: dict[str, str]) -> dict:
        p = self.proposal
        return {
            "role": p.role,
            "version": p.version,
            "proposer": p.proposer,
            "complete": p.complete,
            "held": self.held,
            "fingerprint": fingerprint(p.signed_digest),
            "signedDigest": p.signed_digest,
            "changes": self.changes,
            "signatures": [
                {"keyid": c.keyid, "key": names.get(c.keyid), "counted": c.counted, "reason": c.reason}
                for c in p.checks
            ],
            "thresholds": [
                {"label": t.label, "have": t.have, "need": t.need,
                 "missing": sorted(({"keyid": k, "key": names.get(k)} for k in t.missing_keyids),
                                   key=lambda m: (m["key"] is None, m["key"] or m["keyid"]))}
                for t in p.thresholds
            ],
        }


@contextmanager
def review_session(session: MaintainerSession) -> Iterator[tuple[Plan, list[Review]]]:
    """One verified refresh, and every open proposal for the next version of a role, evaluated
    against its delegator as it will be (a pending root decides the targets keys)."""
    with session.view() as live:
        plan = session.plan(live)
        plan.hold_incomplete_sets()
        reviews = []
        for role, proposal in plan.from_registry.items():
            # issue 20.1/20.2: the review is a complete diff of the bytes to be signed against the live version
            old = plan.live(role).to_dict() if plan.live_version(role) else None
            reviews.append(Review(proposal, describe(old, proposal.metadata.signed.to_dict()), plan.held.get(role)))
        yield plan, reviews


def review(session: MaintainerSession) -> list[Review]:
    """Every open proposal of a scope, evaluated against the live state."""
    with review_session(session) as (_, reviews):
        return reviews


def sign(
    session: MaintainerSession,
    role: str | None = None,
    *,
    expect: Collection[str] = (),
    show: Callable[[Review], None] | None = None,
    confirm: Callable[[Review], bool] | None = None,
    secrets: SecretsHandler | None = None,
) -> list[tuple[Review, list[str]]]:
    """Add this machine's signatures to the open proposals (of ``role``, or all it can sign).

    The signer signs exactly the bytes they reviewed (issue 11.2): each proposal
    is read once, ``show`` is given its review (the diff), and it is signed only
    if its fingerprint is one of ``expect`` or, without ``expect``, ``confirm``
    says yes. The fingerprint and the signature are taken from the same bytes.
    Every proposal is checked before anything is signed or pushed.

    Raises:
        UsageError: no open proposal, an expired one, or nothing to confirm with (no ``expect`` and no
            ``confirm``).
        ReviewMismatchError: a proposal's fingerprint is not one of ``expect`` (it changed since it was
            reviewed), or the signer declined it.
        SigningKeyError: ``role`` was named but this machine holds none of its keys, or a signer failed.
    """
    signed: list[tuple[Review, list[str]]] = []
    state, pin = session.state, session.pin
    with review_session(session) as (plan, reviews):
        reviews = [r for r in reviews if role in (None, r.proposal.role)]
        if not reviews:
            why = "".join(f"; {i.tag} is ignored: {i.reason}" for i in plan.ignored if role in (None, i.role))
            raise UsageError(f"no open proposal{' for ' + role if role else ''} in {pin.scope}{why}")
        chosen = []
        for item in reviews:
            proposal = item.proposal
            signers = session.signers(plan.role_keys(proposal.role, proposal.metadata), secrets)
            if not signers:
                if role is not None:
                    raise SigningKeyError(f"none of this machine's keys can sign {proposal.role}")
                continue
            expired = plan.expired(proposal.metadata)
            if expired:  # its signatures could never count: it would never go live
                raise UsageError(f"refusing to sign {proposal.role} v{proposal.version} in {pin.scope}: it {expired}")
            if show is not None:
                show(item)
            _confirm_reviewed(pin.scope, item, expect, confirm)
            chosen.append((item, signers))
        for item, signers in chosen:
            signatures = sign_proposal(item.proposal, signers)
            push_signatures(session.store, item.proposal, signatures)
            signed.append((item, sorted(signatures)))
    state.record_audits(AuditEntry("sign", pin.scope, item.proposal.role, item.proposal.version,
                                   {"keyids": keyids, "signed": item.proposal.signed_digest})
                        for item, keyids in signed)
    return signed


def _confirm_reviewed(scope: str, item: Review, expect: Collection[str],
                      confirm: Callable[[Review], bool] | None) -> None:
    """Refuse unless the signer confirmed these exact bytes (see ``sign``)."""
    proposal = item.proposal
    name = f"{proposal.role} v{proposal.version}"
    actual = fingerprint(proposal.signed_digest)
    if expect:
        if not any(fingerprint_matches(proposal.signed_digest, e) for e in expect):
            raise ReviewMismatchError(
                f"refusing to sign {name}: its fingerprint is {actual}, not the one you reviewed "
                f"({', '.join(expect)}): the proposal changed since; review it again with 'tufoci status {scope}'"
            )
        return
    if confirm is None:
        raise UsageError(f"refusing to sign {name} unconfirmed (no terminal to confirm on): pass --expect "
                         f"FINGERPRINT, the fingerprint of the proposal you reviewed in 'tufoci status {scope}'")
    if not confirm(item):
        raise ReviewMismatchError(f"not signed: you declined {name} (fingerprint {actual})")


def discard(session: MaintainerSession, role: str, *, force: bool = False) -> list[tuple[str, str]]:
    """Abandon this machine's open proposal for ``role`` (and any ignored one under its own tag: it goes
    out of the listing) and this machine's staged changes to it; returns (tag, whose it was) pairs.

    Another maintainer's proposal is discarded only with ``force``: a colleague's
    collected signatures must never vanish without a word.

    Raises:
        UsageError: the open proposal is another machine's and ``force`` was not given, or nothing to discard.
    """
    discarded = []
    state, pin = session.state, session.pin
    mine, me = machine_id(state), actor_name(state)
    with review_session(session) as (plan, reviews):
        found = [(item.proposal.version, item.proposal.proposer,
                  item.proposal.machine == mine or (item.proposal.machine is None and item.proposal.proposer == me))
                 for item in reviews if item.proposal.role == role]
        found += [(i.version, "unknown", True) for i in plan.ignored
                  if i.role == role and i.version is not None and i.tag == proposal_tag(role, i.version)]
        for version, proposer, own in found:
            if not own and not force:
                raise UsageError(
                    f"the open proposal {role} v{version} in {pin.scope} is not this machine's (proposed by "
                    f"{proposer}): ask them, or discard it anyway with 'tufoci discard --force {pin.scope} {role}'"
                )
        for version, proposer, _ in found:
            discarded.append((discard_proposal(session.store, role, version, me), proposer))
    with state.transaction():
        local = state.unstage_role(pin.scope, role)
        if not discarded and not local:
            raise UsageError(f"nothing to discard for {role} in {pin.scope}")
        state.record_audit("discard", scope=pin.scope, role=role, proposals=[t for t, _ in discarded],
                           proposers=[p for _, p in discarded], staged=local)
    return discarded
