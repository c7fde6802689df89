"""One overall time budget per command, so no wait of any kind outlives it.

A per-request deadline alone lets retries, several requests and waits for the
cache lock add up (a stalled metadata answer cost 91 s: 30 s × 3 attempts). The
CLI opens a budget (``--timeout``) around a command, the agent around each
request; every wait below it (each socket read, each retry and its back-off,
the cache lock) takes what is left. The budget lives in a context variable, so a
library caller that opens none keeps the per-request limits alone, and two
agent requests on two threads each keep their own. Worker threads start with an
empty context: ``carry`` hands them the caller's budget.
"""

from __future__ import annotations

import contextvars
import time

from tufoci.errors import TimedOutError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import TypeVar

    _T = TypeVar("_T")
VERIFY_TIMEOUT = "30s"  # ``tufoci verify``'s default --timeout, on the full path and the fast path alike
_current: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("tufoci_budget", default=None)


class budget:  # noqa: N801  (used as a function: ``with budget(30):``)
    """Everything inside ``with budget(seconds):`` must finish within ``seconds`` (a budget already open and
    shorter still wins). A class rather than ``contextlib.contextmanager``: the warm verify opens one, and
    contextlib is ~0.5 ms of its start-up (docs/performance.md)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._token: contextvars.Token[tuple[float, float] | None] | None = None

    def __enter__(self) -> None:
        until = time.monotonic() + self._seconds
        outer = _current.get()
        self._token = _current.set(outer if outer is not None and outer[0] <= until else (until, self._seconds))

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def until() -> float | None:
    """The ``time.monotonic()`` instant the open budget ends, or None without one."""
    current = _current.get()
    return None if current is None else current[0]


def remaining(default: float) -> float:
    """Seconds left in the open budget (``default`` without one); never negative."""
    current = _current.get()
    return default if current is None else max(0.0, current[0] - time.monotonic())


def exceeded(waiting_for: str) -> TimedOutError:
    """The error when the budget ran out: what was being waited for, and how to allow more."""
    current = _current.get()
    total = f"{current[1]:g} s" if current is not None else "the deadline"
    return TimedOutError(f"gave up after {total} (--timeout / TUFOCI_TIMEOUT) waiting for {waiting_for}")


def carry(function: Callable[..., _T]) -> Callable[..., _T]:
    """``function`` for a worker thread, run under the caller's budget (each call in its own context copy)."""
    context = contextvars.copy_context()

    def run(*args: object) -> _T:
        return context.copy().run(function, *args)

    return run


def parse_seconds(text: str) -> float:
    """``--timeout``/``TUFOCI_TIMEOUT``: seconds (``30``, ``2.5``) or a duration (``30s``, ``5m``).

    Raises:
        UsageError: not a positive, finite duration.
    """
    from tufoci.errors import UsageError

    try:
        # whole seconds with an "s" (the default, 30s) without expiry_periods, which imports datetime
        seconds = float(text[:-1] if text.endswith("s") and text[:-1].isascii() and text[:-1].isdigit() else text)
    except ValueError:
        from tufoci.expiry_periods import parse_duration

        seconds = parse_duration(text).total_seconds()
    if not 0 < seconds < float("inf"):
        raise UsageError(f"invalid --timeout {text!r}: it must be more than 0")
    return seconds
