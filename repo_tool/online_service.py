"""The online service: the one process that holds the online key.

It does what Notary's server and signer did, and nothing more: every poll
interval (default 30 s) it promotes complete proposals — with the same
``publish`` (the same plan, the same compare-and-swap on ``timestamp``) plus
its high-water marks — and every ``every`` it re-signs the timestamp (and
snapshot when due). It signs snapshot and timestamp only: a proposal goes live
only when the maintainers' signatures already meet every threshold, so holding
the online key never lets the service change what a tag points to.

Two services may run against the same scope: the compare-and-swap on
``timestamp`` lets exactly one of them publish a given proposal; the other gets
a concurrent-publish refusal, logs it, and on its next poll finds the proposal
live (stale), so nothing is published twice.

What it did is logged as JSON lines on stderr and kept in ``online-status.json``
in its ``TUFOCI_HOME`` (written atomically after every poll), for monitoring.
"""

from __future__ import annotations

import datetime
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tufoci.atomic_file import atomic_write
from tufoci.errors import ConcurrentPublishError, NothingStagedError, TufociError
from tufoci.render import expiry_warning
from tufoci.repo_tool.freshness import Refreshed
from tufoci.repo_tool.publish import PublishResult

DEFAULT_POLL = datetime.timedelta(seconds=30)
POLL_SETTING = "online-poll"  # what a maintainer's publish tells people to wait ("goes live within N s")
STATUS_FILE = "online-status.json"
MAX_PUBLISHED_KEPT = 100


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ServiceStatus:
    """What ``online-status.json`` holds: enough to alert on a service that stopped working."""

    scope: str
    poll_seconds: float
    every_seconds: float
    started: str
    last_poll: str | None = None
    last_error: str | None = None
    timestamp: dict | None = None  # the last timestamp this service signed: version, expires, at
    published: list[dict] = field(default_factory=list)  # newest last: at, versions, promoted

    def to_dict(self) -> dict:
        return {"scope": self.scope, "pollSeconds": self.poll_seconds, "everySeconds": self.every_seconds,
                "started": self.started, "lastPoll": self.last_poll, "lastError": self.last_error,
                "timestamp": self.timestamp, "published": self.published}


def run_service(
    scope: str,
    *,
    promote: Callable[[], PublishResult],
    refresh: Callable[[], Refreshed],
    every: datetime.timedelta,
    poll: datetime.timedelta = DEFAULT_POLL,
    status_path: str | None,
    log: Callable[[dict], None],
    stop: threading.Event | None = None,
) -> int:
    """Promote complete proposals every ``poll`` and refresh the timestamp every ``every``, until SIGTERM/SIGINT.

    Returns the number of publishes. Never raises for a registry outage or a lost
    race: it logs and tries again at the next poll, because stopping would let
    the timestamp expire.
    """
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = ServiceStatus(scope, poll.total_seconds(), every.total_seconds(), _iso(datetime.datetime.now(datetime.UTC)))
    next_refresh = time.monotonic()
    done = 0
    try:
        while not stop.is_set():
            now = datetime.datetime.now(datetime.UTC)
            status.last_poll, status.last_error = _iso(now), None
            try:
                result = promote()
            except NothingStagedError:
                pass  # no complete proposal: the common case
            except ConcurrentPublishError as e:
                log({"event": "concurrent", "msg": f"not published: {e}; next poll sees the winner's state"})
            except TufociError as e:
                status.last_error = str(e)
                log({"event": "error", "msg": f"promotion failed: {e}; retrying in {int(poll.total_seconds())} s"})
            else:
                done += 1
                record = {"at": _iso(now), "versions": result.published,
                          "promoted": sorted(result.published.keys() - {"snapshot", "timestamp"})}
                status.published = [*status.published, record][-MAX_PUBLISHED_KEPT:]
                log({"event": "published", "scope": scope, **record,
                     "msg": f"{scope}: published " + ", ".join(f"{r} v{v}" for r, v in result.published.items())})
                next_refresh = time.monotonic() + every.total_seconds()  # it signed a fresh timestamp
            if time.monotonic() >= next_refresh and not stop.is_set():
                next_refresh = _refresh(refresh, status, log, every, poll)
            if status_path:
                atomic_write(status_path, json.dumps(status.to_dict(), indent=2, sort_keys=True).encode() + b"\n")
            stop.wait(max(0.0, min(poll.total_seconds(), next_refresh - time.monotonic())))
        log({"event": "stopping", "msg": "stopping: signal received"})
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return done


def _refresh(refresh: Callable[[], Refreshed], status: ServiceStatus, log: Callable[[dict], None],
             every: datetime.timedelta, poll: datetime.timedelta) -> float:
    """One timestamp refresh; returns when the next one is due (sooner after a failure)."""
    try:
        result = refresh()
    except TufociError as e:
        wait = min(every, poll)
        status.last_error = str(e)
        log({"event": "error", "msg": f"refresh failed: {e}; retrying in {int(wait.total_seconds())} s"})
        return time.monotonic() + wait.total_seconds()
    status.timestamp = {"version": result.timestamp_version, "expires": _iso(result.timestamp_expires),
                        "at": _iso(datetime.datetime.now(datetime.UTC))}
    log({"event": "timestamp", "scope": result.scope, "version": result.timestamp_version,
         "msg": f"{result.scope}: timestamp v{result.timestamp_version} expires {_iso(result.timestamp_expires)}"
                + (f", snapshot re-signed as v{result.snapshot_version}" if result.snapshot_resigned else "")})
    for w in result.warnings:  # issue 15.4: roles expiring soon, and who must renew each
        warning = expiry_warning(w.role, w.version, w.warning, w.expires, w.advice)
        log({"event": "expiry-warning", "scope": result.scope, "msg": f"warning: {result.scope}: {warning}"})
    return time.monotonic() + every.total_seconds()
