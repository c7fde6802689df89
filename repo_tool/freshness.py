"""Freshness: re-signing timestamp (and snapshot when needed) with the online key.

Clients reject an expired timestamp, so a trust repository needs its timestamp
re-signed well before it expires (default period 1 day). ``refresh_timestamp``
does one refresh; the online service (online_service.py) keeps doing it, and
promotes complete proposals, as a long-running process.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from dataclasses import dataclass

from securesystemslib.signer import SecretsHandler

from tufoci.errors import ThresholdError, TufociError
from tufoci.layout_spec import ONLINE_ROLES
from tufoci.repo_tool.expiry import parse_duration
from tufoci.repo_tool.high_water import Mark, check_not_older, check_revival, observed
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.repo_tool.push import MetadataFile, push_metadata
from tufoci.repo_tool.renew import RoleExpiry, role_expiries, warning_windows
from tufoci.repo_tool.signing import sign_with
from tufoci.repo_tool.versions import next_snapshot, next_timestamp, to_bytes
from tufoci.state import now_utc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpiryWarning:
    """A role (other than those just re-signed) that expired or expires soon, and what to do about it."""

    role: str
    version: int
    warning: str  # "expired" or "expires soon"
    expires: datetime.datetime
    advice: str  # the command to run and whose keys sign it (renew.RoleExpiry.advice)


@dataclass(frozen=True)
class Refreshed:
    scope: str
    timestamp_version: int
    timestamp_expires: datetime.datetime
    snapshot_version: int
    snapshot_resigned: bool
    warnings: tuple[ExpiryWarning, ...] = ()  # issue 15.4: roles expiring soon, and who must renew each


def refresh_timestamp(
    session: MaintainerSession,
    *,
    secrets: SecretsHandler | None = None,
    force_snapshot: bool = False,
    revive_expired: bool = False,
    settle: float = 0.0,
) -> Refreshed:
    """Publish the next timestamp; re-sign snapshot too when it would expire before the new timestamp.

    The state signed over is never older than one this machine has seen or
    signed (its high-water marks in state.db, raised by every refresh); without
    marks, an expired timestamp is extended only with ``revive_expired``.
    ``settle``: see push.push_metadata (the online service waits to see its
    timestamp stay, so two services never both believe they wrote it).

    Raises:
        MetadataRejectedError: the registry's state is older than the marks, or expired with no marks
            and ``revive_expired`` not given (nothing is pushed).
        ThresholdError: this machine does not hold the online key(s).
        ConcurrentPublishError: another publisher moved ``timestamp`` meanwhile.
    """
    state, pin = session.state, session.pin
    with session.live() as live:
        current = live.current
        seen = observed(live.verified, current)
        try:
            expiries = role_expiries(current, live.tree)
        except TufociError as e:  # a team's metadata must never stop the timestamp from being re-signed
            logger.warning("%s: no expiry warnings for delegated roles: %s", pin.scope, e)
            expiries = role_expiries(current, None)
    root, periods, now = current.root.signed, current.expiry_periods, now_utc()
    # never sign a state older than one seen or signed before (expiry is waived above)
    marks = state.marks(pin.scope)
    check_not_older(pin.scope, marks, seen)
    check_revival(pin.scope, current, now, have_marks=bool(marks), revive_expired=revive_expired)
    signers = {role: session.signers(root.roles[role].keyids, secrets) for role in ONLINE_ROLES}

    timestamp_expires = now + parse_duration(periods["timestamp"])
    files = []
    snapshot = current.snapshot
    resign_snapshot = force_snapshot or snapshot.signed.expires <= timestamp_expires + parse_duration(periods["timestamp"])
    if resign_snapshot:
        snapshot = next_snapshot(current.snapshot, {}, periods, now)
        _sign_online(snapshot, signers["snapshot"], root.roles["snapshot"].threshold)
        files.append(MetadataFile("snapshot", snapshot.signed.version, to_bytes(snapshot)))
    snapshot_bytes = to_bytes(snapshot)
    timestamp = next_timestamp(current.timestamp, snapshot.signed.version, snapshot_bytes, periods, now)
    _sign_online(timestamp, signers["timestamp"], root.roles["timestamp"].threshold)
    timestamp_bytes = to_bytes(timestamp)
    push_metadata(
        session.store,
        files,
        MetadataFile("timestamp", timestamp.signed.version, timestamp_bytes),
        root_version=root.version,
        expected_timestamp=current.timestamp_manifest_digest,
        snapshot_data=snapshot_bytes,
        settle=settle,
    )
    signed = {"timestamp": Mark(timestamp.signed.version, hashlib.sha256(timestamp_bytes).hexdigest())}
    if resign_snapshot:
        signed["snapshot"] = Mark(snapshot.signed.version, hashlib.sha256(snapshot_bytes).hexdigest())
    with state.transaction():
        state.raise_marks(pin.scope, seen | signed)
        state.record_audit("timestamp", scope=pin.scope, role="timestamp", version=timestamp.signed.version,
                           snapshot=snapshot.signed.version, snapshot_resigned=resign_snapshot)
    return Refreshed(pin.scope, timestamp.signed.version, timestamp.signed.expires, snapshot.signed.version,
                     resign_snapshot, _expiry_warnings(session, expiries, periods, now, signed=set(signed)))


def _expiry_warnings(session: MaintainerSession, expiries: list[RoleExpiry], periods: dict[str, str],
                    now: datetime.datetime, *, signed: set[str]) -> tuple[ExpiryWarning, ...]:
    """Every role (other than those just re-signed) within a quarter of its period of expiring."""
    scope, windows, names = session.scope, warning_windows(periods), session.key_names()
    return tuple(
        ExpiryWarning(e.role, e.version, warning, e.expires, e.advice(scope, names))
        for e in expiries
        if e.role not in signed and (warning := e.warning(windows.get(e.role, windows["targets"]), now))
    )


def _sign_online(metadata, signers, threshold: int) -> None:
    if len(signers) < threshold:
        raise ThresholdError(
            f"this machine holds {len(signers)} of the {threshold} {metadata.signed.type} key(s) needed: "
            "run the timestamp service where the online key is"
        )
    sign_with(metadata, signers)
