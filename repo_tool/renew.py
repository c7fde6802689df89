"""Renewing a role: the next version with the same content and a fresh expiry (issue 15.4).

Targets and team roles expire (90 days by default) even when nothing about
them changes; before this, keeping one alive meant publishing a change. A
renewal is a staged change like any other, so it goes through the normal
signing flow: a role whose threshold this machine meets goes live with the
next publish, any other becomes a proposal whose review shows only ``version``
and ``expires`` changing. Snapshot and timestamp are the online service's
(``tufoci timestamp``), so they are not renewed here.

This module also says, for every role, when it expires and who must renew it:
``status`` and the online service print those warnings.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from tuf.api.metadata import Root, Targets

from tufoci.client.refresh import trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import UsageError
from tufoci.layout_spec import ONLINE_ROLES
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.current import load_current
from tufoci.repo_tool.expiry import parse_duration
from tufoci.repo_tool.plan import CurrentState
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.staging import Renewal, record_changes
from tufoci.state import State


def stage_renewal(
    state: State, scope_text: str, role: str, *, expires: str | None = None, registry: RegistryOptions = RegistryOptions()
) -> Renewal:
    """Stage a renewal of ``role`` (root, targets or a delegated role); ``expires`` overrides its period.

    Raises:
        UsageError: ``role`` is snapshot or timestamp (the online service re-signs them) or has never been
            published, or ``expires`` is not a duration.
        PublishError: nothing delegates ``role``.
    """
    pin = pin_for_scope(state, scope_text)
    if role in ONLINE_ROLES:
        raise UsageError(f"{role} is re-signed by the online service, not renewed: run "
                         f"'tufoci timestamp {pin.scope}{' --snapshot' if role == 'snapshot' else ''}' "
                         "where the online key is")
    if expires is not None:
        parse_duration(expires)
    if role not in ("root", "targets"):
        with trusted_session(state.home, pin, allow_expired=True, registry=registry) as session:
            tree = RoleTree(session, load_current(session).root.signed)
            tree.parent_of(role)  # PublishError when nothing delegates it
            if tree.version(role) == 0:
                raise UsageError(f"{role} has published no version yet: its first 'tufoci publish' creates one")
    change = Renewal(pin.scope, role, role, expires)
    record_changes(state, [change])
    return change


def warning_windows(periods: dict[str, str], overrides: list[str] | tuple[str, ...] = ()) -> dict[str, datetime.timedelta]:
    """How long before expiry ``status`` warns: a quarter of each role's period unless overridden (ROLE=DUR)."""
    windows = {role: parse_duration(period) / 4 for role, period in periods.items()}
    for option in overrides:
        role, sep, duration = option.partition("=")
        if not sep:
            raise UsageError(f"invalid --warn {option!r}: use ROLE=DUR (delegated roles use targets)")
        windows[role] = parse_duration(duration)
    return windows


@dataclass(frozen=True)
class RoleExpiry:
    """When one live role version expires, and whose keys (and how many) must sign its next version."""

    role: str
    version: int
    expires: datetime.datetime
    threshold: int
    keyids: list[str]

    def warning(self, window: datetime.timedelta, now: datetime.datetime) -> str | None:
        if self.expires <= now:
            return "expired"
        return "expires soon" if self.expires - now <= window else None

    def renewers(self, names: dict[str, str]) -> str:
        """``2 of alice, bob, 5d1e…`` : the catalogue's names where known, else key id prefixes."""
        return f"{self.threshold} of " + ", ".join(names.get(k, k[:12]) for k in self.keyids)

    def advice(self, scope: str, names: dict[str, str]) -> str:
        """What to run and who runs it, for a warning about this role."""
        if self.role in ONLINE_ROLES:
            return f"the online service re-signs it ('tufoci timestamp {scope}'), key {self.renewers(names)}"
        return f"renew it: 'tufoci renew {scope} {self.role}', signed by {self.renewers(names)}"


def role_expiries(current: CurrentState, tree: RoleTree | None, *, genesis: bool = False) -> list[RoleExpiry]:
    """Every live role: the four top-level roles (only root while an initial signing session waits for
    its first signatures: ``genesis``), then (given the tree) every published delegated role in search order.

    Raises:
        TufociError: a delegated role's metadata cannot be loaded or verified.
    """
    root = current.root.signed
    top = (current.root,) if genesis else (current.root, current.targets, current.snapshot, current.timestamp)
    rows = [_expiry(md.signed.type, md.signed, root) for md in top]
    if tree is not None:
        rows += [_expiry(r, tree.metadata(r).signed, tree.delegator(r)) for r in tree.walk() if r != "targets"]
    return rows


def _expiry(role: str, signed, delegator: Root | Targets) -> RoleExpiry:
    delegated = delegator.get_delegated_role(role)
    return RoleExpiry(role, signed.version, signed.expires, delegated.threshold, list(delegated.keyids))
