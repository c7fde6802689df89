"""Delegating signing to teams: staged delegation changes and how they apply.

A delegation is a change to the *delegating* role (``targets`` or a delegated
role): it names keys, a threshold, path patterns and whether the delegation is
terminating. It is staged like a target change and published with the parent's
next version.
"""

from __future__ import annotations

import re

from securesystemslib.signer import SSlibKey
from tuf.api.metadata import DelegatedRole, Delegations, SuccinctRoles, Targets

from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import UsageError
from tufoci.keys import require_distinct, resolve_key
from tufoci.layout_spec import TOP_LEVEL_ROLES
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.staging import BinsDelegation, DelegationAdd, Undelegation, record_changes
from tufoci.state import State


def _team_keys(state: State, keys: list[str], threshold: int) -> dict[str, dict]:
    """keyid -> public key of a delegation's keys: at least one, distinct, enough for the threshold."""
    if not keys:
        raise UsageError("a delegation needs at least one --key")
    resolved = {k.keyid: k for k in (resolve_key(state, spec) for spec in keys)}
    require_distinct(list(resolved.values()))
    if threshold < 1 or threshold > len(resolved):
        raise UsageError(f"threshold {threshold} is impossible with {len(resolved)} distinct key(s)")
    return {keyid: k.public.to_dict() for keyid, k in resolved.items()}


_WILDCARD = re.compile(r"[*?\[]")


def pattern_warning(pattern: str) -> str | None:
    """Why ``pattern`` may grant more (or less) than it seems to, or None.

    Target names are ``repository-path:tag`` and TUF matches a pattern component
    by component with fnmatch, so in the last component a wildcard before the
    ``:`` also covers sibling repositories: ``web/frontend*`` lets the key sign
    ``web/frontend-admin:1.0``. ``web/frontend:*`` is one repository, ``web/*``
    says plainly that it is every repository under ``web/``. A last component
    without ``:`` nor wildcard matches no target at all.
    """
    parent, slash, last = pattern.rpartition("/")
    repository, colon, tag = last.partition(":")
    prefix = parent + slash
    if not repository.strip("*"):
        return None  # every repository at this level: what it says
    if _WILDCARD.search(repository):
        literal = repository[:-1] if not _WILDCARD.search(repository[:-1]) and repository.endswith("*") else ""
        example = f" (e.g. {prefix}{literal}-admin:1.0)" if literal else ""
        one = f"{prefix}{literal or 'NAME'}:{tag if colon else '*'}"
        return (f"path pattern {pattern!r} also matches sibling repositories{example}: "
                f"for one repository write {one!r}")
    if not colon:
        return f"path pattern {pattern!r} matches no target: names end in ':TAG' (e.g. {pattern + ':*'!r})"
    return None


def stage_delegation(
    state: State,
    scope_text: str,
    role: str,
    *,
    keys: list[str],
    paths: list[str],
    threshold: int = 1,
    terminating: bool = False,
    parent: str = "targets",
) -> DelegationAdd:
    """Stage ``parent`` delegating ``paths`` to ``role`` (keys, threshold)."""
    pin = pin_for_scope(state, scope_text)
    if not role or role in TOP_LEVEL_ROLES:
        raise UsageError(f"invalid role name {role!r}: it must not be empty or a top-level role name")
    if role == parent:
        raise UsageError("a role cannot delegate to itself")
    if not paths:
        raise UsageError("a delegation needs at least one --path pattern (e.g. 'web/*')")
    team_keys = _team_keys(state, keys, threshold)
    change = DelegationAdd(pin.scope, parent, role, team_keys, threshold, list(paths), terminating)
    record_changes(state, [change])
    return change


def stage_bins(
    state: State,
    scope_text: str,
    prefix: str,
    *,
    keys: list[str],
    count: int,
    threshold: int = 1,
) -> BinsDelegation:
    """Stage ``targets`` delegating every target to ``count`` hashed bins (TAP 15, python-tuf SuccinctRoles).

    Each target then lives in the bin its name hashes to, so adding one tag
    re-signs one bin (plus snapshot and timestamp) and a client fetches one bin.
    Bins are created by the first publish that puts a target in them.
    """
    pin = pin_for_scope(state, scope_text)
    if count < 2 or count > 2**16 or count & (count - 1):
        raise UsageError(f"--bins must be a power of two between 2 and 65536, not {count}")
    change = BinsDelegation(pin.scope, "targets", prefix, _team_keys(state, keys, threshold), threshold,
                            count.bit_length() - 1)
    record_changes(state, [change])
    return change


def stage_undelegation(
    state: State, scope_text: str, role: str, *, parent: str = "targets", registry: RegistryOptions = RegistryOptions()
) -> Undelegation:
    """Stage ``parent`` no longer delegating to ``role``.

    Raises:
        UsageError: ``parent`` delegates no such role (issue 18: refused when staged, not at publish).
    """
    from tufoci.repo_tool.staging_checks import check_undelegation

    pin = pin_for_scope(state, scope_text)
    check_undelegation(state, pin, role, parent, registry)
    change = Undelegation(pin.scope, parent, role)
    record_changes(state, [change])
    return change


def apply_delegation(targets: Targets, change: DelegationAdd | BinsDelegation | Undelegation) -> None:
    """Add, replace or remove one delegation in ``targets`` (order of roles is kept)."""
    if isinstance(change, BinsDelegation):
        if targets.delegations is not None and targets.delegations.roles:
            raise UsageError("hashed bins replace every named delegation of targets: undelegate those first")
        targets.delegations = Delegations(
            keys={keyid: SSlibKey.from_dict(keyid, dict(key)) for keyid, key in change.keys.items()},
            succinct_roles=SuccinctRoles(list(change.keys), change.threshold, change.bit_length, change.name),
        )
        return
    if targets.delegations is None:
        targets.delegations = Delegations(keys={}, roles={})
    delegations = targets.delegations
    if delegations.roles is None:
        raise UsageError("this role delegates to hashed bins; named delegations cannot be added to it")
    if isinstance(change, Undelegation):
        delegations.roles.pop(change.name, None)
    else:
        for keyid, key in change.keys.items():
            delegations.keys[keyid] = SSlibKey.from_dict(keyid, dict(key))
        delegations.roles[change.name] = DelegatedRole(
            name=change.name,
            keyids=list(change.keys),
            threshold=change.threshold,
            terminating=change.terminating,
            paths=list(change.paths),
        )
    used = {keyid for r in delegations.roles.values() for keyid in r.keyids}
    for keyid in list(delegations.keys):
        if keyid not in used:
            del delegations.keys[keyid]
    if not delegations.roles:
        targets.delegations = None
