"""The verified role tree a maintainer edits: targets and its delegated roles.

Consumers load delegated roles lazily while walking for one target; a
maintainer needs a named role, its delegator and the delegation that gives it
keys and a threshold. ``RoleTree`` finds them by walking delegations from
``targets`` through the session's updater, so every role it returns was
verified exactly as a client would verify it.
"""

from __future__ import annotations

import os
from urllib import parse

from tuf.api.metadata import DelegatedRole, Metadata, Root, Targets

from tufoci.client.refresh import TrustedSession, translate_tuf_errors
from tufoci.errors import PublishError


class RoleTree:
    """Lazily loaded, verified targets roles of one refreshed session."""

    def __init__(self, session: TrustedSession, root: Root):
        self._session = session
        self.root = root
        self._parents: dict[str, str] = {}
        self._loaded: dict[str, Metadata[Targets]] = {}

    def _read(self, role: str) -> Metadata[Targets]:
        if role not in self._loaded:
            path = os.path.join(self._session.metadata_dir, f"{parse.quote(role, '')}.json")
            with open(path, "rb") as f:
                self._loaded[role] = Metadata.from_bytes(f.read())
        return self._loaded[role]

    def _load(self, role: str, parent: str) -> Metadata[Targets]:
        # python-tuf has no public call to load one named delegated role;
        # _load_targets is what its own walk uses, with the same verification.
        with translate_tuf_errors():
            self._session.updater._load_targets(role, parent)  # noqa: SLF001
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
            signed = self.metadata(name).signed
            delegations = signed.delegations
            if delegations is None or delegations.roles is None:
                continue
            for child in delegations.roles:
                self._parents.setdefault(child, name)
            if role in delegations.roles:
                return name
            stack.extend(child for child in delegations.roles if self._exists(child))
        raise PublishError(f"no role {role!r} is delegated in this trust repository")

    def _exists(self, role: str) -> bool:
        """Whether the role has published metadata (listed in the snapshot)."""
        with open(os.path.join(self._session.metadata_dir, "snapshot.json"), "rb") as f:
            snapshot = Metadata.from_bytes(f.read()).signed
        return f"{role}.json" in snapshot.meta

    def delegation(self, role: str) -> DelegatedRole | None:
        """The ``DelegatedRole`` entry for a delegated role (None for ``targets``)."""
        if role == "targets":
            return None
        parent = self.metadata(self.parent_of(role)).signed
        assert parent.delegations is not None and parent.delegations.roles is not None
        return parent.delegations.roles[role]

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
            delegations = self.metadata(name).signed.delegations
            children = list(delegations.roles or {}) if delegations else []
            for child in children:
                self._parents.setdefault(child, name)
            stack.extend(reversed(children))
        return order
