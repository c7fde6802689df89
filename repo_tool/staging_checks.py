"""Mistakes refused when a change is staged, not at publish (issue 18).

A revocation typo (``target remove SCOPE nosuch:1.0``) once published "targets v6" and exited 0;
a role that does not exist, or a name outside a team's paths, failed only at publish, or
signed something no client would ever consult. These checks read the live trust repository
through a verified refresh (what consumers trust), plus this machine's staged delegations.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuf.api.metadata import DelegatedRole

from tufoci.client.refresh import trusted_session
from tufoci.errors import PublishError, UsageError
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.current import load_current
from tufoci.repo_tool.roles import RoleTree, covers
from tufoci.repo_tool.staging import DelegationAdd, TargetAdd, TargetRemove, staged_changes
from tufoci.state import Pin, State


class LiveRoles:
    """The delegation graph of one scope: live (verified) plus this machine's staged delegations."""

    def __init__(self, state: State, pin: Pin, tree: RoleTree):
        self.pin, self.tree = pin, tree
        self.staged = staged_changes(state, pin.scope)

    def staged_delegation(self, role: str) -> DelegatedRole | None:
        for change in reversed(self.staged):
            if change.name == role and isinstance(change, DelegationAdd):
                return DelegatedRole(role, [], 1, False, paths=list(change.paths))
        return None

    def _live_delegation(self, role: str):
        try:
            return self.tree.delegation(role)
        except PublishError:  # RoleTree.parent_of: no role delegates it
            return None

    def require_role(self, role: str) -> None:
        """Raises:
            UsageError: no role of that name is delegated, live or staged here.
        """
        if role == "targets" or self.staged_delegation(role) or self._live_delegation(role):
            return
        roles = ", ".join(r for r in self.tree.walk()) or "targets"
        raise UsageError(f"{self.pin.scope} has no role {role!r} (roles: {roles}): delegate it first "
                         f"('tufoci delegate {self.pin.scope} {role} …')")

    def require_covers(self, role: str, name: str) -> None:
        """Raises:
            UsageError: ``role``'s delegated paths do not cover ``name`` (clients would never consult it).
        """
        if role == "targets":
            return
        staged = self.staged_delegation(role)
        allowed = covers(staged, role, name) if staged else self.tree.trusted_for(role, name)
        if not allowed:
            delegation = staged or self._live_delegation(role)
            paths = ", ".join(getattr(delegation, "paths", None) or []) or "hashed bins"
            raise UsageError(f"{name} is outside the paths delegated to role {role} of {self.pin.scope} "
                             f"({paths}): no client would consult {role} for it")

    def signer_of(self, name: str) -> list[str]:
        """The live roles whose metadata lists ``name``."""
        return [role for role in self.tree.walk() if name in self.tree.metadata(role).signed.targets]


def check_staging(
    state: State,
    pin: Pin,
    *,
    role: str,
    adds: Sequence[str] = (),
    removes: Sequence[str] = (),
    registry: RegistryOptions,
) -> None:
    """Refuse a staged add or removal that could not do what it says (the role exists, covers each added
    name, and signs each removed one).

    Raises:
        UsageError: naming the scope, the role and the target.
        TufociError: the refresh failed (registry, metadata rejected).
    """
    with trusted_session(state.home, pin, allow_expired=True, registry=registry) as session:
        live = LiveRoles(state, pin, RoleTree(session, load_current(session).root.signed))
        live.require_role(role)
        for name in adds:
            live.require_covers(role, name)
        staged = {c.name for c in live.staged if isinstance(c, TargetAdd | TargetRemove)}  # a staged one may be undone
        bins = role == "targets" and _delegates_to_bins(live.tree)
        for name in removes:
            signers = live.signer_of(name)
            if name in staged or role in signers or (bins and signers):
                continue
            where = f" (it is signed by role {', '.join(signers)}: use --role {signers[0]})" if signers else ""
            raise UsageError(f"{pin.scope}: role {role} signs no target {name!r}: nothing to remove{where}")


def check_undelegation(state: State, pin: Pin, role: str, parent: str, registry: RegistryOptions) -> None:
    """Raises:
        UsageError: ``parent`` delegates no role named ``role`` (live or staged here).
    """
    with trusted_session(state.home, pin, allow_expired=True, registry=registry) as session:
        live = LiveRoles(state, pin, RoleTree(session, load_current(session).root.signed))
        live.require_role(parent)
        staged = any(c.name == role and c.role == parent and isinstance(c, DelegationAdd) for c in live.staged)
        published = not live.staged_delegation(parent) and live.tree.version(parent) > 0
        delegations = live.tree.metadata(parent).signed.delegations if published else None
        if staged or (delegations and role in (delegations.roles or {})):
            return
        raise UsageError(f"{parent} of {pin.scope} does not delegate to {role!r}: nothing to undelegate")


def _delegates_to_bins(tree: RoleTree) -> bool:
    delegations = tree.metadata("targets").signed.delegations
    return delegations is not None and delegations.succinct_roles is not None
