"""Expiry periods of the four top-level roles as maintainers set and apply them.

The periods and duration parsing themselves are core knowledge
(tufoci/expiry_periods.py): a consumer reading the history needs them too.
"""

from __future__ import annotations

import datetime

from tufoci.errors import UsageError
from tufoci.expiry_periods import DEFAULT_EXPIRY, EXPIRY_FIELD, parse_duration

__all__ = ["DEFAULT_EXPIRY", "EXPIRY_FIELD", "expiry_for", "parse_duration", "parse_expiry_options"]


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
