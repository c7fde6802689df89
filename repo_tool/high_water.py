"""High-water marks of the online signer: it never signs a state older than one it has seen or signed.

The timestamp service verifies with expiry waived (``allow_expired``), so that
a service that was down can recover. That waiver would also let it re-sign an
old, expired state that anyone with push access puts back under ``timestamp``
(revoked targets included), and fresh consumers would trust it again. TUF's
rollback checks only protect a client that remembers what it trusted, so the
signer remembers too: per scope, the highest version (and hash) of every role
it has seen or signed, in ``state.db``. A state with any role below its mark, or
at its mark with other bytes, is refused. Without marks (a first run, or a
deployment that lost its state), an expired timestamp is extended only when
the operator says so, after being told which state it is.
"""

from __future__ import annotations

import datetime
import hashlib

from tufoci.client.refresh import TrustedSession
from tufoci.errors import MetadataRejectedError
from tufoci.layout_spec import meta_role
from tufoci.repo_tool.plan import CurrentState
from tufoci.state import Mark
from tufoci.tuf_compat import cached_file


def observed(session: TrustedSession, current: CurrentState) -> dict[str, Mark]:
    """Every role version (and hash) a verified state consists of: root, timestamp, snapshot, and what snapshot lists."""
    with open(cached_file(session.metadata_dir, "timestamp"), "rb") as f:
        timestamp_bytes = f.read()  # the bytes ngclient verified
    marks = {
        "root": Mark(current.root.signed.version, None),
        "timestamp": Mark(current.timestamp.signed.version, hashlib.sha256(timestamp_bytes).hexdigest()),
    }
    snapshot_meta = current.timestamp.signed.snapshot_meta
    marks["snapshot"] = Mark(snapshot_meta.version, (snapshot_meta.hashes or {}).get("sha256"))
    for name, meta in current.snapshot.signed.meta.items():
        marks[meta_role(name)] = Mark(meta.version, (meta.hashes or {}).get("sha256"))
    return marks


def older_roles(marks: dict[str, Mark], state_now: dict[str, Mark]) -> list[str]:
    """Where ``state_now`` is older than ``marks``: a role at a lower version, or at the same version with other bytes."""
    older = []
    for role, mark in sorted(marks.items()):
        now = state_now.get(role)
        if now is None:  # a role the snapshot no longer lists: the snapshot's own mark decides
            continue
        if now.version < mark.version:
            older.append(f"{role} v{now.version} < v{mark.version}")
        elif now.version == mark.version and now.sha256 and mark.sha256 and now.sha256 != mark.sha256:
            older.append(f"{role} v{now.version} differs from the other v{mark.version}")
    return older


def check_not_older(scope: str, marks: dict[str, Mark], state_now: dict[str, Mark]) -> None:
    """Refuse a state in which any role is older than its mark, or differs from it at the same version.

    Raises:
        MetadataRejectedError: the registry serves an older (or forked) state than this signer has seen.
    """
    older = older_roles(marks, state_now)
    if older:
        raise MetadataRejectedError(
            f"{scope}: the registry serves an older state than this timestamp service has seen or signed "
            f"({'; '.join(older)}): refusing to re-sign it (a rollback). Find out who moved 'timestamp' back; "
            "a maintainer publish restores the current state"
        )


def check_revival(
    scope: str, current: CurrentState, now: datetime.datetime, *, have_marks: bool, revive_expired: bool
) -> None:
    """Without marks, an expired timestamp may be an old state put back: extend it only when told to.

    Raises:
        MetadataRejectedError: the timestamp expired, nothing records the state it should be, and
            ``revive_expired`` was not given.
    """
    timestamp = current.timestamp.signed
    if have_marks or revive_expired or timestamp.expires > now:
        return
    raise MetadataRejectedError(
        f"{scope}: timestamp v{timestamp.version} expired at {timestamp.expires:%Y-%m-%dT%H:%M:%SZ} and this "
        f"machine has no record of the scope's state (no high-water marks in its state.db), so it may be an old "
        f"state put back in the registry. Re-signing would revive timestamp v{timestamp.version}, snapshot "
        f"v{current.snapshot.signed.version}, targets v{current.targets.signed.version}, root "
        f"v{current.root.signed.version}: if that is the current state, run again with --revive-expired"
    )
