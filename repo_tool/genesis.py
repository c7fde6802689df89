"""The initial signing session: a trust repository whose version 1 is still being signed.

``init`` with a threshold this machine cannot meet publishes nothing: it
pushes targets v1 (and root v1, when it cannot meet the root threshold either)
as proposals and pins root v1 so that the other key holders, who pin the same
root file, review and sign them like any proposal (issue 15.1). Until the
first complete set goes live there is no ``timestamp`` tag, so consumers see
nothing ("awaiting its first signatures", exit 13).

A root v1 with too few signatures is pinned by its signed part
(client/genesis_root.py): the root v1 proposal a maintainer signs and the
root v1 that goes live must be exactly that signed part; any other root v1
proposal is ignored, whoever pushed it.

Maintainer commands see such a repository through ``MaintainerSession.view``
(repo_tool/maintainer.py): the pinned root stands in for the live state, and
every other role is at version 0 (root too while the pinned root v1 is below
its own threshold, client workflow 5.3.4: its proposal is then the one to
sign). The same ``Plan`` evaluates the proposals, and the same ``publish``
makes the first complete set live: root v1, targets v1, snapshot v1 and
timestamp v1, together (``Plan`` holds either without the other), the
timestamp written only if none exists (two publishers: one wins).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import TYPE_CHECKING

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from tufoci.client.verified_record import cache_dir
from tufoci.errors import MetadataRejectedError, PublishError
from tufoci.repo_tool.plan import CurrentState
from tufoci.repo_tool.roles import RoleTree
from tufoci.state import Pin
from tufoci.tuf_compat import cached_file

if TYPE_CHECKING:
    from tufoci.state import State


class GenesisTree(RoleTree):
    """The role tree before version 1: ``targets`` exists at version 0, delegating nothing; root too is at
    version 0 while the pinned root v1 awaits its own threshold (``root_pending``: its signed digest, the
    only root v1 proposal a maintainer may sign or publish)."""

    def __init__(self, root: Root, now: datetime.datetime, root_pending: str | None = None):
        empty = Metadata(Targets(expires=now))
        empty.signed.version = 0  # never serialised: only a base for version 1
        self.root = root
        self.root_pending = root_pending
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
    """The pinned root v1: complete (client workflow 5.3.4: it meets its own threshold), or still
    collecting its signatures (``awaits_signatures``), when its key holders sign the proposal of
    exactly its signed part.

    Raises:
        MetadataRejectedError: the pinned root is not version 1, or not metadata python-tuf reads.
    """
    with open(pin.root_file, "rb") as f:
        data = f.read()
    try:
        root = Metadata[Root].from_bytes(data)
    except DeserializationError as e:
        raise MetadataRejectedError(f"{pin.scope}: the pinned root {pin.root_file} is not valid root metadata "
                                    f"({e.__cause__ or e})") from e
    if root.signed.version != 1:
        raise MetadataRejectedError(f"{pin.scope} has no timestamp, but its pinned root is v{root.signed.version}")
    return root


def refuse_genesis_seen_live(state: State, pin: Pin) -> None:
    """A registry without ``timestamp`` is an initial signing session only for a machine that never trusted one.

    Anyone with push access can delete the ``timestamp`` tag (and put the old, fully signed targets v1 proposal
    back): the genesis view would then publish "version 1" again over a live repository — a rollback every new
    consumer trusts, and one no comparison of verified states sees (there is none to compare). This machine's
    trusted cache for the pin remembers the scope went live, and so do its high-water marks (state.db: they
    outlive a removed cache): then the missing timestamp is an attack, or a loss.

    Raises:
        MetadataRejectedError: this machine has trusted (or signed) a timestamp of the scope.
    """
    path = cached_file(cache_dir(state.home, pin), "timestamp")
    mark = state.marks(pin.scope).get("timestamp")
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                version = f"v{json.load(f)['signed']['version']}"
        except (OSError, ValueError, KeyError, TypeError):
            version = "a version"
    elif mark is not None:
        version = f"v{mark.version}"
    else:
        return
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
