"""One maintainer session: the opening sequence every maintainer command shares, done once.

Publishing, status, signing, rotation, copying, exporting and re-signing the
timestamp all start the same way: the scope's trust pin, a verified refresh of
its metadata repository (python-tuf's client workflow from the pinned root, as
consumers run it), the live state that refresh verified (top-level roles, the
delegation tree, open proposals) and the keys this machine holds.
``MaintainerSession`` is that sequence; the modules keep their job and ask it.

Two decisions are made once, when the session is built: whether expiry is
waived (``allow_expired``: maintainers must be able to replace expired
metadata, so it is by default; ``copy`` and ``export-metadata`` carry only what
consumers accept today), and the registry options (passed on in exactly one
place, ``_with_registry``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from securesystemslib.signer import SecretsHandler, Signer

from tufoci.client.genesis_root import awaits_signatures, signed_digest
from tufoci.client.refresh import TrustedSession, metadata_store, trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.keys import list_keys
from tufoci.reference import Repository
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.current import load_current
from tufoci.repo_tool.genesis import GenesisTree, genesis_state, pinned_root, refuse_genesis_seen_live
from tufoci.repo_tool.plan import CurrentState, Plan, no_keys
from tufoci.repo_tool.proposals import scan_proposals
from tufoci.repo_tool.push import current_timestamp_digest
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.signing import available_signers
from tufoci.state import Pin, State, now_utc
from tufoci.store import open_repository
from tufoci.store.base import RepositoryStore

T = TypeVar("T")


@dataclass(frozen=True)
class LiveState:
    """What one verified refresh says is live: the top-level roles, the delegation tree, and the
    refresh itself (None before version 1 went live: then the pinned root stands in, issue 15.1)."""

    current: CurrentState
    tree: RoleTree
    refresh: TrustedSession | None

    @property
    def genesis(self) -> bool:
        """Whether the scope awaits its first signatures (only the pinned root v1 exists)."""
        return self.refresh is None

    @property
    def verified(self) -> TrustedSession:
        """The refresh: always there in ``MaintainerSession.live`` (only the genesis view has none)."""
        assert self.refresh is not None, "the genesis view has no refresh"
        return self.refresh


def key_names(state: State) -> dict[str, str]:
    """keyid -> the name this machine's catalogue gives it (for people: who signed, who must)."""
    return {k.keyid: k.name for k in list_keys(state) if k.name}


class MaintainerSession:
    """One scope, seen by one maintainer's machine: its pin, verified refreshes, live state, proposals, keys."""

    def __init__(self, state: State, pin: Pin, *, registry: RegistryOptions = RegistryOptions(),
                 allow_expired: bool = True):
        self.state, self.pin, self.allow_expired = state, pin, allow_expired
        self.registry = registry

    @classmethod
    def open(cls, state: State, scope_text: str, *, registry: RegistryOptions = RegistryOptions(),
             allow_expired: bool = True) -> MaintainerSession:
        """The session of the scope this machine trusts under ``scope_text``.

        Raises:
            UsageError: no trust pin for the scope (``tufoci trust add`` / ``init`` first).
        """
        return cls(state, pin_for_scope(state, scope_text), registry=registry,
                   allow_expired=allow_expired)

    @property
    def scope(self) -> str:
        return self.pin.scope

    def _with_registry(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The one place the registry options are passed on (one spot to change for typed options)."""
        return call(*args, **kwargs, registry=self.registry)

    def open_repository(self, repository: Repository) -> RepositoryStore:
        """Any repository of the registry (images to copy, a destination), with this session's options."""
        return self._with_registry(open_repository, repository)

    @functools.cached_property
    def store(self) -> RepositoryStore:
        """The metadata repository: proposals and signatures are read here, new versions pushed here.

        Raises:
            UsageError: the pin reads its metadata from an HTTP source (read-only).
        """
        return self._with_registry(metadata_store, self.pin)

    @contextlib.contextmanager
    def refresh(self, *, cache: str | None = None) -> Iterator[TrustedSession]:
        """A verified refresh (expiry waived if the session says so); the cache moves only if the block succeeds.

        Raises:
            TufociError: the registry failed or the metadata was rejected (client workflow 5.3–5.6).
        """
        with self._with_registry(trusted_session, self.state.home, self.pin, allow_expired=self.allow_expired,
                                 cache=cache) as session:
            yield session

    @contextlib.contextmanager
    def read_back(self) -> Iterator[TrustedSession]:
        """A refresh exactly as consumers run it (expiry never waived): proves what just went live verifies,
        and leaves this machine's cache at it.

        Raises:
            TufociError: as ``refresh``.
        """
        with self._with_registry(trusted_session, self.state.home, self.pin) as session:
            yield session

    @contextlib.contextmanager
    def live(self, *, cache: str | None = None) -> Iterator[LiveState]:
        """The verified live state (a refresh).

        Raises:
            TufociError: as ``refresh`` (a scope whose version 1 is still being signed has no timestamp).
        """
        with self.refresh(cache=cache) as session:
            current = load_current(session)
            yield LiveState(current, RoleTree(session, current.root.signed), session)

    @contextlib.contextmanager
    def view(self) -> Iterator[LiveState]:
        """``live``, or, before version 1 went live, the pinned root's genesis view (repo_tool/genesis.py).

        Raises:
            MetadataRejectedError: no timestamp, but this machine trusted one of the scope, or the pinned root
                is not a self-signed version 1.
            TufociError: as ``refresh``.
        """
        if current_timestamp_digest(self.store) is None:
            refuse_genesis_seen_live(self.state, self.pin)
            root, now = pinned_root(self.pin), now_utc()
            pending = signed_digest(root) if awaits_signatures(root) else None  # root v1 below its threshold
            yield LiveState(genesis_state(root, now), GenesisTree(root.signed, now, pending), None)
            return
        with self.live() as live:
            yield live

    def plan(self, live: LiveState, *, signing: bool = False, secrets: SecretsHandler | None = None,
             dry_run: bool = False) -> Plan:
        """A plan over the live state with the open proposals of the registry evaluated; with
        ``signing``, it signs with this machine's keys (plan.py does no I/O: the keyring and the
        proposals come from here). Review plans load no key."""
        keyring = (lambda keyids: self.signers(keyids, secrets, dry_run=dry_run)) if signing else no_keys
        plan = Plan(live.tree, live.current, now_utc(), keyring)
        plan.add_proposals(*scan_proposals(self.store, plan.is_next_version))
        return plan

    def signers(self, keyids: list[str], secrets: SecretsHandler | None, *,
                dry_run: bool = False) -> dict[str, Signer]:
        """This machine's signers among ``keyids`` (signing.available_signers).

        Raises:
            SigningKeyError: a key this machine holds cannot be loaded.
        """
        return available_signers(self.state, keyids, secrets, dry_run=dry_run)

    def key_names(self) -> dict[str, str]:
        return key_names(self.state)
