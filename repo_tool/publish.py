"""Publishing: staged changes and complete proposals become the next live versions.

The maintainer's starting point is the registry's current state, refreshed
through the same verified TUF workflow consumers use (from the root this
machine pinned), so a hostile registry cannot make a maintainer sign on top of
metadata nobody published.

For every role with staged changes, tufoci builds the next version and signs it
with the keys this machine holds. If that meets the role's threshold the
version is published; otherwise it is pushed as a proposal for other
maintainers to sign (``tufoci sign``). Complete proposals found in the registry
are published too. Publishing needs the online key (snapshot and timestamp);
without it, ready versions wait as complete proposals for whoever holds it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

from securesystemslib.signer import SecretsHandler, Signer
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from tufoci.client.refresh import TrustedSession, metadata_store, trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import NothingStagedError, PublishError
from tufoci.repo_tool.delegations import apply_delegation
from tufoci.repo_tool.expiry import DEFAULT_EXPIRY, EXPIRY_FIELD, expiry_for
from tufoci.repo_tool.proposals import Proposal, evaluate, push_proposal, read_proposals, threshold_states
from tufoci.repo_tool.push import MetadataFile, push_metadata
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.signing import available_signers, sign_with
from tufoci.repo_tool.staging import StagedChange, clear_staged, staged_changes
from tufoci.repo_tool.versions import bump, next_snapshot, next_timestamp, to_bytes
from tufoci.state import State, actor, now_utc
from tufoci.store.base import RepositoryStore


@dataclass
class CurrentState:
    """The verified, current top-level metadata of a trust repository."""

    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    timestamp_manifest_digest: str | None

    @property
    def expiry_periods(self) -> dict[str, str]:
        periods = self.root.signed.unrecognized_fields.get(EXPIRY_FIELD)
        return {**DEFAULT_EXPIRY, **periods} if isinstance(periods, dict) else dict(DEFAULT_EXPIRY)


def load_current(session: TrustedSession) -> CurrentState:
    """Read what the session's refresh verified (ngclient keeps it in its metadata dir)."""

    def read(role: str) -> Metadata:
        with open(os.path.join(session.metadata_dir, f"{role}.json"), "rb") as f:
            return Metadata.from_bytes(f.read())

    return CurrentState(
        read("root"), read("timestamp"), read("snapshot"), read("targets"), session.fetcher.timestamp_manifest_digest
    )


def delegators_for(tree: RoleTree, role: str, proposed: Metadata) -> list[tuple[str, Root | Targets]]:
    """Whose keys and threshold a version of ``role`` must satisfy.

    A new root must satisfy the current root and itself (TUF client workflow
    5.3.4); any other role its delegator.
    """
    if role == "root":
        return [(f"root v{tree.root.version}", tree.root), (f"root v{proposed.signed.version}", proposed.signed)]
    return [(role, tree.delegator(role))]


@dataclass
class PublishResult:
    scope: str
    published: dict[str, int] = field(default_factory=dict)  # role -> new live version
    proposed: dict[str, dict] = field(default_factory=dict)  # role -> {"version", "have", "need"}
    applied: list[StagedChange] = field(default_factory=list)
    dry_run: bool = False
    waiting_for_online_key: bool = False
    awaiting_first_version: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "published": self.published,
            "proposed": self.proposed,
            "dryRun": self.dry_run,
            "waitingForOnlineKey": self.waiting_for_online_key,
            "awaitingFirstVersion": self.awaiting_first_version,
            "changes": [{"action": c.action, "role": c.role, "target": c.name, "digest": c.digest} for c in self.applied],
        }


def apply_target_change(targets: Targets, change: StagedChange) -> None:
    if change.action == "add":
        targets.targets[change.name] = TargetFile(
            length=change.length or 0,
            hashes={"sha256": (change.digest or "").removeprefix("sha256:")},
            path=change.name,
            unrecognized_fields={"custom": change.custom or {}},
        )
    elif change.action == "remove":
        targets.targets.pop(change.name, None)
    else:
        apply_delegation(targets, change)


