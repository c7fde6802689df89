"""The verified role tree a maintainer edits: targets and its delegated roles.

Consumers load delegated roles lazily while walking for one target; a
maintainer needs a named role, its delegator and the delegation that gives it
keys and a threshold. ``RoleTree`` finds them by walking delegations from
``targets`` through the session's updater, so every role it returns was
verified exactly as a client would verify it.
"""

from __future__ import annotations

from tuf.api.metadata import DelegatedRole, Metadata, Role, Root, Snapshot, SuccinctRoles, Targets

from tufoci.client.refresh import TrustedSession, translate_tuf_errors
from tufoci.errors import PublishError
from tufoci.layout_spec import meta_key
from tufoci.tuf_compat import cached_file, load_delegated_targets


class RoleTree:
    """Lazily loaded, verified targets roles of one refreshed session."""

    # issue 15.1: the signed digest of a root v1 still awaiting its own threshold (genesis.GenesisTree), else None
    root_pending: str | None = None

    def __init__(self, session: TrustedSession, root: Root):
        self._session = session
        self.root = root
        self._parents: dict[str, str] = {}
        self._loaded: dict[str, Metadata[Targets]] = {}
        self._snapshot_meta: set[str] | None = None

    def _read(self, role: str) -> Metadata[Targets]:
        if role not in self._loaded:
            with open(cached_file(self._session.metadata_dir, role), "rb") as f:
                self._loaded[role] = Metadata.from_bytes(f.read())
        return self._loaded[role]

    def _load(self, role: str, parent: str) -> Metadata[Targets]:
        with translate_tuf_errors():
            load_delegated_targets(self._session.updater, role, parent)
        return self._read(role)

    def metadata(self, role: str) -> Metadata[Targets]:
        """The current verified metadata of ``role`` (``targets`` or delegated)."""
        if role == "targets":
            return self._read("targets")
        parent = self.parent_of(role)
        return self._load(role, parent)

    def parent_of(self, role: str) -> str:
        """The role that delegates to ``role`` (first found, pre-order)."""
        if role in self._parents:
            return self._parents[role]
        stack, seen = ["targets"], set()
        while stack:
            name = stack.pop(0)
            if name in seen:
                continue
            seen.add(name)
            delegations = self.metadata(name).signed.delegations
            if delegations is None:
                continue
            if delegations.succinct_roles is not None:
                if delegations.succinct_roles.is_delegated_role(role):
                    self._parents[role] = name
                    return name
                continue  # hashed bins delegate no further here
            for child in delegations.roles or {}:
                self._parents.setdefault(child, name)
            if role in (delegations.roles or {}):
                return name
            stack.extend(child for child in delegations.roles or {} if self._exists(child))
        raise PublishError(f"no role {role!r} is delegated in this trust repository")

    def children(self, role: str) -> list[str]:
        """The roles ``role`` delegates to, in order; for hashed bins only those that exist."""
        delegations = self.metadata(role).signed.delegations
        if delegations is None:
            return []
        if delegations.succinct_roles is not None:
            return [name for name in delegations.succinct_roles.get_roles() if self._exists(name)]
        return list(delegations.roles or {})

    def _exists(self, role: str) -> bool:
        """Whether the role has published metadata (listed in the snapshot)."""
        if self._snapshot_meta is None:
            with open(cached_file(self._session.metadata_dir, "snapshot"), "rb") as f:
                self._snapshot_meta = set(Metadata[Snapshot].from_bytes(f.read()).signed.meta)
        return meta_key(role) in self._snapshot_meta

    def delegation(self, role: str) -> Role | None:
        """The ``DelegatedRole`` entry for a delegated role (None for ``targets``)."""
        if role == "targets":
            return None
        return self.metadata(self.parent_of(role)).signed.get_delegated_role(role)

    def trusted_for(self, role: str, target: str) -> bool:
        """Whether every delegation from ``targets`` down to ``role`` covers ``target`` (client workflow 5.6.7.2).

        A role may list any name, but clients only consult it for names its
        delegation's paths (and every ancestor's) match: an entry outside them
        signs nothing.
        """
        while role != "targets":
            delegation = self.delegation(role)
            if delegation is None or not covers(delegation, role, target):
                return False
            role = self.parent_of(role)
        return True

    def delegator(self, role: str) -> Root | Targets:
        """Who holds the keys and threshold of ``role``: root, or the delegating role."""
        if role == "targets":
            return self.root
        return self.metadata(self.parent_of(role)).signed

    def version(self, role: str) -> int:
        """Current version of a role, 0 if it was delegated but never published."""
        if role != "targets" and not self._exists(role):
            return 0
        return self.metadata(role).signed.version

    def walk(self) -> list[str]:
        """Every published targets role, in pre-order (the order clients search them)."""
        order, stack, seen = [], ["targets"], set()
        while stack:
            name = stack.pop()
            if name in seen or (name != "targets" and not self._exists(name)):
                continue
            seen.add(name)
            order.append(name)
            children = self.children(name)
            for child in children:
                self._parents.setdefault(child, name)
            stack.extend(reversed(children))
        return order


def covers(delegated: Role, role: str, target: str) -> bool:
    """Whether a delegation lets ``role`` sign ``target`` (its paths, or the bin the name hashes to)."""
    if isinstance(delegated, SuccinctRoles):
        return delegated.get_role_for_target(target) == role
    return isinstance(delegated, DelegatedRole) and delegated.is_delegated_path(target)
