"""Deciding what a publish makes live, and what must wait for more signatures.

Inputs, all passed in: the verified live state (``CurrentState``, ``RoleTree``),
the keys this machine holds (a ``Keyring``), the open proposals the caller read
from the registry and this machine's staged changes, and ``now``. Output:
versions that are *ready* (every threshold met: they go live together) and
versions that are *short* (they become or stay proposals).

The plan does no I/O: no store, no state database, no clock, no environment.
The caller reads the registry (``proposals.scan_proposals``), opens the state
and loads keys (behind the keyring). The live delegated roles come through the
role tree it is given: the publish path's ``RoleTree`` loads them on demand
through the verified refresh (the walk a client makes, so a publish reads only
the roles it touches); tests give it an in-memory tree (tests/support/simulator.py).

Three rules keep every published state verifiable:

* A version is checked against its delegator as it will be after this publish
  (a root changed now decides the targets keys; a role changed now decides its
  delegations' keys). A new root must also meet the current root's threshold.
* When a delegator changes a child's keys or threshold, the child's current
  metadata would stop verifying, so the child is re-signed in the same publish
  (the *cascade*).
* A ready version goes live only with everything it depends on: if a cascaded
  child or a changed delegator is short, the ready version is held as a
  proposal too, and nothing of the set goes live.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass

from securesystemslib.signer import Signer, SSlibKey
from tuf.api.metadata import Metadata, Root, Snapshot, SuccinctRoles, TargetFile, Targets, Timestamp

from tufoci.errors import PublishError, TufociError, UsageError
from tufoci.expiry_periods import expiry_periods, parse_duration
from tufoci.keys import require_distinct
from tufoci.layout_spec import ONLINE_ROLES, TOP_LEVEL_ROLES, proposal_tag
from tufoci.repo_tool.delegations import apply_delegation
from tufoci.repo_tool.expiry import expiry_for
from tufoci.repo_tool.proposals import IgnoredProposal, Proposal, ThresholdState, evaluate, threshold_states
from tufoci.repo_tool.roles import RoleTree, covers
from tufoci.repo_tool.signing import sign_with
from tufoci.repo_tool.staging import (
    BinsDelegation,
    KeyChange,
    Renewal,
    StagedChange,
    TargetAdd,
    TargetRemove,
    TargetsChange,
)
from tufoci.repo_tool.versions import bump, to_bytes

TOP_LEVEL_CHILDREN = tuple(role for role in TOP_LEVEL_ROLES if role != "root")  # what root delegates to

Keyring = Callable[[list[str]], dict[str, Signer]]
"""Which of these key ids this machine can sign with: keyid -> signer, only for the keys it holds.

