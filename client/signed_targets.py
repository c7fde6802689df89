"""Every signed target of a refreshed trust repository, as TUF's own lookup answers it.

Digest-only references (``repo@sha256:…``) ask "which signed tags of this
repository sign this digest?", and an enforcement point that holds a scope's
whole view in memory asks every name at once: both need the full list, which
python-tuf has no call for. The walk loads every delegated role through
python-tuf's own verified loader, keeps a name only where every delegation on
the way to the role that lists it allows it (paths, path hash prefixes, hashed
bins), and then asks ``get_targetinfo`` for each name, so the answer (pre-order
search, terminating delegations) is exactly the one a single lookup gives.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from tuf.api.metadata import DelegatedRole, SuccinctRoles, TargetFile

from tufoci.client.refresh import TrustedSession, translate_tuf_errors
from tufoci.errors import NotSignedError
from tufoci.tuf_compat import earliest_expiry, load_delegated_targets

MAX_ROLES = 65536  # a bound on the walk: 2^16 hashed bins is far beyond any repository seen


@dataclass(frozen=True)
class SignedTargets:
    """One verified refresh of a trust repository, every target resolved."""

    scope: str
    targets: Mapping[str, TargetFile]  # target name -> the info a lookup of that name returns
    signers: Mapping[str, Mapping[str, str]]  # target name -> role -> the sha256 digest that role lists
    expires: datetime.datetime  # the earliest expiry of every role this view relies on

    def tags_signing(self, relative: str, digest: str) -> list[str]:
        """The tags of repository ``relative`` (below the scope) whose signed digest is ``digest``."""
        prefix = relative + ":"
        return sorted(name[len(prefix):] for name, info in self.targets.items()
                      if name.startswith(prefix) and ":" not in name[len(prefix):] and _digest(info) == digest)


def _digest(info: TargetFile) -> str:
    return "sha256:" + info.hashes.get("sha256", "")


def _allows(delegation: DelegatedRole | SuccinctRoles, child: str, name: str) -> bool:
    if isinstance(delegation, SuccinctRoles):
        return delegation.get_role_for_target(name) == child
    return delegation.is_delegated_path(name)


def list_signed_targets(session: TrustedSession, scope: str) -> SignedTargets:
    """Walk the delegation graph of a refreshed session and resolve every listed name.

    Raises:
        MetadataRejectedError: a delegated role failed verification.
        RegistryError: a delegated role could not be read.
    """
    updater = session.updater
    listed: dict[str, dict[str, str]] = {}
    stack: list[tuple[str, str, tuple]] = [("targets", "root", ())]
    seen: set[str] = set()
    while stack and len(seen) < MAX_ROLES:
        role, parent, chain = stack.pop()
        if role in seen:
            continue
        seen.add(role)
        try:
            with translate_tuf_errors(updater):
                targets = load_delegated_targets(updater, role, parent)
        except NotSignedError:
            continue  # delegated but never published: it signs nothing
        for name, info in targets.targets.items():
            if all(_allows(delegation, child, name) for delegation, child in chain):
                listed.setdefault(name, {})[role] = _digest(info)
        delegations = targets.delegations
        if delegations is None:
            continue
        children: list[tuple[DelegatedRole | SuccinctRoles, str]]
        if delegations.succinct_roles is not None:
            children = [(delegations.succinct_roles, c) for c in delegations.succinct_roles.get_roles()]
        else:
            children = [(d, d.name) for d in (delegations.roles or {}).values()]
        for delegation, child in reversed(children):
            stack.append((child, role, (*chain, (delegation, child))))

    resolved: dict[str, TargetFile] = {}
    for name in listed:
        try:
            found = session.lookup(name)
        except NotSignedError:
            found = None
        if found is not None:
            resolved[name] = found
    expires = earliest_expiry(updater)
    return SignedTargets(scope, resolved, listed, expires)

