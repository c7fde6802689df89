"""Signing sessions: review, sign and discard open proposals.

A session is an open proposal for the next version of a role. ``review``
describes each one the way a maintainer needs to decide (what changes, who has
signed, whose signatures did not count and why, how many are still needed);
``sign`` adds this machine's signatures; ``discard`` abandons one. None of them
changes anything live.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from securesystemslib.signer import SecretsHandler
from tuf.api.metadata import Root, Targets

from tufoci.client.refresh import metadata_store, trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import SigningKeyError, UsageError
from tufoci.keys import list_keys
from tufoci.layout_spec import proposal_tag
from tufoci.repo_tool.plan import Plan, load_current
from tufoci.repo_tool.proposals import Proposal, discard_proposal, push_signatures, sign_proposal
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.signing import available_signers
from tufoci.state import Pin, State, actor, now_utc
from tufoci.store.base import RepositoryStore


@dataclass
class Review:
    """One open proposal, evaluated against the live state."""

    proposal: Proposal
    changes: list[dict]
    held: str | None = None  # complete, but waits for another version (plan.Plan.hold_incomplete_sets)

    def to_dict(self, names: dict[str, str]) -> dict:
        p = self.proposal
        return {
            "role": p.role,
            "version": p.version,
            "proposer": p.proposer,
            "complete": p.complete,
            "held": self.held,
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


def describe_changes(role: str, old: Targets | Root | None, new: Targets | Root) -> list[dict]:
    """What a proposal changes, as a maintainer reads it: tags and their digests, delegations, keys."""
    if isinstance(new, Root):
        return _root_changes(old if isinstance(old, Root) else None, new)
    changes = []
    before = old.targets if isinstance(old, Targets) else {}
    for name in sorted(set(before) | set(new.targets)):
        a, b = before.get(name), new.targets.get(name)
        digest = lambda t: "sha256:" + t.hashes.get("sha256", "") if t else None  # noqa: E731
        if a is None:
            changes.append({"kind": "target", "change": "added", "target": name, "digest": digest(b)})
        elif b is None:
            changes.append({"kind": "target", "change": "removed", "target": name, "digest": digest(a)})
        elif a != b:
            changes.append({"kind": "target", "change": "changed", "target": name, "from": digest(a), "digest": digest(b)})
    roles_before = _delegated_roles(old)
    roles_after = _delegated_roles(new)
    for name in sorted(set(roles_before) | set(roles_after)):
        a, b = roles_before.get(name), roles_after.get(name)
        if a == b:
            continue
        change = "added" if a is None else "removed" if b is None else "changed"
        entry = {"kind": "delegation", "change": change, "role": name}
        if b is not None:
            entry.update(paths=b.paths, threshold=b.threshold, keyids=b.keyids, terminating=b.terminating)
        changes.append(entry)
    return changes


def _delegated_roles(signed: Targets | Root | None) -> dict:
    if not isinstance(signed, Targets) or signed.delegations is None or signed.delegations.roles is None:
        return {}
    return dict(signed.delegations.roles)


def _root_changes(old: Root | None, new: Root) -> list[dict]:
    changes = []
    for role, after in new.roles.items():
        before = old.roles.get(role) if old else None
        if before is None or before.keyids != after.keyids or before.threshold != after.threshold:
            changes.append({
                "kind": "root-role", "role": role, "threshold": after.threshold,
                "addedKeys": [k for k in after.keyids if not before or k not in before.keyids],
                "removedKeys": [k for k in (before.keyids if before else []) if k not in after.keyids],
            })
    return changes


@contextmanager
def review_session(state: State, scope_text: str, registry_options: dict) -> Iterator[tuple[Pin, RepositoryStore, Plan, list[Review]]]:
    """One verified refresh, and every open proposal for the next version of a role, evaluated
    against its delegator as it will be (a pending root decides the targets keys)."""
    pin = pin_for_scope(state, scope_text)
    store = metadata_store(pin, **registry_options)
    with trusted_session(state.home, pin, allow_expired=True, **registry_options) as session:
        current = load_current(session)
        plan = Plan(RoleTree(session, current.root.signed), current, now_utc())
        plan.add_registry_proposals(store)
        plan.hold_incomplete_sets()
        reviews = []
        for role, proposal in plan.from_registry.items():
            old = plan.live(role) if plan.live_version(role) else None
            reviews.append(Review(proposal, describe_changes(role, old, proposal.metadata.signed), plan.held.get(role)))
        yield pin, store, plan, reviews


def review(state: State, scope_text: str, **registry_options: object) -> list[Review]:
    """Every open proposal of a scope, evaluated against the live state."""
    with review_session(state, scope_text, registry_options) as (_, _, _, reviews):
        return reviews


def key_names(state: State) -> dict[str, str]:
    return {k.keyid: k.name for k in list_keys(state) if k.name}


def sign(
    state: State,
    scope_text: str,
    role: str | None = None,
    *,
    secrets: SecretsHandler | None = None,
    **registry_options: object,
) -> list[tuple[Review, list[str]]]:
    """Add this machine's signatures to the open proposals (of ``role``, or all it can sign)."""
    signed: list[tuple[Review, list[str]]] = []
    with review_session(state, scope_text, registry_options) as (pin, store, plan, reviews):
        reviews = [r for r in reviews if role in (None, r.proposal.role)]
        if not reviews:
            why = "".join(f"; {i.tag} is ignored: {i.reason}" for i in plan.ignored if role in (None, i.role))
            raise UsageError(f"no open proposal{' for ' + role if role else ''} in {pin.scope}{why}")
        for item in reviews:
            proposal = item.proposal
            signers = available_signers(state, plan.role_keys(proposal.role, proposal.metadata), secrets)
            if not signers:
                if role is not None:
                    raise SigningKeyError(f"none of this machine's keys can sign {proposal.role}")
                continue
            signatures = sign_proposal(proposal, signers)
            push_signatures(store, proposal, signatures)
            signed.append((item, sorted(signatures)))
    with state.transaction() as conn:
        for item, keyids in signed:
            state.audit(conn, "sign", scope=pin.scope, role=item.proposal.role, version=item.proposal.version,
                        keyids=keyids, signed=item.proposal.signed_digest)
    return signed


def discard(state: State, scope_text: str, role: str, **registry_options: object) -> list[str]:
    """Abandon the open proposal for ``role`` (and any ignored one under its own tag: it goes out
    of the listing) and this machine's staged changes to it."""
    discarded = []
    with review_session(state, scope_text, registry_options) as (pin, store, plan, reviews):
        versions = [item.proposal.version for item in reviews if item.proposal.role == role]
        versions += [i.version for i in plan.ignored if i.role == role and i.version is not None
                     and i.tag == proposal_tag(role, i.version)]
        for version in versions:
            discarded.append(discard_proposal(store, role, version, actor()))
    with state.transaction() as conn:
        local = conn.execute("DELETE FROM staged WHERE scope = ? AND role = ?", (pin.scope, role)).rowcount
        if not discarded and not local:
            raise UsageError(f"nothing to discard for {role} in {pin.scope}")
        state.audit(conn, "discard", scope=pin.scope, role=role, proposals=discarded, staged=local)
    return discarded