class _Plan:
    """What one publish will do, decided inside the verified session."""

    def __init__(self, tree: RoleTree, current: CurrentState, now: datetime.datetime):
        self.tree, self.current, self.now = tree, current, now
        self.ready: dict[str, Metadata] = {}  # meets its threshold: goes live
        self.short: dict[str, Metadata] = {}  # below threshold: becomes a proposal
        self.promoted: list[Proposal] = []
        self.open_proposals: list[Proposal] = []
        self.awaiting_first_version: list[str] = []

    def version(self, role: str) -> int:
        return self.tree.version(role)

    def base(self, role: str) -> Metadata[Targets]:
        if role in self.ready:
            return self.ready[role]
        if self.version(role) == 0:  # delegated, never published: its first version
            first = Metadata(Targets(expires=self.now))
            first.signed.version = 0  # bump() makes it 1
            return first
        return Metadata.from_bytes(to_bytes(self.tree.metadata(role)))

    def delegator(self, role: str) -> tuple[str, Root | Targets]:
        """Who delegates ``role``, preferring a delegation changed in this publish."""
        if role == "targets":
            return "root", self.tree.root
        for parent, md in self.ready.items():
            delegations = md.signed.delegations if parent != "root" else None
            if delegations is not None and delegations.roles and role in delegations.roles:
                return parent, md.signed
        return self.tree.parent_of(role), self.tree.delegator(role)

    def delegators(self, role: str, md: Metadata) -> list[tuple[str, Root | Targets]]:
        if role == "root":
            return delegators_for(self.tree, role, md)
        return [(role, self.delegator(role)[1])]

    def settle(self, role: str, md: Metadata) -> None:
        """File a signed version as ready or short of its threshold."""
        states = threshold_states(set(md.signatures), self.delegators(role, md), role)
        if all(state.have >= state.need for state in states):
            self.ready[role] = md
        else:
            self.short[role] = md

    # -- the three sources of new versions --------------------------------------
    def build_from_changes(self, state: State, changes: list[StagedChange], secrets: SecretsHandler | None) -> None:
        periods = self.current.expiry_periods
        roles = sorted(dict.fromkeys(c.role for c in changes), key=lambda r: r != "targets")  # parents first
        for role in roles:
            md = self.base(role)
            parent, delegator = self.delegator(role)
            delegated = None if role == "targets" else delegator.get_delegated_role(role)
            for change in (c for c in changes if c.role == role):
                if change.action in ("add", "remove") and delegated is not None \
                        and not delegated.is_delegated_path(change.name):
                    raise PublishError(
                        f"role {role!r} may only sign {', '.join(delegated.paths or ['its hashed bins'])}: "
                        f"{change.name} is outside its delegation from {parent}"
                    )
                apply_target_change(md.signed, change)
            bump(md, periods, self.now)
            sign_with(md, available_signers(state, delegator.get_delegated_role(role).keyids, secrets))
            self.settle(role, md)

    def add_first_versions(self, state: State, secrets: SecretsHandler | None) -> None:
        """A role delegated in this publish gets an empty version 1 when this machine can sign it."""
        periods = self.current.expiry_periods
        for parent, md in list(self.ready.items()):
            delegations = md.signed.delegations if parent != "root" else None
            for child, delegated in (delegations.roles or {}).items() if delegations else ():
                if child in self.ready or child in self.short or self.version(child) > 0:
                    continue
                first = Metadata(Targets(version=1, expires=expiry_for(periods, child, self.now)))
                sign_with(first, available_signers(state, delegated.keyids, secrets))
                if threshold_states(set(first.signatures), [(parent, md.signed)], child)[0].have >= delegated.threshold:
                    self.ready[child] = first
                else:  # the team's own first publish creates it; until then it has signed nothing
                    self.awaiting_first_version.append(child)

    def add_complete_proposals(self, store: RepositoryStore) -> None:
        """Proposals in the registry for the next version of a role; complete ones go live."""
        for proposal in read_proposals(store):
            if proposal.version != self.version(proposal.role) + 1:
                continue  # stale: something else was published since
            self.open_proposals.append(proposal)
            if proposal.role in self.ready or proposal.role in self.short:
                continue
            merged = evaluate(proposal, delegators_for(self.tree, proposal.role, proposal.metadata))
            if proposal.complete:
                self.ready[proposal.role] = merged
                self.promoted.append(proposal)


