"""Verified views: each pinned scope's signed targets, held in memory and kept fresh.

An enforcement point answers from memory: a request never waits on the
network while its scope's view is fresh. ONE refresher thread re-verifies every
scope every W/2 (W = the policy's freshness window) through the library's
``Verifier`` (python-tuf's client workflow, the transactional cache); a failed
refresh keeps the previous view, which the decision then refuses once it is
older than W or once any role it relies on has expired ("trust data stale since
…"). The first request for a scope nobody has loaded yet loads it itself, within
that request's time budget; a slow load goes on in the background and the
request is answered "trust data unreachable".

Nothing here knows about Kubernetes: the verifying mirror reuses it as is.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tufoci.client.signed_targets import SignedTargets
from tufoci.client.trust_pins import fetch_root_by_sha256, make_pin
from tufoci.client.verify import Verifier
from tufoci.enforce.policy import Policy, PolicyError, TrustEntry
from tufoci.errors import MetadataRejectedError, NotSignedError, TufociError, UsageError
from tufoci.registry_options import RegistryOptions
from tufoci.state import Pin

_log = logging.getLogger(__name__)

UNREACHABLE = "trust-data-unreachable"
REJECTED = "metadata-rejected"


@dataclass(frozen=True)
class ScopeView:
    """One verified refresh of a scope, and when it was made (wall clock, seconds)."""

    signed: SignedTargets
    loaded_at: float

    def stale_since(self, now: float, window: float) -> str | None:
        """None while usable; else since when (ISO time) it is not.

        Stale once older than the window, or once any role it relies on has
        expired (whichever comes first): then it must not be used to admit.
        """
        expires = self.signed.expires.timestamp()
        limit = min(self.loaded_at + window, expires)
        if now < limit:
            return None
        return datetime.datetime.fromtimestamp(limit, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ViewFailure:
    """Why no view can be used for a scope: ``reason`` is a decision reason category."""

    reason: str
    message: str


Loader = Callable[[], SignedTargets]


class _Scope:
    """One scope's state: its view, the load in flight, the last error."""

    def __init__(self, loader: Loader):
        self.loader = loader
        self.view: ScopeView | None = None
        self.loading: threading.Event | None = None  # set while a load runs: one load of a scope at a time
        self.last_error: TufociError | None = None
        self.errors = 0