The publish path passes ``signing.available_signers`` over the key catalogue (which loads a key only
when asked, so a passphrase is asked only for a key the plan signs with; a dry run's stand-ins sign
nothing); the simulator passes its in-memory keys.
"""


def no_keys(keyids: list[str]) -> dict[str, Signer]:
    """The keyring of a plan that only evaluates (review, status): it signs nothing."""
    return {}


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
        return expiry_periods(self.root.signed.unrecognized_fields)


def apply_target_change(targets: Targets, change: TargetsChange) -> None:
    """Apply a target or delegation change to the metadata of the role that makes it."""
    if isinstance(change, TargetAdd):
        targets.targets[change.name] = TargetFile(
            length=change.length,
            hashes={"sha256": change.digest.removeprefix("sha256:")},
            path=change.name,
            unrecognized_fields={"custom": change.custom} if change.custom else {},
        )
    elif isinstance(change, TargetRemove):
        targets.targets.pop(change.name, None)
    else:
        apply_delegation(targets, change)


def apply_rotation(delegator: Root | Targets, change: KeyChange) -> None:
    """Change the keys and threshold a delegator gives to ``change.name``."""
    role = delegator.get_delegated_role(change.name)
    for keyid, key in change.add.items():
        if keyid not in role.keyids:
            delegator.add_key(SSlibKey.from_dict(keyid, dict(key)), change.name)
    for prefix in change.remove:
        matches = [k for k in role.keyids if k.startswith(prefix)]
        if len(matches) != 1:
            raise UsageError(f"{prefix[:16]}… matches {len(matches)} of the {change.name} keys (need exactly one)")
        delegator.revoke_key(matches[0], change.name)
    if change.threshold:
        role.threshold = int(change.threshold)
    if not role.keyids or role.threshold > len(role.keyids):
        raise UsageError(f"{change.name} would have {len(role.keyids)} key(s) for a threshold of {role.threshold}")
    require_distinct([delegator.get_key(keyid) for keyid in role.keyids])


class Plan:
    """What one publish will do, decided inside one verified session."""

    def __init__(self, tree: RoleTree, current: CurrentState, now: datetime.datetime, keyring: Keyring = no_keys):
        self.tree, self.current, self.now, self.keyring = tree, current, now, keyring
        self.ready: dict[str, Metadata] = {}  # every threshold met
        self.short: dict[str, Metadata] = {}  # below a threshold, or held back
        self.held: dict[str, str] = {}  # role -> why a ready version waits
        self.from_registry: dict[str, Proposal] = {}  # roles whose new version is an open proposal
        self.awaiting_first_version: list[str] = []
        self.ignored: list[IgnoredProposal] = []  # proposal tags nobody can sign or publish, and why
        self.queued: dict[str, int] = {}  # role -> the open proposal version its staged changes wait behind
        self.folded: dict[str, Proposal] = {}  # role -> the open proposal a new proposal of that version replaces

    # -- the role graph as it will be after this publish -----------------------
    def pending(self, role: str) -> Metadata | None:
        return self.ready.get(role) or self.short.get(role)

    def live_version(self, role: str) -> int:
        if role == "root":
            return 0 if self.tree.root_pending else self.tree.root.version
        return self.tree.version(role)

    def is_next_version(self, role: str, version: int) -> bool:
        """Whether a proposal is open: it proposes the version after the live one."""
        try:
            return version == self.live_version(role) + 1
        except TufociError:  # a role nobody delegates
            return False

    def live(self, role: str) -> Root | Targets:
        return self.tree.root if role == "root" else self.tree.metadata(role).signed

    def parent_of(self, role: str) -> str:
        """The role that delegates ``role``: in the LIVE delegation graph whenever it is there, so a
        proposal of one team can never make itself another team's delegator (issue 20.6); for a
        role delegated only now, the pending version that delegates it (which must itself go live
        for the role to: ``hold_incomplete_sets``)."""
        if role in TOP_LEVEL_CHILDREN:
            return "root"
        try:
            return self.tree.parent_of(role)
        except PublishError:
            pass
        for name, md in {**self.short, **self.ready}.items():
            if name != role and isinstance(md.signed, Targets) and _delegates_to(md.signed, role):
                return name
        raise PublishError(f"no role {role!r} is delegated in this trust repository")

    def _chain_to_live(self, role: str) -> None:
        """Raise unless ``role``'s chain of delegators reaches the live graph (pending roles that
        delegate only each other are reachable by no client)."""
        seen = {role}
        while role not in ("root", "targets") and self.live_version(role) == 0:
            role = self.parent_of(role)
            if role in seen:
                raise PublishError(f"{role} is delegated only by a cycle of new roles")
            seen.add(role)

    def bins(self) -> SuccinctRoles | None:
        """The hashed bins ``targets`` delegates to (as it will be after this publish), if any."""
        pending = self.pending("targets")
        targets = pending.signed if pending is not None else self.tree.metadata("targets").signed
        return targets.delegations.succinct_roles if targets.delegations else None

    def delegator(self, role: str) -> Root | Targets:
        parent = self.parent_of(role)
        pending = self.pending(parent)
        return pending.signed if pending is not None else self.live(parent)

    def delegators(self, role: str, md: Metadata) -> list[tuple[str, Root | Targets]]:
        """Whose keys and threshold this version must satisfy (client workflow 5.3.4 for root)."""
        if role == "root":
            if self.tree.root_pending:  # root v1: its own keys only
                return [(f"root v{md.signed.version}", md.signed)]
            return [(f"root v{self.tree.root.version}", self.tree.root), (f"root v{md.signed.version}", md.signed)]
        return [(role, self.delegator(role))]

    def role_keys(self, role: str, md: Metadata) -> list[str]:
        return sorted({k for _, d in self.delegators(role, md) for k in d.get_delegated_role(role).keyids})

    def settle(self, role: str, md: Metadata) -> None:
        """File a signed version as ready or short of its threshold."""
        self.ready.pop(role, None)
        self.short.pop(role, None)
        (self.ready if all(s.have >= s.need for s in self.thresholds(role, md)) else self.short)[role] = md

    def thresholds(self, role: str, md: Metadata) -> list[ThresholdState]:
        """Where ``md``'s signatures stand against every threshold it needs (two for a new root)."""
        return threshold_states(set(md.signatures), self.delegators(role, md), role)

    def base(self, role: str) -> Metadata:
        pending = self.pending(role)
        if pending is not None:
            return pending
        if role != "root" and self.live_version(role) == 0:  # delegated, never published
            first = Metadata(Targets(expires=self.now))
            first.signed.version = 0  # bump() makes it 1
            return first
        live = self.current.root if role == "root" else self.tree.metadata(role)
        return Metadata.from_bytes(to_bytes(live))

    def sign(self, role: str, md: Metadata) -> None:
        sign_with(md, self.keyring(self.role_keys(role, md)))
        self.settle(role, md)

    def next_root(self) -> Root:
        """Root as it will be once the ready versions go live."""
        return self.ready["root"].signed if "root" in self.ready else self.current.root.signed

    def online_signers(self) -> dict[str, dict[str, Signer]] | None:
        """Signers for snapshot and timestamp (under the next root), or None when the keyring
        cannot meet their thresholds: then the ready versions wait for whoever holds the online key.

        Raises:
            SigningKeyError: the keyring could not load a key it holds.
        """
        root, signers = self.next_root(), {}
        for role in ONLINE_ROLES:
            signers[role] = self.keyring(root.roles[role].keyids)
            if len(signers[role]) < root.roles[role].threshold:
                return None
        return signers

    def hold_for_online_key(self) -> None:
        """Every ready version waits, complete, for whoever holds the online key (``online_signers`` is None)."""
        for role in list(self.ready):
            self.short[role] = self.ready.pop(role)
            self.held[role] = "waits for the online key (snapshot/timestamp)"

    def expired(self, md: Metadata) -> str | None:
        """Why ``md`` can never go live, if it expired before it did (an open proposal left too long: a
        version built here has a fresh expiry). Published, every consumer would refuse it, and with it
        the whole repository, until the next version."""
        if not md.signed.is_expired(self.now):
            return None
        return (f"expired at {md.signed.expires:%Y-%m-%dT%H:%M:%SZ} before it went live: propose it again with a "
                f"fresh expiry ('tufoci renew', then 'tufoci publish --fold') and sign that")

    # -- sources of new versions -------------------------------------------------
    def add_proposals(self, proposals: list[Proposal], ignored: list[IgnoredProposal]) -> None:
        """Open proposals for the next version of a role join the plan (complete ones as ready).

        The caller reads them (``proposals.scan_proposals(store, plan.is_next_version)``).
        Proposals nobody can evaluate (layout §9.4: garbage, a role nothing delegates) are
        ignored and listed in ``self.ignored``: they never stop anyone's work.
        """
        self.ignored = list(ignored)
        for proposal in proposals:
            if proposal.role == "root" and self.tree.root_pending not in (None, proposal.signed_digest):
                # issue 15.1: only the root v1 every key holder pinned, whoever pushed another one
                self.ignored.append(IgnoredProposal(
                    proposal_tag("root", proposal.version), f"not the root v1 pinned here (its signed part is "
                    f"{proposal.signed_digest}, the pinned one {self.tree.root_pending})", "root", proposal.version))
                continue
            self.from_registry[proposal.role] = proposal
            self.short[proposal.role] = proposal.metadata
        self._drop_undelegated()
        # evaluate parents before children: a child is checked against its pending parent
        for proposal in sorted(self.from_registry.values(), key=lambda p: _depth(p.role)):
            merged = evaluate(proposal, self.delegators(proposal.role, proposal.metadata))
            self.settle(proposal.role, merged)
            outside = self._outside_paths(proposal.role, merged)
            if outside:  # it signs names its delegation does not give it: never live, however many sign
                self.short[proposal.role] = self.ready.pop(proposal.role, merged)
                self.held[proposal.role] = (f"refused: lists {', '.join(outside[:3])}"
                                            f"{' …' if len(outside) > 3 else ''} outside its delegated paths")

    def _outside_paths(self, role: str, md: Metadata) -> list[str]:
        """Targets a proposed delegated-role version adds or changes outside its delegation."""
        if role in ("root", "targets") or not isinstance(md.signed, Targets):
            return []
        try:
            delegated = self.delegator(role).get_delegated_role(role)
            live = self.tree.metadata(role).signed.targets if self.live_version(role) else {}
        except (ValueError, TufociError):
            return []  # nobody delegates it: its threshold cannot be met either
        return sorted(name for name, info in md.signed.targets.items()
                      if live.get(name) != info and not covers(delegated, role, name))

    def _drop_undelegated(self) -> None:
        """Ignore proposals of roles that neither the live graph nor another open proposal delegates
        (repeated: dropping one may orphan the roles only it delegated)."""
        changed = True
        while changed:
            changed = False
            for role, proposal in list(self.from_registry.items()):
                if role == "root":
                    continue  # root delegates itself (client workflow 5.3.4)
                try:
                    self.delegator(role).get_delegated_role(role)
                    self._chain_to_live(role)
                except (TufociError, ValueError):
                    del self.from_registry[role], self.short[role]
                    self.ignored.append(IgnoredProposal(proposal_tag(role, proposal.version),
                                                        f"no role delegates {role}", role, proposal.version))
                    changed = True

    def build_from_changes(self, changes: list[StagedChange], *, fold: bool = False) -> list[StagedChange]:
        """Build and sign the next version of every role with staged changes; returns the changes applied.

        A role with an open proposal is never a dead end: with ``fold`` its changes go into a
        new proposal of the same version built on the open one (its signatures are asked for
        again); otherwise they stay staged, queued until the open proposal goes live.

        Raises:
            PublishError: a change lists a target outside its role's delegation, or names a role nobody delegates.
            UsageError: a rotation that leaves a role fewer keys than its threshold, or one key twice.
            SigningKeyError: the keyring could not load a key or a signature failed.
        """
        original = changes
        staged_bins = [c for c in changes if isinstance(c, BinsDelegation)]
        bins = _succinct(staged_bins[-1]) if staged_bins else self.bins()
        if bins is not None:  # targets delegates to hashed bins: each target goes to the bin its name hashes to
            changes = [dataclasses.replace(c, role=bins.get_role_for_target(c.name))
                       if c.role == "targets" and isinstance(c, TargetAdd | TargetRemove) else c for c in changes]
        periods = self.current.expiry_periods
        for role in sorted(dict.fromkeys(c.role for c in changes), key=_depth):  # parents first
            proposal = self.from_registry.get(role)
            if proposal is not None and not fold:
                self.queued[role] = proposal.version
                continue
            if proposal is not None:  # fold: the open proposal's content plus these changes, same version
                md: Metadata = Metadata.from_bytes(to_bytes(proposal.metadata))  # any role: root, targets, delegated
                md.signatures.clear()
                del self.from_registry[role]
                self.folded[role] = proposal
            else:
                md = self.base(role)
            delegated = None if role in ("root", "targets") else self.delegator(role).get_delegated_role(role)
            renewed = None
            for change in (c for c in changes if c.role == role):
                if isinstance(change, KeyChange):
                    apply_rotation(md.signed, change)
                    continue
                if isinstance(change, Renewal):  # issue 15.4: same content, a fresh expiry is the whole change
                    # (the role's period, as the bump below gives it; folded into an open proposal, which
                    # is not bumped, the renewal is what refreshes its expiry)
                    renewed = self.now + parse_duration(change.expires) if change.expires else \
                        expiry_for(periods, md.signed.type, self.now)
                    continue
                if isinstance(change, TargetAdd | TargetRemove) and delegated is not None \
                        and not covers(delegated, role, change.name):
                    raise PublishError(
                        f"role {role!r} may only sign {', '.join(getattr(delegated, 'paths', None) or ['its bin'])}: "
                        f"{change.name} is outside its delegation from {self.parent_of(role)}"
                    )
                apply_target_change(md.signed, change)
            if proposal is None:
                bump(md, periods, self.now)
            if renewed is not None:
                md.signed.expires = renewed
            self.sign(role, md)
        return [o for o, c in zip(original, changes, strict=True) if c.role not in self.queued]

    def add_first_versions(self) -> None:
        """A role delegated now gets an empty version 1 when this machine can sign it;
        otherwise the team's own first publish creates it.

        Raises:
            SigningKeyError: the keyring could not load a key or a signature failed.
        """
        periods = self.current.expiry_periods
        for md in list(self.ready.values()):
            delegations = md.signed.delegations if isinstance(md.signed, Targets) else None
            for child, delegated in (delegations.roles or {}).items() if delegations else ():
                if self.pending(child) is not None or self.live_version(child) > 0:
                    continue
                first = Metadata(Targets(version=1, expires=expiry_for(periods, child, self.now)))
                sign_with(first, self.keyring(delegated.keyids))
                if threshold_states(set(first.signatures), [(child, md.signed)], child)[0].have >= delegated.threshold:
                    self.ready[child] = first
                else:
                    self.awaiting_first_version.append(child)

    def cascade(self) -> None:
        """Re-sign every live child whose keys or threshold a pending delegator changes.

        Raises:
            SigningKeyError: the keyring could not load a key or a signature failed.
        """
        periods = self.current.expiry_periods
        changed = True
        while changed:
            changed = False
            for parent, md in list({**self.short, **self.ready}.items()):
                for child in self._children_with_new_keys(parent, md.signed):
                    if self.pending(child) is not None or child in ONLINE_ROLES:
                        continue  # snapshot and timestamp are re-signed by every publish
                    if self.live_version(child) == 0:
                        continue
                    resigned = self.base(child)
                    bump(resigned, periods, self.now)
                    self.sign(child, resigned)
                    changed = True

    def _children_with_new_keys(self, parent: str, new: Root | Targets) -> list[str]:
        if parent != "root" and self.live_version(parent) == 0:
            return []
        old = self.live(parent)
        names: tuple[str, ...]
        if isinstance(new, Root):
            names = TOP_LEVEL_CHILDREN
        elif new.delegations is not None and new.delegations.succinct_roles is not None:
            names = tuple(self.tree.children(parent))  # the bins that exist
        else:
            names = tuple((new.delegations.roles or {}) if new.delegations else ())
        children = []
        for name in names:
            try:
                before = old.get_delegated_role(name)
            except ValueError:
                continue  # a new delegation: no live metadata to re-sign
            after = new.get_delegated_role(name)
            if set(before.keyids) != set(after.keyids) or before.threshold != after.threshold:
                children.append(name)
        return children

    def hold_incomplete_sets(self) -> None:
        """Ready versions that depend on a short one wait with it (fixpoint)."""
        changed = True
        while changed:
            changed = False
            for role in list(self.ready):
                reason = self._blocked_by(role)
                if reason:
                    self.short[role] = self.ready.pop(role)
                    self.held[role] = reason
                    changed = True

    def _blocked_by(self, role: str) -> str | None:
        expired = self.expired(self.ready[role]) or self._pinned_root_expired(role)
        if expired:
            return expired
        first = self._first_set_waits(role)
        if first:
            return first
        if role != "root":
            parent = self.parent_of(role)
            if parent in self.short:
                return f"waits for {parent} v{self.short[parent].signed.version}"
        signed = self.ready[role].signed
        for child in self._children_with_new_keys(role, signed):
            if child in self.short:
                return f"waits for {child} v{self.short[child].signed.version}, re-signed by its new keys"
        return None

    def _pinned_root_expired(self, role: str) -> str | None:
        """Targets v1 goes live with the pinned root v1 itself when that root needs no proposal (publish pushes
        it, issue 15.1): a root v1 that expired during the signing session would go live with it, and every
        consumer would refuse the scope (client workflow 5.3.10). It cannot be renewed: every key holder
        pinned exactly it."""
        root = self.current.root.signed
        if role != "targets" or self.live_version("targets") or self.tree.root_pending or not root.is_expired(self.now):
            return None
        return (f"waits for root v1, which expired at {root.expires:%Y-%m-%dT%H:%M:%SZ} before it went live: "
                "start again from a new root v1 ('tufoci init'), pinned by every key holder")

    def _first_set_waits(self, role: str) -> str | None:
        """Version 1 goes live as one set (issue 15.1): a pending root v1 and targets v1 wait for each other."""
        if role not in ("root", "targets") or not self.tree.root_pending or self.live_version("targets"):
            return None
        other = "targets" if role == "root" else "root"
        return None if other in self.ready else f"waits for {other} v1"


def _depth(role: str) -> int:
    """Sort key that puts root, then targets, before delegated roles."""
    return {"root": 0, "targets": 1}.get(role, 2)


def _delegates_to(targets: Targets, role: str) -> bool:
    delegations = targets.delegations
    if delegations is None:
        return False
    if delegations.succinct_roles is not None:
        return delegations.succinct_roles.is_delegated_role(role)
    return role in (delegations.roles or {})


def _succinct(change: BinsDelegation) -> SuccinctRoles:
    return SuccinctRoles(list(change.keys), change.threshold, change.bit_length, change.name)