def _online_signers(state: State, root: Root, secrets: SecretsHandler | None) -> dict[str, dict[str, Signer]] | None:
    """Signers for snapshot and timestamp, or None when this machine cannot meet their thresholds."""
    signers = {}
    for role in ("snapshot", "timestamp"):
        signers[role] = available_signers(state, root.roles[role].keyids, secrets)
        if len(signers[role]) < root.roles[role].threshold:
            return None
    return signers


def publish(
    state: State,
    scope_text: str,
    *,
    secrets: SecretsHandler | None = None,
    dry_run: bool = False,
    **registry_options: object,
) -> PublishResult:
    """Sign staged changes; publish every version that meets its threshold, propose the rest."""
    pin = pin_for_scope(state, scope_text)
    changes = staged_changes(state, pin.scope)
    store = metadata_store(pin, **registry_options)
    with trusted_session(state.home, pin, **registry_options) as session:
        current = load_current(session)
        plan = _Plan(RoleTree(session, current.root.signed), current, now_utc())
        plan.build_from_changes(state, changes, secrets)
        plan.add_first_versions(state, secrets)
        plan.add_complete_proposals(store)
    if not plan.ready and not plan.short:
        raise NothingStagedError(
            f"nothing staged for {pin.scope} and no complete proposal: stage changes with 'tufoci target add' first"
        )
    for proposal in plan.open_proposals:
        if proposal.role in plan.short and proposal not in plan.promoted:
            raise PublishError(
                f"a proposal for {proposal.role} v{proposal.version} by {proposal.proposer} is already open: "
                f"sign it ('tufoci sign {pin.scope} {proposal.role}') or discard it "
                f"('tufoci discard {pin.scope} {proposal.role}') first"
            )

    result = PublishResult(pin.scope, applied=changes, dry_run=dry_run,
                           awaiting_first_version=plan.awaiting_first_version)
    root = plan.ready["root"].signed if "root" in plan.ready else current.root.signed
    online = _online_signers(state, root, secrets) if plan.ready else None
    if plan.ready and online is None:
        # fully signed, but snapshot/timestamp cannot be: hand the versions over
        # as complete proposals to whoever holds the online key
        result.waiting_for_online_key = True
        for role, md in plan.ready.items():
            if all(p.role != role for p in plan.promoted):
                plan.short[role] = md
        plan.ready = {}

    files = [MetadataFile(role, md.signed.version, to_bytes(md)) for role, md in plan.ready.items()]
    timestamp = None
    if online is not None:
        periods = current.expiry_periods
        listed = {f.role: (f.version, f.data) for f in files if f.role != "root"}
        snapshot = next_snapshot(current.snapshot, listed, periods, plan.now)
        sign_with(snapshot, online["snapshot"])
        snapshot_bytes = to_bytes(snapshot)
        files.append(MetadataFile("snapshot", snapshot.signed.version, snapshot_bytes))
        timestamp = next_timestamp(current.timestamp, snapshot.signed.version, snapshot_bytes, periods, plan.now)
        sign_with(timestamp, online["timestamp"])
        result.published = {f.role: f.version for f in files} | {"timestamp": timestamp.signed.version}
    for role, md in plan.short.items():
        states = threshold_states(set(md.signatures), plan.delegators(role, md), role)
        result.proposed[role] = {
            "version": md.signed.version,
            "thresholds": [{"label": s.label, "have": s.have, "need": s.need} for s in states],
        }
    if dry_run:
        return result

    if timestamp is not None:
        push_metadata(
            store,
            files,
            MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
            root_version=root.version,
            expected_timestamp=current.timestamp_manifest_digest,
        )
    who = actor()
    for role, md in plan.short.items():
        push_proposal(store, role, md, who)

    with state.transaction() as conn:
        clear_staged(conn, pin.scope, changes)
        if result.published:
            state.audit(conn, "publish", scope=pin.scope, role=",".join(sorted(result.published)),
                        version=result.published["timestamp"], versions=result.published,
                        changes=result.to_dict()["changes"],
                        promoted=[f"{p.role} v{p.version}" for p in plan.promoted])
        for role, info in result.proposed.items():
            state.audit(conn, "propose", scope=pin.scope, role=role, version=info["version"],
                        thresholds=info["thresholds"])
    return result
