"""Verified views: answered from memory, one refresher, first loads within the request's budget.

The loaders here are in-memory stand-ins for a scope's refresh (the real one,
through the Verifier and a registry, is exercised by the server and attack
tests); they count calls and can be made slow or failing.
"""

from __future__ import annotations

import datetime
import threading
import time

from tufoci.client.signed_targets import SignedTargets
from tufoci.enforce.view import REJECTED, UNREACHABLE, ScopeView, ViewFailure, Views
from tufoci.errors import MetadataRejectedError, RegistryError


class Loader:
    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self.error = delay, 0, None
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> SignedTargets:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        self.release.wait(30)
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        return SignedTargets("s", {}, {}, expires)


def test_a_loaded_view_is_answered_from_memory_while_the_refresher_is_stuck():
    loader = Loader()
    views = Views({"s": loader}, window=60)
    first = views.view("s", budget=5)
    assert isinstance(first, ScopeView) and loader.calls == 1
    loader.release.clear()  # every further load hangs
    views.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert views.view("s", budget=5) is first and time.monotonic() - started < 0.05
    assert views.ready()
    views.stop()
    loader.release.set()


def test_one_refresher_thread_refreshes_every_half_window_and_a_failure_keeps_the_view():
    loader = Loader()
    views = Views({"a": loader, "b": loader}, window=0.4)
    views.start()
    try:
        time.sleep(1.0)  # ≈ rounds at 0, 0.2, 0.4, 0.6, 0.8 s
        assert 4 <= loader.calls <= 12 and loader.threads == {"tufoci-refresher"}
        kept = views.view("a", budget=1)
        loader.error = RegistryError("cannot reach registry")
        time.sleep(0.5)
        assert views.view("a", budget=1) is kept and views.refresh_errors()["a"] >= 1
        assert kept.stale_since(time.time(), views.window) is not None  # the decision now fails closed
    finally:
        views.stop()


def test_a_first_load_gets_the_request_budget_and_goes_on_in_the_background():
    loader = Loader(delay=0.5)
    views = Views({"s": loader}, window=60)
    started = time.monotonic()
    failure = views.view("s", budget=0.1)
    assert isinstance(failure, ViewFailure) and failure.reason == UNREACHABLE
    assert "could not be loaded within 0.1s" in failure.message and time.monotonic() - started < 0.3
    # concurrent requests join the load in flight: one load, not one per request
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(views.view("s", budget=2))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(a, ScopeView) for a in answers) and loader.calls == 1


def test_first_load_failures_say_why():
    loader = Loader()
    loader.error = MetadataRejectedError("metadata rejected: timestamp expired")
    views = Views({"s": loader}, window=60)
    rejected = views.view("s", budget=1)
    assert rejected == ViewFailure(REJECTED, "trust data of s rejected: metadata rejected: timestamp expired")
    loader.error = RegistryError("cannot reach registry 127.0.0.1:1")
    assert views.view("s", budget=1) == ViewFailure(UNREACHABLE, "trust data of s unreachable: cannot reach "
                                                                 "registry 127.0.0.1:1")
    assert views.view("nowhere", budget=1).reason == UNREACHABLE
    assert not views.ready() and views.ages() == {"s": None} and views.refresh_errors() == {"s": 2}
