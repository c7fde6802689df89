#!/usr/bin/env python3
"""Benchmark ``tufoci admission serve``: warm admissions/s and latency, a cold scope, memory with 50 scopes.

    .venv/bin/python bench/admission.py [--duration S] [--clients N] [--scopes N] [--out bench/out/admission.json]

Issue 13's goal on this 2-core machine: >= 1,000 admissions/s and p99 <= 10 ms with 20 concurrent
clients, for a Pod with three images. Runs with the test extra installed (``.venv``, ``make test``
installs it): it calls the server with ``tests.support.apiserver.ApiserverClient``, exactly as
kube-apiserver calls a webhook (HTTPS to the Service name, ``?timeout=10s``, one kept-alive
connection per client).

Setup (not timed), in a temporary directory removed at the end: a ``docker-registry`` on 127.0.0.1
(tests.support.registry), real images (umoci + skopeo, tests.support.images), a maintainer
``TUFOCI_HOME`` that signs them with ``tufoci init / target add / publish``, a test CA and a serving
certificate for ``tufoci-admission.tufoci-system.svc`` (tests.support.tls), and a policy pinning each
scope's root file.

Measurements:

- ``cold_scope``: a fresh server with an empty cache; the first admission, sent as soon as the server
  logs its ``listening`` line, loads its scope within the request. Repeated ``--cold-runs`` times.
- ``warm``: ``--clients`` processes (each one persistent TLS connection) send Pod CREATEs with three
  signed images to ``/mutate`` for ``--duration`` seconds after the server is ready; every answer must
  be ``allowed`` with a patch (a sample is judged in full by the apiserver rules); admissions/s,
  p50/p90/p99/max latency, errors.
- ``memory``: the server's RSS (``/proc/PID/status`` VmRSS) after one admission per scope with
  ``--scopes`` scopes pinned, beside its RSS with one scope.

Prints a table and writes JSON (every figure with its unit) to ``--out`` (default ``bench/out/``,
git-ignored). Fails with a clear message, exit 2, when ``tufoci admission`` is not in the installed
tufoci.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # for tests.support and bench

from bench.verify import (  # noqa: E402
    BenchError,
    figure,
    machine_info,
    percentile,
    run_checked,
    tufoci_binary,
    unwind_on_signals,
    write_json,
)
from tests.support import admission_reviews as ar  # noqa: E402
from tests.support.apiserver import SERVICE_HOST, ApiserverClient, WebhookCallError  # noqa: E402
from tests.support.images import build_image, images_available, push_image  # noqa: E402
from tests.support.processes import free_port, stop_process  # noqa: E402
from tests.support.registry import RegistryServer, registry_available  # noqa: E402
from tests.support.tls import CertificateAuthority  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "admission.json"
PASSPHRASE = "bench passphrase"
WARM_REPOS = ("web", "api", "worker")  # the Pod's three images, in scope acme
READY_TIMEOUT = 120.0
GOAL_PER_SECOND, GOAL_P99_MS = 1000, 10.0


def require_admission(tufoci: str) -> None:
    """Stop with a clear message when this tufoci has no ``admission`` command (the server is issue 13's).

    Raises:
        SystemExit: exit 2.
    """
    proc = subprocess.run([tufoci, "admission", "serve", "--help"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        print(f"bench: `tufoci admission serve` is missing from {tufoci} (exit {proc.returncode}): this benchmark "
              "needs the admission webhook server of issue 13; install a tufoci that has it", file=sys.stderr)
        raise SystemExit(2)


class Setup:
    """Registry, signed images in ``scopes`` trust repositories, a TLS pair for the Service name."""

    def __init__(self, work: Path, registry: RegistryServer, tufoci: str) -> None:
        self.work, self.registry, self.tufoci = work, registry, tufoci
        base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        base.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", TUFOCI_PASSPHRASE=PASSPHRASE,
                    DOCKER_CONFIG=str(work / "docker-config"), TUFOCI_HOME=str(work / "maintainer"))
        self.env = base
        self.roots: dict[str, Path] = {}
        ca = CertificateAuthority(work / "pki")
        self.ca_file = ca.cert_file
        self.server_cert = ca.issue("admission", hosts=(SERVICE_HOST,))

    def scope(self, name: str) -> str:
        return f"{self.registry.host}/{name}"

    def sign(self, name: str, repos: Sequence[str]) -> list[str]:
        """Push one image per repository under scope ``name``, sign them all; return the references."""
        refs = [f"{self.scope(name)}/{repo}:1.0" for repo in repos]
        for ref in refs:
            push_image(build_image(self.work / "images", f"bench admission {ref}\n".encode()), "latest", ref)
        if not (self.work / "maintainer").exists():
            for role in ("root", "targets"):
                run_checked([self.tufoci, "key", "generate", role], self.env, what="key generate")
            run_checked([self.tufoci, "key", "generate", "online", "--unencrypted"], self.env, what="key generate")
        root = self.work / f"root-{name}.json"
        run_checked([self.tufoci, "init", self.scope(name), "--root-key", "root", "--targets-key", "targets",
                     "--online-key", "online", "--root-out", str(root)], self.env, what=f"init {name}")
        run_checked([self.tufoci, "target", "add", *refs], self.env, what=f"target add {name}")
        run_checked([self.tufoci, "publish", self.scope(name)], self.env, what=f"publish {name}")
        self.roots[name] = root
        return refs

    def policy(self, names: Sequence[str]) -> Path:
        """A policy in enforce mode pinning each named scope's root file (JSON is valid YAML)."""
        policy = {
            "apiVersion": "tufoci.dev/v1", "kind": "AdmissionPolicy", "mode": "enforce", "freshness": "60s",
            "trust": [{"scope": self.scope(n), "root": str(self.roots[n]), "plainHTTP": True} for n in names],
            "rules": [{"images": [f"{self.scope(n)}/**"], "scope": self.scope(n), "mutate": True,
                       "requiredRoles": []} for n in names],
            "exempt": [],
        }
        path = self.work / f"policy-{len(names)}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(json.dumps(policy, indent=2))
        return path


@contextlib.contextmanager
def admission_server(setup: Setup, policy: Path, *, ready: bool = True) -> Iterator[tuple[subprocess.Popen, int]]:
    """``tufoci admission serve`` on 127.0.0.1 with an empty cache; yields once it logs its ``listening`` line
    (and, with ``ready``, once ``/readyz`` answers 200)."""
    port = free_port()
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=setup.work))
    log = (setup.work / f"server-{port}.log").open("w")
    proc = subprocess.Popen(
        [setup.tufoci, "admission", "serve", "--policy", str(policy), "--tls-cert", str(setup.server_cert.cert_file),
         "--tls-key", str(setup.server_cert.key_file), "--listen", f"127.0.0.1:{port}", "--cache-dir", str(cache)],
        env=setup.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(proc, port)
        if ready:
            wait_ready(setup, port)
        yield proc, port
    finally:
        stop_process(proc)
        log.close()


def wait_listening(proc: subprocess.Popen, port: int) -> None:
    """Wait for the line saying the server listens on https://127.0.0.1:PORT, then keep draining stderr.

    Raises:
        BenchError: the server exited or did not say it listens within READY_TIMEOUT.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    seen: list[str] = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline and proc.poll() is None:
            if not sel.select(timeout=0.5):
                continue
            line = proc.stderr.readline()
            seen.append(line)
            # the JSON start-up line: {"event": "listening", "url": "https://HOST:PORT", ...}
            if "listening" in line and f"https://127.0.0.1:{port}" in line:
                # a chatty server must never block on a full pipe
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                return
    raise BenchError(f"tufoci admission serve did not report listening on {port}:\n{''.join(seen)[-3000:]}")


def wait_ready(setup: Setup, port: int) -> None:
    """Poll ``GET /readyz`` until 200. Raises: BenchError after READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    with ApiserverClient(port, setup.ca_file) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(WebhookCallError):
                if client.get("/readyz")[0] == 200:
                    return
            time.sleep(0.2)
    raise BenchError(f"/readyz did not answer 200 within {READY_TIMEOUT:.0f}s")


def admit_once(port: int, ca_file: Path, refs: Sequence[str]) -> tuple[float, Any]:
    """One judged ``/mutate`` admission of a Pod running ``refs``: (seconds, AdmissionResult)."""
    with ApiserverClient(port, ca_file) as client:
        started = time.perf_counter()
        result = client.mutate(ar.pod_create(list(refs)))
        return time.perf_counter() - started, result


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_worker(port: int, ca_file: str, refs: list[str], start_at: float, duration: float,
                  judge_first: int) -> dict[str, Any]:
    """One client process: a persistent connection, Pod CREATEs back to back from ``start_at`` for ``duration``.

    The first ``judge_first`` answers, before the clock starts, are judged in full (apiserver rules, patch
    applied, schema validated: tens of milliseconds of the client's own CPU each, which would otherwise be
    counted as the server's latency); the timed ones are checked cheaply (HTTP 200, uid echoed, allowed, a
    patch) so the client's own cost stays small.
    """
    review = ar.pod_create(list(refs))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    with ApiserverClient(port, ca_file) as client:
        for _ in range(judge_first):  # connection, TLS handshake, server warm-up, full judgement: not timed
            review["request"]["uid"] = str(uuid.uuid4())
            try:
                result = client.mutate(review)
                if not (result.allowed and result.patch is not None):
                    errors["wrong-verdict"] = errors.get("wrong-verdict", 0) + 1
            except WebhookCallError as exc:
                errors[exc.rule] = errors.get(exc.rule, 0) + 1
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + duration
        while time.time() < end:
            review["request"]["uid"] = str(uuid.uuid4())
            started = time.perf_counter()
            try:
                status, _, body = client.post("/mutate", review)
                answer = json.loads(body)["response"]
                ok = (status == 200 and answer["uid"] == review["request"]["uid"] and answer["allowed"] is True
                      and bool(answer.get("patch")))
            except WebhookCallError as exc:
                errors[exc.rule] = errors.get(exc.rule, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            if not ok:
                errors["wrong-verdict"] = errors.get("wrong-verdict", 0) + 1
    return {"latencies": latencies, "errors": errors}


def latency_stats(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    return {"p50": figure(statistics.median(ms), "ms"), "p90": figure(percentile(ms, 90), "ms"),
            "p99": figure(percentile(ms, 99), "ms"), "max": figure(max(ms), "ms")}


def measure_cold(setup: Setup, name: str, refs: Sequence[str], runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        with admission_server(setup, setup.policy([name]), ready=False) as (_, port):
            seconds, result = admit_once(port, setup.ca_file, refs)
            if not (result.allowed and result.patch):
                raise BenchError(f"cold admission not allowed and pinned: {result.message}")
            samples.append(seconds)
    ms = [s * 1000 for s in samples]
    return {"runs": runs, "median": figure(statistics.median(ms), "ms"), "max": figure(max(ms), "ms"),
            "samples": {"value": [round(x, 3) for x in ms], "unit": "ms"}}


def measure_warm(setup: Setup, name: str, refs: Sequence[str], clients: int, duration: float) -> dict[str, Any]:
    with admission_server(setup, setup.policy([name])) as (proc, port):
        seconds, result = admit_once(port, setup.ca_file, refs)
        if not (result.allowed and result.patch):
            raise BenchError(f"warm-up admission not allowed and pinned: {result.message}")
        start_at = time.time() + 5.0 + clients * 0.5  # every client connected and its sample judged first
        with concurrent.futures.ProcessPoolExecutor(max_workers=clients) as pool:
            futures = [pool.submit(client_worker, port, str(setup.ca_file), list(refs), start_at, duration, 10)
                       for _ in range(clients)]
            while time.time() < start_at:
                time.sleep(0.01)
            cpu_before = cpu_seconds(proc.pid)
            outcomes = [f.result() for f in futures]
            server_cpu = cpu_seconds(proc.pid) - cpu_before  # includes the clients' last, untimed requests
        rss_one_scope = rss_kib(proc.pid)
    latencies = [s for o in outcomes for s in o["latencies"]]
    errors: dict[str, int] = {}
    for outcome in outcomes:
        for rule, count in outcome["errors"].items():
            errors[rule] = errors.get(rule, 0) + count
    if not latencies:
        raise BenchError(f"no admission succeeded: {errors}")
    per_second = len(latencies) / duration
    stats = latency_stats(latencies)
    return {"clients": clients, "duration": figure(duration, "s"), "admissions": len(latencies),
            "admissions_per_second": figure(per_second, "1/s"), "latency": stats, "errors": errors,
            "images_per_pod": len(refs), "rss_one_scope": figure(rss_one_scope / 1024, "MiB"),
            # what the machine's 2 cores are shared between: the server's part, per admission
            "server_cpu_per_admission": figure(server_cpu / len(latencies) * 1000, "ms"),
            "load_average_1min": figure(os.getloadavg()[0], "processes"),
            "goal_met": per_second >= GOAL_PER_SECOND and stats["p99"]["value"] <= GOAL_P99_MS and not errors}


def measure_memory(setup: Setup, names: Sequence[str], refs_by_scope: dict[str, list[str]]) -> dict[str, Any]:
    with admission_server(setup, setup.policy(names)) as (proc, port):
        with ApiserverClient(port, setup.ca_file) as client:
            for name in names:  # every scope loaded and used
                result = client.mutate(ar.pod_create(refs_by_scope[name]))
                if not (result.allowed and result.patch):
                    raise BenchError(f"admission in scope {name} not allowed and pinned: {result.message}")
        return {"scopes": len(names), "rss": figure(rss_kib(proc.pid) / 1024, "MiB")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of warm load (default 10)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--scopes", type=int, default=50, help="scopes loaded for the memory figure (default 50)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh servers for the cold figure (default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if min(args.clients, args.scopes, args.cold_runs) < 1 or args.duration <= 0:
        parser.error("--clients, --scopes, --cold-runs and --duration must be positive")
    try:
        tufoci = tufoci_binary()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    require_admission(tufoci)
    if not (registry_available() and images_available()):
        print("bench: docker-registry, umoci and skopeo are needed (make setup)", file=sys.stderr)
        return 2
    unwind_on_signals()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tufoci-bench-admission-"))
    try:
        with RegistryServer.start(work / "registry") as registry:
            setup = Setup(work, registry, tufoci)
            print(f"bench: registry {registry.host}; signing images in {args.scopes} scopes …", file=sys.stderr)
            refs = {"acme": setup.sign("acme", WARM_REPOS)}
            others = [f"s{i:02d}" for i in range(args.scopes - 1)]
            for name in others:
                refs[name] = setup.sign(name, ["app"])
            print("bench: cold scope …", file=sys.stderr)
            cold = measure_cold(setup, "acme", refs["acme"], args.cold_runs)
            print(f"bench: warm, {args.clients} clients × {args.duration:g}s …", file=sys.stderr)
            warm = measure_warm(setup, "acme", refs["acme"], args.clients, args.duration)
            print(f"bench: memory with {args.scopes} scopes …", file=sys.stderr)
            memory = measure_memory(setup, ["acme", *others], refs)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    data = {
        "benchmark": "tufoci admission serve", "format": 1, "machine": machine_info(),
        "config": {"clients": args.clients, "duration": figure(args.duration, "s"), "scopes": args.scopes,
                   "cold_runs": args.cold_runs, "goal": {"admissions_per_second": GOAL_PER_SECOND,
                                                         "p99": figure(GOAL_P99_MS, "ms")},
                   "client": "tests.support.apiserver.ApiserverClient, one process and one TLS connection each",
                   "bench_duration": figure(time.perf_counter() - started, "s")},
        "results": {"cold_scope_first_admission": cold, "warm": warm, "memory": memory},
    }
    lat = warm["latency"]
    print(f"\nwarm: {warm['admissions_per_second']['value']:.0f} admissions/s with {args.clients} clients, "
          f"p50 {lat['p50']['value']:.2f} ms, p99 {lat['p99']['value']:.2f} ms, max {lat['max']['value']:.2f} ms, "
          f"errors {warm['errors'] or 0} (goal >= {GOAL_PER_SECOND}/s, p99 <= {GOAL_P99_MS:g} ms: "
          f"{'met' if warm['goal_met'] else 'NOT met'}); server CPU "
          f"{warm['server_cpu_per_admission']['value']:.2f} ms per admission, load average "
          f"{warm['load_average_1min']['value']:.1f}")
    print(f"cold scope, first admission: median {cold['median']['value']:.1f} ms over {cold['runs']} fresh servers")
    print(f"memory: RSS {memory['rss']['value']:.1f} MiB with {memory['scopes']} scopes "
          f"({warm['rss_one_scope']['value']:.1f} MiB with one)")
    write_json(args.out, data)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