class Views:
    """The views of every pinned scope, one refresher thread for all of them."""

    def __init__(self, loaders: Mapping[str, Loader], window: float, *, clock: Callable[[], float] = time.time):
        self.window = window
        self.clock = clock
        self._scopes = {scope: _Scope(loader) for scope, loader in loaders.items()}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def scopes(self) -> list[str]:
        return list(self._scopes)

    def start(self) -> None:
        """Start the refresher: every scope now, then every W/2."""
        self._thread = threading.Thread(target=self._run, name="tufoci-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for scope in self._scopes:
                if self._stop.is_set():
                    return
                self.refresh(scope)
            self._stop.wait(max(0.0, self.window / 2 - (time.monotonic() - started)))

    def refresh(self, scope: str) -> None:
        """Load ``scope`` now (serialised per scope); a failure keeps the previous view."""
        state = self._scopes[scope]
        with self._guard:
            done = state.loading
            if done is None:
                done = state.loading = threading.Event()
                mine = True
            else:
                mine = False
        if not mine:
            done.wait()
            return
        try:
            started = self.clock()
            try:
                signed = state.loader()
            except TufociError as e:
                state.last_error, state.errors = e, state.errors + 1
                _log.warning(json.dumps({"event": "refresh-failed", "scope": scope, "error": str(e)}))
                return
            except Exception as e:  # noqa: BLE001 - the refresher must outlive any bug in one scope
                state.last_error, state.errors = TufociError(f"{type(e).__name__}: {e}"), state.errors + 1
                _log.exception("refresh of %s failed", scope)
                return
            state.view, state.last_error = ScopeView(signed, started), None
        finally:
            with self._guard:
                state.loading = None
            done.set()

    def view(self, scope: str, budget: float) -> ScopeView | ViewFailure:
        """The scope's current view; loads it (waiting at most ``budget`` seconds) when none exists yet.

        A view is returned even when stale: the caller's decision says so, with the time.
        """
        state = self._scopes.get(scope)
        if state is None:
            return ViewFailure(UNREACHABLE, f"no trust pin for {scope}")
        if state.view is not None:
            return state.view
        in_flight = state.loading  # join the load in flight (the refresher's or another request's)
        if in_flight is not None:
            finished = in_flight.wait(budget)
        else:
            loader = threading.Thread(target=self.refresh, args=(scope,), name=f"tufoci-load-{scope}", daemon=True)
            loader.start()
            loader.join(budget)
            finished = not loader.is_alive()
        if state.view is not None:
            return state.view
        error = state.last_error
        if not finished or error is None:
            return ViewFailure(UNREACHABLE, f"trust data of {scope} could not be loaded within {budget:.1f}s")
        reason = str(error).removeprefix(f"{scope}: ")  # the refresh names its scope (issue 18): once is enough
        if isinstance(error, (MetadataRejectedError, NotSignedError)):
            return ViewFailure(REJECTED, f"trust data of {scope} rejected: {reason}")
        return ViewFailure(UNREACHABLE, f"trust data of {scope} unreachable: {reason}")

    def ready(self) -> bool:
        """Every pinned scope has been loaded at least once."""
        return all(state.view is not None for state in self._scopes.values())

    def ages(self) -> dict[str, float | None]:
        """Seconds since each scope's view was verified (None: never)."""
        now = self.clock()
        return {scope: None if s.view is None else now - s.view.loaded_at for scope, s in self._scopes.items()}

    def refresh_errors(self) -> dict[str, int]:
        return {scope: s.errors for scope, s in self._scopes.items()}


def loaders_for_policy(policy: Policy, cache: str, registry: RegistryOptions = RegistryOptions()
                       ) -> dict[str, Loader]:
    """One loader per trust entry, each with its own in-process ``Verifier`` (no state.db, no TUFOCI_HOME),
    reaching registries as ``registry`` says (certs.d, registries.conf, proxies, credentials), the entry's own
    TLS options first, through one connection pool for the whole policy (``registry``'s, or a new one).

    Root files are read now, so that a missing or invalid one stops the start;
    a ``rootSha256`` pin fetches its root from the registry on first load, and
    the root must hash to the pinned value.

    Raises:
        PolicyError: a root file cannot be read or is not TUF root metadata.
    """
    loaders, registry = {}, registry.pooled()
    for index, entry in enumerate(policy.trust):
        pin = None
        if entry.root_file is not None:
            try:
                with open(entry.root_file, "rb") as f:
                    pin = make_pin(entry.scope, f.read(), directory=os.path.join(cache, "roots"),
                                   metadata=entry.metadata)
            except OSError as e:
                raise PolicyError(f"{policy.source}: field trust[{index}].root: cannot read {entry.root_file}: "
                                  f"{e.strerror}") from e
            except UsageError as e:
                raise PolicyError(f"{policy.source}: field trust[{index}].root: {entry.root_file}: {e}") from e
        loaders[entry.scope] = _loader(entry, pin, cache, registry)
    return loaders


def _loader(entry: TrustEntry, pin: Pin | None, cache: str, registry: RegistryOptions) -> Loader:
    registry = registry.with_flags(entry.tls_flags())  # the pool stays: every load reuses its connections
    pinned: list[Pin] = [pin] if pin is not None else []

    def load() -> SignedTargets:
        if not pinned:  # rootSha256: the registry says where the root is, the hash says whether to trust it
            data = fetch_root_by_sha256(entry.scope, entry.root_sha256 or "", entry.metadata, registry=registry)
            pinned.append(make_pin(entry.scope, data, directory=os.path.join(cache, "roots"),
                                   metadata=entry.metadata, expected_sha256=entry.root_sha256))
        return Verifier(pins=pinned, cache=cache, registry=registry).signed_targets(pinned[0])

    return load
