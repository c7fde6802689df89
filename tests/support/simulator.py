"""An in-memory trust repository that hands ``repo_tool.plan.Plan`` exactly its inputs.

python-tuf's ``tests/repository_simulator.py`` (``RepositorySimulator``) is the
model: metadata lives in memory, tests change it with a few calls, and what the
code under test reads is built from it. Here the code under test is the
maintainer's plan, so the simulator builds what a publish hands it:

* the live state: root, targets, delegated roles (named, nested or hashed bins),
  snapshot and timestamp, signed with real ed25519 keys and checked the way the
  maintainer's refresh checks them (signatures and thresholds, expiry unless
  ``allow_expired``), as a ``CurrentState`` and an in-memory ``RoleTree``;
* the keyring: the keys "this machine" holds (``hold``);
* open proposals with k of n detached signatures (``propose``), as
  ``proposals.scan_proposals`` reads them;
* staged changes (``add``, ``delegation``, ``bins``, ``rotate``, ``renew``), as ``state.db`` holds them.

Keys are numbered: ``key(n)`` is the same signer for the whole test session
(generated once, on first use), so a table can say ``keys=[0, 1, 2]``.
No registry, no state database, no file: a plan test runs in milliseconds.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import ExpiredMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from tufoci.errors import PublishError
from tufoci.repo_tool.genesis import GenesisTree, genesis_state
from tufoci.repo_tool.plan import CurrentState, Plan
from tufoci.repo_tool.proposals import DetachedSignature, IgnoredProposal, Proposal
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.staging import BinsDelegation, DelegationAdd, KeyChange, Renewal, StagedChange, TargetAdd
from tufoci.repo_tool.versions import to_bytes

SCOPE = "registry.test/acme"
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
LIFETIME = datetime.timedelta(days=30)  # of every live version the simulator signs


_SIGNERS: dict[str, CryptoSigner] = {}  # keyid -> every signer ``key`` made


@functools.cache
def key(n: int) -> CryptoSigner:
    """Key number ``n``: generated once per test session, so its id is the same in every case."""
    signer = CryptoSigner.generate_ed25519()
    _SIGNERS[signer.public_key.keyid] = signer
    return signer


def keyid(n: int) -> str:
    return key(n).public_key.keyid


def digest_of(name: str) -> str:
    """A made-up manifest digest for a target name (the plan never fetches images)."""
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


Edit = Callable[[Any], None]  # a change to a proposal's signed part (Root or Targets)


def adds(*names: str) -> Edit:
    """A proposal edit: sign ``names``."""
    def edit(signed: Targets) -> None:
        for name in names:
            signed.targets[name] = TargetFile(1, {"sha256": digest_of(name).removeprefix("sha256:")}, name)
    return edit


def delegates(role: str, numbers: Iterable[int], *, threshold: int = 1, paths: Iterable[str] = ("*",)) -> Edit:
    """A proposal edit: delegate ``paths`` to ``role`` with keys ``numbers``."""
    def edit(signed: Targets) -> None:
        if signed.delegations is None:
            signed.delegations = Delegations(keys={}, roles={})
        assert signed.delegations.roles is not None
        signed.delegations.roles[role] = DelegatedRole(role, [], threshold, False, list(paths))
        for n in numbers:
            signed.add_key(key(n).public_key, role)
    return edit


def undelegates(role: str) -> Edit:
    """A proposal edit: stop delegating to ``role``."""
    def edit(signed: Targets) -> None:
        assert signed.delegations is not None and signed.delegations.roles is not None
        for kid in signed.delegations.roles.pop(role).keyids:
            if not any(kid in other.keyids for other in signed.delegations.roles.values()):
                del signed.delegations.keys[kid]
        if not signed.delegations.roles:
            signed.delegations = None
    return edit


def rotates(role: str, *, add: Iterable[int] = (), remove: Iterable[int] = (), threshold: int | None = None) -> Edit:
    """A proposal edit (of root or a delegating role): change the keys or threshold of ``role``."""
    def edit(signed: Root | Targets) -> None:
        for n in add:
            signed.add_key(key(n).public_key, role)
        for n in remove:
            signed.revoke_key(keyid(n), role)
        if threshold is not None:
            signed.get_delegated_role(role).threshold = threshold
    return edit


class MemoryTree(RoleTree):
    """The live targets roles, all in memory: the same delegation walk as the publish path's
    ``RoleTree`` (parent_of, children, versions), with nothing loaded from a refresh."""

    def __init__(self, root: Root, roles: dict[str, Metadata[Targets]]):
        self.root = root
        self._parents = {}
        self._loaded = roles
        self._snapshot_meta = {f"{name}.json" for name in roles}

    def _read(self, role: str) -> Metadata[Targets]:
        if role not in self._loaded:
            raise PublishError(f"no live metadata for {role!r}")
        return self._loaded[role]

    def _load(self, role: str, parent: str) -> Metadata[Targets]:
        return self._read(role)


class Simulator:
    """One trust repository: its live metadata, the keys this machine holds, proposals in the registry."""

    def __init__(self, *, root: Iterable[int] = (0,), root_threshold: int = 1, targets: Iterable[int] = (1,),
                 targets_threshold: int = 1, online: Iterable[int] = (2,), now: datetime.datetime = NOW,
                 genesis: bool = False):
        self.now = now
        self.genesis = genesis  # issue 15.1: only the pinned root v1 exists; version 1 is being signed
        self.held: set[str] = set()
        self.proposals: list[Proposal] = []
        self.ignored: list[IgnoredProposal] = []  # what the scan of the registry ignored (the plan adds its own)
        self.applied: list[StagedChange] = []  # what the last plan applied (the rest is queued)
        top = Root(expires=now + LIFETIME)
        for role, numbers, threshold in (("root", root, root_threshold), ("targets", targets, targets_threshold),
                                         ("snapshot", online, 1), ("timestamp", online, 1)):
            for n in numbers:
                top.add_key(key(n).public_key, role)
            top.roles[role].threshold = threshold
        self.root: Metadata[Root] = Metadata(top)
        self.roles: dict[str, Metadata[Targets]] = {} if genesis else {"targets": Metadata(Targets(expires=now + LIFETIME))}
        self.snapshot = Metadata(Snapshot(expires=now + LIFETIME))
        self.timestamp = Metadata(Timestamp(expires=now + LIFETIME))
        self.publish()

    # -- the live state -----------------------------------------------------------
    def delegator(self, role: str) -> Root | Targets:
        """Who gives ``role`` its keys in the live state."""
        if role in ("root", "targets", "snapshot", "timestamp"):
            return self.root.signed
        for md in self.roles.values():
            delegations = md.signed.delegations
            if delegations is None:
                continue
            if delegations.succinct_roles is not None and delegations.succinct_roles.is_delegated_role(role):
                return md.signed
            if role in (delegations.roles or {}):
                return md.signed
        raise KeyError(role)

    def publish(self) -> None:
        """Sign every live role with all of its keys and list them in a new snapshot and timestamp."""
        for role, md in [("root", self.root), *self.roles.items()]:
            self._sign_all(md, self.delegator(role), role)
        self.snapshot.signed.meta = {f"{role}.json": MetaFile(md.signed.version) for role, md in self.roles.items()}
        self.snapshot.signed.version += 1
        self._sign_all(self.snapshot, self.root.signed, "snapshot")
        self.timestamp.signed.snapshot_meta = MetaFile(self.snapshot.signed.version)
        self.timestamp.signed.version += 1
        self._sign_all(self.timestamp, self.root.signed, "timestamp")

    def _sign_all(self, md: Metadata, delegator: Root | Targets, role: str) -> None:
        md.signatures.clear()
        for kid in delegator.get_delegated_role(role).keyids:
            md.sign(_SIGNERS[kid], append=True)

    def delegate(self, parent: str, role: str, numbers: Iterable[int], *, threshold: int = 1,
                 paths: Iterable[str] = ("*",), published: bool = True) -> Simulator:
        """``parent`` delegates ``paths`` to ``role``; with ``published`` the role has a live (empty) version 1."""
        signed = self.roles[parent].signed
        delegates(role, numbers, threshold=threshold, paths=paths)(signed)
        signed.version += 1
        if published:
            self.roles[role] = Metadata(Targets(expires=self.now + LIFETIME))
        self.publish()
        return self

    def delegate_bins(self, prefix: str, numbers: Iterable[int], bit_length: int, *, threshold: int = 1) -> Simulator:
        """``targets`` delegates to 2**bit_length hashed bins (none published yet)."""
        signers = [key(n) for n in numbers]
        self.roles["targets"].signed.delegations = Delegations(
            keys={s.public_key.keyid: s.public_key for s in signers},
            succinct_roles=SuccinctRoles([s.public_key.keyid for s in signers], threshold, bit_length, prefix))
        self.roles["targets"].signed.version += 1
        self.publish()
        return self

    def expire(self, role: str) -> Simulator:
        """The live version of ``role`` expired an hour ago (signatures stay valid)."""
        md = self.root if role == "root" else self.roles[role]
        md.signed.expires = self.now - datetime.timedelta(hours=1)
        self.publish()
        return self

    # -- this machine ---------------------------------------------------------------
    def hold(self, *numbers: int) -> Simulator:
        """This machine holds the private halves of keys ``numbers``."""
        self.held |= {keyid(n) for n in numbers}
        return self

    def keyring(self, keyids: list[str]) -> dict[str, Signer]:
        return {k: _SIGNERS[k] for k in keyids if k in self.held}

    # -- proposals in the registry ---------------------------------------------------
    def propose(self, role: str, *changes: Edit, signed_by: Iterable[int] = (), version: int | None = None,
                proposer: str = "someone", expires: datetime.datetime | None = None) -> Simulator:
        """An open proposal: the next version of ``role`` (live or new) after ``changes`` (``adds``,
        ``delegates``, ``rotates``), with detached signatures by keys ``signed_by`` over its canonical
        bytes, as the registry would hold it (``proposals[-1]``); ``expires`` (default: a year from now)."""
        if role == "root":
            md: Metadata = Metadata.from_bytes(to_bytes(self.root))
        elif role in self.roles:
            md = Metadata.from_bytes(to_bytes(self.roles[role]))
        else:
            md = Metadata(Targets(expires=self.now))
            md.signed.version = 0  # a role's first version: 1
        md.signatures.clear()
        md.signed.version = version if version is not None else md.signed.version + 1
        md.signed.expires = expires or self.now + LIFETIME
        for change in changes:
            change(md.signed)
        proposal = Proposal(role, md.signed.version, md, proposer)
        for n in signed_by:
            signature = key(n).sign(md.signed_bytes)
            proposal.collected.append(DetachedSignature(signature.keyid, signature, proposal.signed_digest, None))
        self.proposals = [p for p in self.proposals if (p.role, p.version) != (role, proposal.version)]
        self.proposals.append(proposal)
        return self

    def go_live(self, role: str) -> Simulator:
        """The open proposal of ``role`` goes live (its signers signed, someone published it)."""
        (proposal,) = [p for p in self.proposals if p.role == role]
        self.proposals.remove(proposal)
        md = Metadata.from_bytes(to_bytes(proposal.metadata))
        if role == "root":
            self.root = md
        else:
            self.roles[role] = md
        self.publish()
        return self

    # -- staged changes (this machine's state.db) --------------------------------------
    @staticmethod
    def add(name: str, role: str = "targets") -> StagedChange:
        return TargetAdd(SCOPE, role, name, 1, digest_of(name), {"mediaType": "application/vnd.oci.image.manifest.v1+json"})

    def delegation(self, parent: str, role: str, numbers: Iterable[int], *, threshold: int = 1,
                   paths: Iterable[str] = ("*",)) -> StagedChange:
        keys = {keyid(n): key(n).public_key.to_dict() for n in numbers}
        return DelegationAdd(SCOPE, parent, role, keys, threshold, list(paths), terminating=False)

    def bins(self, prefix: str, numbers: Iterable[int], bit_length: int, *, threshold: int = 1) -> StagedChange:
        keys = {keyid(n): key(n).public_key.to_dict() for n in numbers}
        return BinsDelegation(SCOPE, "targets", prefix, keys, threshold, bit_length)

    def rotate(self, role: str, *, add: Iterable[int] = (), remove: Iterable[int] = (),
               threshold: int | None = None) -> StagedChange:
        """Staged like ``tufoci rotate``: on the role's delegator (root for top-level roles)."""
        delegator = "root" if role in ("root", "targets", "snapshot", "timestamp") else \
            next(name for name, md in self.roles.items() if md.signed is self.delegator(role))
        added = {keyid(n): key(n).public_key.to_dict() for n in add}
        return KeyChange(SCOPE, delegator, role, added, [keyid(n) for n in remove], threshold)

    @staticmethod
    def renew(role: str, expires: str | None = None) -> StagedChange:
        return Renewal(SCOPE, role, role, expires)

    # -- the plan's inputs ---------------------------------------------------------------
    def current(self, *, allow_expired: bool = True) -> tuple[CurrentState, RoleTree]:
        """The live state as the maintainer's refresh hands it over: every role verified against its
        delegator (thresholds), expiry checked unless ``allow_expired`` (the maintainer view waives it);
        before version 1 went live, the pinned root's genesis view (genesis.maintainer_view)."""
        if self.genesis:
            self.root.signed.verify_delegate("root", self.root.signed_bytes, self.root.signatures)
            root = Metadata.from_bytes(to_bytes(self.root))
            return genesis_state(root, self.now), GenesisTree(root.signed, self.now)
        live = {"root": self.root, "snapshot": self.snapshot, "timestamp": self.timestamp, **self.roles}
        for role, md in live.items():
            self.delegator(role).verify_delegate(role, md.signed_bytes, md.signatures)
            if not allow_expired and md.signed.is_expired(self.now):
                raise ExpiredMetadataError(f"{role}.json is expired")
        copy = {role: Metadata.from_bytes(to_bytes(md)) for role, md in live.items()}
        current = CurrentState(copy["root"], copy["timestamp"], copy["snapshot"], copy["targets"], "sha256:" + "0" * 64)
        return current, MemoryTree(current.root.signed, {r: md for r, md in copy.items() if r in self.roles})

    def plan(self, changes: Iterable[StagedChange] = (), *, fold: bool = False, allow_expired: bool = True) -> Plan:
        """Run the plan as ``publish`` does: proposals (filtered as the scan filters them: the next
        version only), staged changes, first versions, the cascade, the held sets, and without the
        online key every ready version held."""
        current, tree = self.current(allow_expired=allow_expired)
        plan = Plan(tree, current, self.now, self.keyring)
        proposals = [p for p in self.proposals if plan.is_next_version(p.role, p.version)]
        plan.add_proposals([_fresh(p) for p in proposals], self.ignored)
        self.applied = plan.build_from_changes(list(changes), fold=fold)
        plan.add_first_versions()
        plan.cascade()
        plan.hold_incomplete_sets()
        if plan.ready and plan.online_signers() is None:
            plan.hold_for_online_key()
        return plan


def _fresh(proposal: Proposal) -> Proposal:
    """A proposal as a new scan reads it (evaluation writes its checks and thresholds)."""
    return Proposal(proposal.role, proposal.version, proposal.metadata, proposal.proposer, proposal.machine,
                    list(proposal.collected))
