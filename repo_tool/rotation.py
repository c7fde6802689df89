"""Key rotation and revocation: staged changes to the keys and threshold of a role.

Top-level roles are changed in root (the next root must meet the threshold of
the current root and of itself); a delegated role is changed in its delegating
role. Either way the role's own metadata is re-signed with its new keys in the
same publish, so it keeps verifying (see ``plan.Plan.cascade``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tufoci.errors import SigningKeyError, UsageError
from tufoci.keys import resolve_key
from tufoci.layout_spec import TOP_LEVEL_ROLES
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.repo_tool.staging import KeyChange, record_changes
from tufoci.state import State


def stage_rotation(
    session: MaintainerSession,
    role: str,
    *,
    add_keys: Sequence[str] = (),
    remove_keys: Sequence[str] = (),
    threshold: int | None = None,
) -> KeyChange:
    """Stage adding/removing keys of ``role`` and/or changing its threshold.

    Raises:
        UsageError: nothing to change, an impossible threshold, or a key that is neither known nor a key id.
        PublishError: nothing delegates ``role``.
    """
    state = session.state
    if not add_keys and not remove_keys and threshold is None:
        raise UsageError("rotate needs --add-key, --remove-key or --threshold")
    if threshold is not None and threshold < 1:
        raise UsageError("threshold must be at least 1")
    added = {k.keyid: k.public.to_dict() for k in (resolve_key(state, spec) for spec in add_keys)}
    removed = [_keyid(state, spec) for spec in remove_keys]
    if role in TOP_LEVEL_ROLES:
        delegator = "root"
    else:
        with session.live() as live:
            delegator = live.tree.parent_of(role)
    change = KeyChange(session.scope, delegator, role, added, removed, threshold)
    record_changes(state, [change])
    return change


def _keyid(state: State, spec: str) -> str:
    """A key to remove, named as anywhere else (``keys.resolve_key``), or a full keyid that need not
    be in the catalogue (a departed maintainer's key)."""
    if re.fullmatch(r"[0-9a-f]{64}", spec):
        return spec
    try:
        return resolve_key(state, spec).keyid
    except SigningKeyError as e:
        raise UsageError(f"{spec!r} is neither a key of this machine's catalogue nor a key id: {e}") from e
