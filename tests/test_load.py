"""Load: 20 concurrent verifiers against one real registry while a publisher keeps moving a tag.

Twenty threads, each a consumer machine of its own (its own TUFOCI_HOME, opened
with ``State.open(home)`` in the thread), call ``tufoci.client.verify.verify``
in a loop on ``web:1.0`` for ``TUFOCI_LOAD_SECONDS`` (8 s in the suite). A
publisher thread meanwhile flips ``web:1.0`` between two images A and B, each
flip being one *transition*:

    t0  move the registry tag web:1.0 to the other image        (registry: new, signed: old)
        stage its digest (from the build record, no registry read) and publish
    t1  publish returned: the timestamp tag has moved            (registry: new, signed: new)

Outside transitions the registry tag and the signed digest are equal. The
acceptable outcomes are exactly:

* a verify that overlaps no transition returns the digest both sides agree on
  in that stable period — nothing else, no error at all;
* a verify that overlaps a transition (its [start, end] intersects some
  [t0, t1]) returns A or B, or fails with ``DigestMismatchError`` (exit 11)
  naming one of A/B as served and the other as signed: the verifier read the
  metadata and the tag on either side of a move, which is the check doing its
  job.

Anything else — exit 10/12/13, another digest, an exception escaping
``verify`` — fails the test. The numbers (verifies/s, outcomes, publishes,
latency) are printed (``pytest -s``) and written to ``$TUFOCI_LOAD_RESULTS`` (e.g. bench/results/load.json).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import needs_registry, ok, push_test_image, run_tufoci
from tufoci.errors import DigestMismatchError, TufociError

pytestmark = needs_registry

VERIFIERS = int(os.environ.get("TUFOCI_LOAD_VERIFIERS", "20"))
SECONDS = float(os.environ.get("TUFOCI_LOAD_SECONDS", "8"))
# the suite must not dirty the work tree: results go to bench/results/load.json only when asked
RESULTS = Path(os.environ.get("TUFOCI_LOAD_RESULTS") or Path(tempfile.gettempdir()) / "tufoci-load.json")
_MISMATCH = re.compile(r"the registry serves (sha256:[0-9a-f]{64}) but the signed digest is (sha256:[0-9a-f]{64})")


@dataclass
class Sample:
    start: float
    end: float
    kind: str  # "ok", "mismatch", or "unexpected"
    digest: str | None = None  # ok: the verified digest
    served: str | None = None  # mismatch: what the registry served / what was signed
    signed: str | None = None
    detail: str = ""


@dataclass
class Timeline:
    """What the publisher did: [t0, t1] transitions and the digest agreed on after each."""

    initial: str
    transitions: list[tuple[float, float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def overlaps(self, start: float, end: float) -> bool:
        return any(t0 <= end and t1 >= start for t0, t1, _ in self.transitions)

    def stable_digest(self, at: float) -> str:
        digest = self.initial
        for _, t1, after in self.transitions:
            if t1 <= at:
                digest = after
        return digest


def _verifier(home: Path, reference: str, stop: threading.Event, samples: list[Sample], ready: threading.Barrier):
    from tufoci.client.verify import verify
    from tufoci.state import State

    state = State.open(str(home))  # sqlite connections belong to the thread that opened them
    try:
        ready.wait()
        while not stop.is_set():
            start = time.monotonic()
            try:
                (outcome,) = verify([reference], state=state)
            except Exception as e:  # noqa: BLE001 - exactly what this test counts
                samples.append(Sample(start, time.monotonic(), "unexpected", detail=f"raised {type(e).__name__}: {e}"))
                continue
            end = time.monotonic()
            if outcome.image is not None:
                samples.append(Sample(start, end, "ok", digest=outcome.image.digest))
                continue
            error = outcome.error
            match = _MISMATCH.search(str(error))
            if isinstance(error, DigestMismatchError) and match:
                samples.append(Sample(start, end, "mismatch", served=match.group(1), signed=match.group(2)))
            else:
                code = error.exit_code if isinstance(error, TufociError) else "?"
                samples.append(Sample(start, end, "unexpected", detail=f"exit {code} {type(error).__name__}: {error}"))
    finally:
        state.close()


def _publisher(maintainer_home: Path, scope: str, web: str, images: dict[str, tuple[bytes, str]], timeline: Timeline,
               stop: threading.Event, ready: threading.Barrier) -> None:
    from tufoci.keys import env_secrets_handler
    from tufoci.reference import parse_reference
    from tufoci.repo_tool.maintainer import MaintainerSession
    from tufoci.repo_tool.publish import publish
    from tufoci.repo_tool.staging import stage_built_targets
    from tufoci.state import State
    from tufoci.store import open_repository

    state = State.open(str(maintainer_home))
    store = open_repository(parse_reference(web).repository)
    tag = parse_reference(web).tag
    secrets = env_secrets_handler()
    current = timeline.initial
    try:
        ready.wait()
        while not stop.is_set():
            after = next(d for d in images if d != current)
            raw, media_type = images[after]
            t0 = time.monotonic()
            try:
                store.put_manifest(tag, raw, media_type)  # the registry moves first ...
                stage_built_targets(state, [(web, after, len(raw), media_type)])
                publish(MaintainerSession.open(state, scope), secrets=secrets)  # ... then the signed digest (timestamp moves last)
            except TufociError as e:
                timeline.errors.append(f"publish failed: {type(e).__name__}: {e}")
                timeline.transitions.append((t0, float("inf"), after))  # undefined from here on
                return
            t1 = time.monotonic()
            timeline.transitions.append((t0, t1, after))
            current = after
            stop.wait(t1 - t0)  # a stable period as long as the transition: about half the run is stable
    finally:
        state.close()


def test_concurrent_verifiers_while_publishing(registry, tmp_path: Path, home: Path, monkeypatch) -> None:
    from tufoci.client.trust_pins import add_pin
    from tufoci.reference import parse_reference
    from tufoci.state import State
    from tufoci.store import open_repository

    scope = f"{registry.host}/acme"
    web = f"{scope}/web:1.0"
    # two real images in the same repository; web:1.0 will alternate between them
    push_test_image(tmp_path, b"release A", f"{scope}/web:a")
    push_test_image(tmp_path, b"release B", f"{scope}/web:b")
    repo = open_repository(parse_reference(web).repository)
    images: dict[str, tuple[bytes, str]] = {}
    for name in ("a", "b"):
        manifest = repo.get_manifest(name)
        images[manifest.digest] = (manifest.data, manifest.content_type or "application/vnd.oci.image.manifest.v1+json")
    digest_a, digest_b = images
    repo.put_manifest("1.0", *images[digest_a])

    # unencrypted keys: the load is on verifiers, not on key derivation in the publisher
    ok(run_tufoci("key", "generate", "root"))
    ok(run_tufoci("key", "generate", "targets", "--unencrypted"))
    ok(run_tufoci("key", "generate", "online", "--unencrypted"))
    root_file = tmp_path / "root.json"
    ok(run_tufoci("init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                  "--root-out", str(root_file)))
    ok(run_tufoci("target", "add", web))
    ok(run_tufoci("publish", scope))

    homes = []
    for i in range(VERIFIERS):
        consumer = tmp_path / f"verifier-{i:02d}"
        consumer.mkdir()
        state = State.open(str(consumer))
        add_pin(state, scope, root_data=root_file.read_bytes())
        state.close()
        homes.append(consumer)

    timeline = Timeline(digest_a)
    stop = threading.Event()
    ready = threading.Barrier(VERIFIERS + 2)
    per_thread: list[list[Sample]] = [[] for _ in homes]
    threads = [threading.Thread(target=_verifier, args=(h, web, stop, s, ready), name=f"verifier-{i}")
               for i, (h, s) in enumerate(zip(homes, per_thread, strict=True))]
    threads.append(threading.Thread(target=_publisher, name="publisher",
                                    args=(home, scope, web, images, timeline, stop, ready)))
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.monotonic()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), f"{thread.name} hangs"
    elapsed = time.monotonic() - started

    samples = [s for thread_samples in per_thread for s in thread_samples]
    digests = {digest_a, digest_b}
    failures: list[str] = []
    counts = {"ok": 0, "ok_during_transition": 0, "mismatch_during_transition": 0, "unexpected": 0}
    for s in samples:
        overlapped = timeline.overlaps(s.start, s.end)
        if s.kind == "ok" and not overlapped:
            counts["ok"] += 1
            expected = timeline.stable_digest(s.start)
            if s.digest != expected:
                failures.append(f"stable period: verified {s.digest}, expected {expected}")
        elif s.kind == "ok" and s.digest in digests:
            counts["ok_during_transition"] += 1
        elif s.kind == "mismatch" and overlapped and {s.served, s.signed} == digests:
            counts["mismatch_during_transition"] += 1
        else:
            counts["unexpected"] += 1
            failures.append(f"{s.kind} (overlapped a transition: {overlapped}) {s.digest or ''} {s.detail} "
                            f"served={s.served} signed={s.signed}")

    latencies = sorted(s.end - s.start for s in samples)
    publishes = len([t for t in timeline.transitions if t[1] != float("inf")])
    report = {
        "benchmark": "tufoci load: concurrent in-process verifiers while publishing",
        "format": 1,
        "config": {
            "verifiers": VERIFIERS,
            "mode": "threads in one process, one TUFOCI_HOME each (State.open(home)), tufoci.client.verify.verify",
            "seconds": SECONDS,
            "registry": "docker-registry (CNCF distribution) on 127.0.0.1, plain HTTP, filesystem storage",
            "publisher": "moves web:1.0 between two images, then stages its digest and publishes (one thread)",
            "nproc": os.cpu_count(),
        },
        "elapsed_s": round(elapsed, 3),
        "verifies": len(samples),
        "verifies_per_s": round(len(samples) / elapsed, 1),
        "outcomes": counts,
        "publishes": publishes,
        "publishes_per_s": round(publishes / elapsed, 2),
        "time_in_transition_pct": round(100 * sum(min(t1, started + elapsed) - t0 for t0, t1, _ in
                                                 timeline.transitions if t1 != float("inf")) / elapsed, 1),
        "latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
            "max": round(1000 * latencies[-1], 1) if latencies else None,
        },
        "publisher_errors": timeline.errors,
        "failures": failures[:20],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temp = RESULTS.with_suffix(".json.tmp")
    temp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temp, RESULTS)
    print("\n" + json.dumps({k: report[k] for k in ("verifies", "verifies_per_s", "outcomes", "publishes",
                                                     "time_in_transition_pct", "latency_ms")}, indent=1))

    assert not timeline.errors, timeline.errors
    assert publishes >= 2, "the publisher must have moved the tag at least twice"
    assert counts["ok"] > 0, "some verifies must fall in stable periods"
    assert not failures, f"{len(failures)} unacceptable outcomes, e.g. {failures[:5]}"
