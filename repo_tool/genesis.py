"""The initial signing session: a trust repository whose version 1 is still being signed.

``init`` with a targets threshold this machine cannot meet publishes nothing:
it pushes targets v1 as a proposal and pins root v1 (which it could sign) so
that the other key holders, who pin the same root file, review and sign it
like any proposal (issue 15.1). Until the first complete set goes live there
is no ``timestamp`` tag, so consumers see nothing ("awaiting its first
signatures", exit 13).

Maintainer commands see such a repository through ``maintainer_view``: the
pinned root, verified against itself (client workflow 5.3.4 for a trusted
root), stands in for the live state, and every other role is at version 0. The
same ``Plan`` then evaluates the proposals, and the same ``publish`` makes the
first complete set live: root v1, targets v1, snapshot v1 and timestamp v1,
the timestamp written only if none exists (two publishers: one wins).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from tufoci.client.refresh import TrustedSession, trusted_session
from tufoci.client.verified_record import cache_dir
from tufoci.errors import MetadataRejectedError, PublishError
from tufoci.repo_tool.plan import CurrentState, load_current
from tufoci.repo_tool.push import current_timestamp_digest
from tufoci.repo_tool.roles import RoleTree
from tufoci.state import Pin
from tufoci.store.base import RepositoryStore
from tufoci.tuf_compat import cached_file


class GenesisTree(RoleTree):
    """The role tree before version 1: ``targets`` exists at version 0, delegating nothing."""

    def __init__(self, root: Root, now: datetime.datetime):
        empty = Metadata(Targets(expires=now))
        empty.signed.version = 0  # never serialised: only a base for version 1
        self.root = root
        self._parents = {}
        self._loaded = {"targets": empty}
        self._snapshot_meta = set()

    def _read(self, role: str) -> Metadata[Targets]:
        if role not in self._loaded:
            raise PublishError(f"no role {role!r} is delegated yet: the repository awaits its first signatures")
        return self._loaded[role]

    def version(self, role: str) -> int:
        return 0

    def walk(self) -> list[str]:
        return []


def pinned_root(pin: Pin) -> Metadata[Root]:
    """The pinned root v1, which must meet its own threshold (client workflow 5.3.4).

    Raises:
        MetadataRejectedError: the pinned root is not version 1 or not signed by its own threshold.
    """
    with open(pin.root_file, "rb") as f:
        root = Metadata[Root].from_bytes(f.read())
    try:
        root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    except UnsignedMetadataError as e:
        raise MetadataRejectedError(f"the pinned root of {pin.scope} is not signed by its own threshold: {e}") from e
    if root.signed.version != 1:
        raise MetadataRejectedError(f"{pin.scope} has no timestamp, but its pinned root is v{root.signed.version}")
    return root


def refuse_genesis_seen_live(home: str, pin: Pin) -> None:
    """A registry without ``timestamp`` is an initial signing session only for a machine that never trusted one.

    Anyone with push access can delete the ``timestamp`` tag (and put the old, fully signed targets v1 proposal
    back): the genesis view would then publish "version 1" again over a live repository — a rollback every new
    consumer trusts, and one the high-water marks never see (they compare verified states). This machine's
    trusted cache for the pin remembers the scope went live: then the missing timestamp is an attack, or a loss.

    Raises:
        MetadataRejectedError: this machine has trusted a timestamp of the scope.
    """
    path = cached_file(cache_dir(home, pin), "timestamp")
    if not os.path.exists(path):
        return
    try:
        with open(path, "rb") as f:
            version = f"v{json.load(f)['signed']['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        version = "a version"
    raise MetadataRejectedError(
        f"{pin.scope}: the registry has no timestamp, but this machine has trusted timestamp {version} of it: "
        "it is not awaiting its first signatures (publishing version 1 again would be a rollback). Find out who "
        "removed 'timestamp' and put the last one back (from a backup or a copy of the repository)"
    )


def genesis_state(root: Metadata[Root], now: datetime.datetime) -> CurrentState:
    """Placeholders for what does not exist yet; ``publish`` makes snapshot and timestamp version 1."""
    targets = Metadata(Targets(expires=now))
    targets.signed.version = 0
    return CurrentState(root, Metadata(Timestamp(expires=now)), Metadata(Snapshot(expires=now, meta={})),
                        targets, None)


@contextlib.contextmanager
def maintainer_view(
    home: str, pin: Pin, store: RepositoryStore, now: datetime.datetime, registry_options: dict
) -> Iterator[tuple[CurrentState, RoleTree, TrustedSession | None]]:
    """The verified live state (a refresh), or, before version 1 went live, the pinned root's genesis view
    (then the session is None)."""
    if current_timestamp_digest(store) is None:
        refuse_genesis_seen_live(home, pin)
        root = pinned_root(pin)
        yield genesis_state(root, now), GenesisTree(root.signed, now), None
        return
    with trusted_session(home, pin, allow_expired=True, **registry_options) as session:
        current = load_current(session)
        yield current, RoleTree(session, current.root.signed), session
