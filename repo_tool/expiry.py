"""Expiry periods of the four top-level roles, and duration parsing.

The periods live in root as ``x-tufoci-expiry`` so that every maintainer of a
scope bumps versions with the same periods (they are signed with root).
"""

from __future__ import annotations

import datetime
import re

from tufoci.errors import UsageError

DEFAULT_EXPIRY = {"root": "365d", "targets": "90d", "snapshot": "7d", "timestamp": "1d"}
EXPIRY_FIELD = "x-tufoci-expiry"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,6})([smhdwy])$")


def parse_duration(text: str) -> datetime.timedelta:
    """``90d``, ``12h``, ``1y`` … as a timedelta."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"invalid duration {text!r}: use a number and one of s m h d w y (e.g. 90d)")
    return datetime.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_expiry_options(options: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``ROLE=DUR`` options merged over the defaults."""
    periods = dict(DEFAULT_EXPIRY)
    for option in options:
        role, sep, duration = option.partition("=")
        if not sep or role not in DEFAULT_EXPIRY:
            raise UsageError(f"invalid --expires {option!r}: use ROLE=DUR with ROLE in {', '.join(DEFAULT_EXPIRY)}")
        parse_duration(duration)
        periods[role] = duration
    return periods


def expiry_for(periods: dict[str, str], role: str, now: datetime.datetime) -> datetime.datetime:
    """When a new version of ``role`` signed ``now`` expires (delegated roles use targets')."""
    key = role if role in DEFAULT_EXPIRY else "targets"
    return now + parse_duration(periods.get(key, DEFAULT_EXPIRY[key]))
