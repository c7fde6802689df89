"""Expiry periods: the durations tufoci writes in root and parses on the command line (standard library only).

The periods live in root as ``x-tufoci-expiry`` so that every maintainer of a
scope bumps versions with the same periods (they are signed with root). They
are core knowledge, not the maintainer's: a consumer reading the history
(client/history.py) uses them to place a version in time.
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
    """``90d``, ``12h``, ``1y`` … as a timedelta.

    Raises:
        UsageError: not a number followed by one of s m h d w y.
    """
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"invalid duration {text!r}: use a number and one of s m h d w y (e.g. 90d)")
    return datetime.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def expiry_periods(root_fields: dict) -> dict[str, str]:
    """A root's periods (its ``x-tufoci-expiry`` over the defaults); ``root_fields`` is its unrecognised fields."""
    periods = root_fields.get(EXPIRY_FIELD)
    return {**DEFAULT_EXPIRY, **periods} if isinstance(periods, dict) else dict(DEFAULT_EXPIRY)
