#!/usr/bin/env python3
"""Benchmark ``tufoci verify`` against a real registry on loopback.

    .venv/bin/python bench/verify.py [--runs N] [--out bench/out/verify.json] [--profile]

Sets up everything it needs in a temporary directory and removes it at the end:
a ``docker-registry`` (CNCF distribution, tests.support.registry) on 127.0.0.1,
ten real images (umoci + skopeo, tests.support.images) under ``acme/``, a
maintainer ``TUFOCI_HOME`` that generates keys, ``init``s the scope, stages the
ten tags and publishes, and a consumer ``TUFOCI_HOME`` that pins the root with
``tufoci trust add``.

Every verify is a separate ``tufoci`` process timed by wall clock (what a
deployment script pays), N runs each, reported as median and p90:

- cold verify of one tag (the consumer's ``$TUFOCI_HOME/cache`` deleted first),
- warm verify of one tag (answered by the fast path, client/fast_verify.py), and the same with
  ``TUFOCI_NO_FAST_PATH=1`` (the full python-tuf path),
- warm verify of one tag with ``--skip-registry-check``,
- warm verify of ten tags in one call,

and for each, the registry HTTP requests per run, counted in the registry's
access log and split into metadata-repository requests (``/v2/acme/tuf/``) and
image requests. Reference points: ``python -c pass``, ``python -c "import
tufoci.client.verify"`` and ``tufoci --version`` (CLI start-up floor). The
in-process cost is measured in one long-lived process (what a webhook pays)
calling ``tufoci.client.verify.verify()`` repeatedly on a warm cache.

``--profile`` adds the heaviest imports of ``tufoci.client.verify``
(``-X importtime``) and a cProfile of one warm CLI verify to the output.

Results go to stdout as a table and to ``--out`` as JSON (every figure carries
its unit). Needs ``docker-registry``, ``umoci`` and ``skopeo`` (``make setup``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # for tests.support and bench; an installed tufoci comes first
# child interpreters (python -c …) must not import the source tree from the working directory either
os.environ["PYTHONSAFEPATH"] = "1"

from tests.support.images import build_image, images_available, push_image  # noqa: E402
from tests.support.registry import RegistryServer, registry_available  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "verify.json"  # untracked; make bench-results updates bench/results/
PYTHON = sys.executable
SCOPE_PREFIX = "acme"
METADATA_PREFIX = f"/v2/{SCOPE_PREFIX}/tuf/"
PASSPHRASE = "bench passphrase"
# The ten signed tags: three repositories, one distinct image per tag.
IMAGES = [("web", f"1.{i}") for i in range(4)] + [("api", f"2.{i}") for i in range(3)] + [
    ("worker", f"3.{i}") for i in range(3)
]
RUN_TIMEOUT = 60.0

# Runs inside a separate, long-lived Python process: the library API on a warm cache.
INPROCESS_SNIPPET = textwrap.dedent(
    """
    import json, sys, time
    from tufoci.state import State
    from functools import partial
    from tufoci.client.verify import Verifier, verify
    from tufoci.registry_options import RegistryOptions

    spec = json.loads(sys.argv[1])
    state = State.open()
    pool = RegistryOptions().pooled()
    results = {}
    for case in spec["cases"]:
        refs, check = case["refs"], case["check_registry"]
        if case.get("freshness") is None:
            # a new Verifier, so a full refresh, per call; the connections are the process's pool, as an
            # embedder keeps one (docs/library.md): before issue 12 a hidden process-wide cache did this
            call = partial(verify, state=state, registry=pool)
        else:  # one long-lived Verifier, as an admission webhook keeps
            call = Verifier(state, freshness=case["freshness"]).verify
        for _ in range(spec["warmup"]):
            for outcome in call(refs, check_registry=check):
                if outcome.error is not None:
                    sys.exit(f"{outcome.reference}: {outcome.error}")
        times = []
        deadline = time.perf_counter() + spec["seconds"]
        while len(times) < spec["max_calls"] and (len(times) < spec["min_calls"] or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            outcomes = call(refs, check_registry=check)
            times.append(time.perf_counter() - t0)
            for outcome in outcomes:
                if outcome.error is not None:
                    sys.exit(f"{outcome.reference}: {outcome.error}")
        results[case["name"]] = times
        # One line per case so the parent can count this case's registry requests.
        print(json.dumps({"case": case["name"], "calls": spec["warmup"] + len(times)}), flush=True)
        sys.stdin.readline()
    print(json.dumps({"times": results}), flush=True)
    """
)

PROFILE_SNIPPET = textwrap.dedent(
    """
    import cProfile, io, pstats, sys
    profile = cProfile.Profile()
    profile.enable()
    from tufoci.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
    sys.stderr.write(out.getvalue())
    sys.exit(code)
    """
)


# ---------------------------------------------------------------------------- helpers


class BenchError(RuntimeError):
    pass


def figure(value: float | int, unit: str) -> dict[str, Any]:
    if isinstance(value, float):
        value = round(value, 3)
    return {"value": value, "unit": unit}


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    data = sorted(samples)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def time_stats(seconds: Sequence[float], *, keep_samples: bool = True) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    stats = {
        "median": figure(statistics.median(ms), "ms"),
        "p90": figure(percentile(ms, 90), "ms"),
        "min": figure(min(ms), "ms"),
        "max": figure(max(ms), "ms"),
        "mean": figure(statistics.fmean(ms), "ms"),
    }
    if keep_samples:
        stats["samples"] = {"value": [round(x, 3) for x in ms], "unit": "ms"}
    return stats


def count_stats(counts: Sequence[int], unit: str) -> dict[str, Any]:
    return {
        "median": figure(statistics.median(counts), unit),
        "min": figure(min(counts), unit),
        "max": figure(max(counts), unit),
    }


def unwind_on_signals() -> None:
    """SIGTERM/SIGHUP raise SystemExit, so the finally blocks stop the servers and remove the temp dir."""

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def run_checked(
    argv: Sequence[str], env: dict[str, str], *, what: str, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)[:500]}\n{proc.stderr.strip()[-3000:]}")
    return proc


def parse_importtime(stderr: str) -> tuple[list[tuple[int, int, int, str]], dict[str, int]]:
    """``python -X importtime`` output as (self us, cumulative us, depth, module) rows, and self time per package."""
    rows: list[tuple[int, int, int, str]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|", 2)
        name = name.rstrip()[1:]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((int(self_us), int(cumulative_us), depth, name.strip()))
    by_package: dict[str, int] = {}
    for self_us, _, _, name in rows:
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + self_us
    return rows, by_package


def split_requests(lines: Sequence[Any]) -> tuple[int, int]:
    """(metadata-repository requests, image requests)."""
    metadata = sum(1 for line in lines if line.path.startswith(METADATA_PREFIX))
    return metadata, len(lines) - metadata


def tufoci_binary() -> str:
    candidate = Path(PYTHON).parent / "tufoci"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("tufoci")
    if found is None:
        raise BenchError("the tufoci CLI is not installed next to this Python (pip install -e .)")
    return found


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def tool_version(*argv: str) -> str | None:
        try:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = tool_version("git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD")
    dirty = tool_version("git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": nproc,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "tufoci": version("tufoci"),
        "tufoci_git_commit": None if commit is None else commit + ("+dirty" if dirty else ""),
        "python_tuf": version("tuf"),
        "securesystemslib": version("securesystemslib"),
        "urllib3": version("urllib3"),
        "registry": tool_version("docker-registry", "--version"),
    }


# ---------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, work: Path, registry: RegistryServer, runs: int) -> None:
        self.work = work
        self.registry = registry
        self.runs = runs
        self.tufoci = tufoci_binary()
        self.scope = f"{registry.host}/{SCOPE_PREFIX}"
        self.refs = [f"{self.scope}/{repo}:{tag}" for repo, tag in IMAGES]
        self.maintainer_home = work / "maintainer"
        self.consumer_home = work / "consumer"
        self.root_file = work / "root.json"
        base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        base.update(
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            DOCKER_CONFIG=str(work / "docker-config"),  # never the user's credentials
            TUFOCI_PASSPHRASE=PASSPHRASE,
            PYTHONUNBUFFERED="1",
        )
        base.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with bytecode caching, as users run it
        base.pop("PYTHONPROFILEIMPORTTIME", None)
        self.maintainer_env = dict(base, TUFOCI_HOME=str(self.maintainer_home))
        self.consumer_env = dict(base, TUFOCI_HOME=str(self.consumer_home))

    # -- setup -----------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        timings: dict[str, Any] = {}
        t0 = time.perf_counter()
        for repo, tag in IMAGES:
            layout = build_image(self.work / "images", f"tufoci bench image {repo}:{tag}\n".encode())
            push_image(layout, "latest", f"{self.scope}/{repo}:{tag}")
        timings["build_and_push_images"] = figure(time.perf_counter() - t0, "s")

        def tufoci(*args: str) -> None:
            run_checked([self.tufoci, *args], self.maintainer_env, what=f"tufoci {args[0]}")

        t0 = time.perf_counter()
        tufoci("key", "generate", "root")
        tufoci("key", "generate", "targets")
        tufoci("key", "generate", "online", "--unencrypted")
        tufoci(
            "init", self.scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
            "--root-out", str(self.root_file),
        )
        tufoci("target", "add", *self.refs)
        tufoci("publish", self.scope)
        timings["maintainer_setup"] = figure(time.perf_counter() - t0, "s")
        run_checked(
            [self.tufoci, "trust", "add", self.scope, "--root", str(self.root_file)],
            self.consumer_env,
            what="tufoci trust add",
        )
        # Sanity: the consumer resolves every tag to the digest the registry serves.
        out = run_checked([self.tufoci, "verify", *self.refs], self.consumer_env, what="first verify").stdout
        if len(out.split()) != len(self.refs):
            raise BenchError(f"first verify printed {out!r} for {len(self.refs)} references")
        return timings

    # -- measurements ------------------------------------------------------------
    def measure(
        self,
        name: str,
        description: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        before: Callable[[], None] | None = None,
        warmup: int = 0,
        count_requests: bool = True,
    ) -> dict[str, Any]:
        for _ in range(warmup):
            if before:
                before()
            run_checked(argv, env, what=name)
        seconds: list[float] = []
        meta_counts: list[int] = []
        image_counts: list[int] = []
        for _ in range(self.runs):
            if before:
                before()
            mark = self.registry.mark() if count_requests else 0
            t0 = time.perf_counter()
            proc = subprocess.run(
                list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=RUN_TIMEOUT, check=False,
            )
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                raise BenchError(f"{name} failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stderr[-3000:]}")
            seconds.append(elapsed)
            if count_requests:
                meta, image = split_requests(self.registry.access_log_lines(mark))
                meta_counts.append(meta)
                image_counts.append(image)
        result: dict[str, Any] = {
            "description": description,
            "command": [Path(argv[0]).name, *argv[1:]],
            "runs": self.runs,
            "wall_time": time_stats(seconds),
        }
        if count_requests:
            result["requests"] = {
                "total": count_stats([m + i for m, i in zip(meta_counts, image_counts, strict=True)], "requests/run"),
                "metadata_repository": count_stats(meta_counts, "requests/run"),
                "image": count_stats(image_counts, "requests/run"),
            }
        return result

    def drop_consumer_cache(self) -> None:
        shutil.rmtree(self.consumer_home / "cache", ignore_errors=True)

    def cli_cases(self) -> dict[str, Any]:
        one = self.refs[0]
        results: dict[str, Any] = {}
        results["python_pass"] = self.measure(
            "python_pass", "interpreter start-up floor", [PYTHON, "-c", "pass"], self.consumer_env,
            warmup=1, count_requests=False,
        )
        results["import_client_verify"] = self.measure(
            "import_client_verify", "start-up plus the verify path's imports",
            [PYTHON, "-c", "import tufoci.client.verify"], self.consumer_env, warmup=1, count_requests=False,
        )
        results["cli_version"] = self.measure(
            "cli_version", "CLI start-up floor (click, no verify imports)",
            [self.tufoci, "--version"], self.consumer_env, warmup=1, count_requests=False,
        )
        results["verify_cold_1_tag"] = self.measure(
            "verify_cold_1_tag", "verify one tag, consumer cache deleted before each run",
            [self.tufoci, "verify", one], self.consumer_env, before=self.drop_consumer_cache,
        )
        results["verify_warm_1_tag"] = self.measure(
            "verify_warm_1_tag", "verify one tag, warm cache, registry tag checked",
            [self.tufoci, "verify", one], self.consumer_env, warmup=1,
        )
        results["verify_warm_1_tag_full_path"] = self.measure(
            "verify_warm_1_tag_full_path", "verify one tag, warm cache, without the fast path (TUFOCI_NO_FAST_PATH=1)",
            [self.tufoci, "verify", one], dict(self.consumer_env, TUFOCI_NO_FAST_PATH="1"), warmup=1,
        )
        results["verify_warm_1_tag_skip_registry_check"] = self.measure(
            "verify_warm_1_tag_skip_registry_check", "verify one tag, warm cache, --skip-registry-check",
            [self.tufoci, "verify", "--skip-registry-check", one], self.consumer_env, warmup=1,
        )
        results[f"verify_warm_{len(self.refs)}_tags"] = self.measure(
            f"verify_warm_{len(self.refs)}_tags", f"verify {len(self.refs)} tags in one call, warm cache",
            [self.tufoci, "verify", *self.refs], self.consumer_env, warmup=1,
        )
        return results

    def in_process(self) -> dict[str, Any]:
        """verify() called repeatedly in one process; requests counted per case."""
        cases = [
            {"name": "verify_1_tag", "refs": self.refs[:1], "check_registry": True},
            {"name": "verify_1_tag_skip_registry_check", "refs": self.refs[:1], "check_registry": False},
            {"name": f"verify_{len(self.refs)}_tags", "refs": self.refs, "check_registry": True},
            # a long-lived Verifier: with no window it re-reads the timestamp manifest on each call (and keeps
            # the last answers while it is unchanged); with a 30 s window it asks the registry nothing
            {"name": "verifier_window_0s_1_tag_skip_registry_check", "refs": self.refs[:1],
             "check_registry": False, "freshness": 0},
            {"name": "verifier_window_30s_1_tag_skip_registry_check", "refs": self.refs[:1],
             "check_registry": False, "freshness": 30},
            {"name": "verifier_window_30s_1_tag", "refs": self.refs[:1], "check_registry": True, "freshness": 30},
        ]
        spec = {
            "cases": cases,
            "warmup": 3,
            "min_calls": max(self.runs, 20),
            "max_calls": 2000,
            "seconds": 2.0,
        }
        mark = self.registry.mark()
        proc = subprocess.Popen(
            [PYTHON, "-c", INPROCESS_SNIPPET, json.dumps(spec)],
            env=self.consumer_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        calls: dict[str, int] = {}
        requests: dict[str, tuple[int, int]] = {}
        try:
            for _ in cases:
                line = proc.stdout.readline()
                if not line:
                    break
                info = json.loads(line)
                lines = self.registry.access_log_lines(mark)
                requests[info["case"]] = split_requests(lines)
                calls[info["case"]] = info["calls"]
                mark = self.registry.mark()
                try:
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    break  # the child died; its stderr says why
            final = proc.stdout.readline()
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            stderr = proc.stderr.read() if proc.stderr else ""
            code = proc.wait(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0 or not final:
            raise BenchError(f"in-process benchmark failed (exit {code}):\n{stderr[-3000:]}")
        times = json.loads(final)["times"]
        results: dict[str, Any] = {}
        for case in cases:
            name = case["name"]
            samples = times[name]
            n_refs = len(case["refs"])
            meta, image = requests[name]
            n = calls[name]
            api = "tufoci.client.verify.verify()" if case.get("freshness") is None else \
                f"one tufoci.client.verify.Verifier(freshness={case['freshness']}).verify()"
            results[name] = {
                "description": f"{api} on {n_refs} reference(s), warm, "
                + ("registry tag checked" if case["check_registry"] else "check_registry=False"),
                "calls": len(samples),
                "references_per_call": n_refs,
                "per_call": time_stats(samples, keep_samples=False),
                "calls_per_second": figure(len(samples) / sum(samples), "calls/s"),
                "verifications_per_second": figure(len(samples) * n_refs / sum(samples), "verifications/s"),
                "requests": {
                    "total": figure((meta + image) / n, "requests/call"),
                    "metadata_repository": figure(meta / n, "requests/call"),
                    "image": figure(image / n, "requests/call"),
                },
            }
        return results

    # -- optional profile ------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        proc = run_checked(
            [PYTHON, "-X", "importtime", "-c", "import tufoci.client.verify"], self.consumer_env, what="importtime"
        )
        rows, by_package = parse_importtime(proc.stderr)
        run_checked([self.tufoci, "verify", self.refs[0]], self.consumer_env, what="warm-up")
        prof = run_checked(
            [PYTHON, "-c", PROFILE_SNIPPET, "verify", self.refs[0]], self.consumer_env, what="cProfile verify"
        )
        return {
            "import_tufoci_client_verify": {
                "total_self": figure(sum(r[0] for r in rows) / 1000, "ms"),
                "self_by_top_level_package": [
                    {"package": name, "self": figure(us / 1000, "ms")}
                    for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]
                ],
                # The import tree, pruned to nodes costing 2.5 ms or more (indent = nesting).
                "tree_cumulative_over_2_5ms": [
                    f"{c / 1000:7.1f} ms  {'  ' * d}{n}" for s, c, d, n in rows if c >= 2500
                ],
            },
            "cprofile_warm_verify_1_tag_cumulative": prof.stderr.splitlines()[:60],
        }


# ---------------------------------------------------------------------------- output


def print_table(results: dict[str, Any], machine: dict[str, Any], runs: int) -> None:
    print(
        f"\ntufoci {machine['tufoci']} ({machine['tufoci_git_commit']}) · python {machine['python']} · "
        f"python-tuf {machine['python_tuf']} · {machine['nproc']} CPU · {machine['date']} · {runs} runs each"
    )
    header = f"{'processes (wall time)':<44} {'median':>9} {'p90':>9} {'min':>9}   requests/run (meta + image)"
    print("\n" + header)
    print("-" * len(header))
    for name, r in results["processes"].items():
        wt = r["wall_time"]
        req = ""
        if "requests" in r:
            q = r["requests"]
            req = f"{q['total']['median']['value']:g} ({q['metadata_repository']['median']['value']:g} + " \
                  f"{q['image']['median']['value']:g})"
            if q["total"]["min"]["value"] != q["total"]["max"]["value"]:
                req += f"  [{q['total']['min']['value']}..{q['total']['max']['value']}]"
        print(
            f"{name:<44} {wt['median']['value']:>7.1f}ms {wt['p90']['value']:>7.1f}ms {wt['min']['value']:>7.1f}ms   {req}"
        )
    header = f"{'in one process (per call)':<44} {'median':>9} {'p90':>9} {'verif./s':>9}   requests/call (meta + image)"
    print("\n" + header)
    print("-" * len(header))
    for name, r in results["in_process"].items():
        pc, q = r["per_call"], r["requests"]
        print(
            f"{name:<44} {pc['median']['value']:>7.2f}ms {pc['p90']['value']:>7.2f}ms "
            f"{r['verifications_per_second']['value']:>9.0f}   "
            f"{q['total']['value']:g} ({q['metadata_repository']['value']:g} + {q['image']['value']:g})"
        )
    print()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per measurement (default 15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--profile", action="store_true", help="also record -X importtime and a cProfile of a warm verify")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not (registry_available() and images_available()):
        print("bench: docker-registry, umoci and skopeo are needed (make setup)", file=sys.stderr)
        return 2

    unwind_on_signals()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tufoci-bench-verify-"))
    try:
        with RegistryServer.start(work) as registry:
            bench = Bench(work, registry, args.runs)
            print(f"bench: registry {registry.host}, workdir {work}; setting up …", file=sys.stderr)
            setup = bench.setup()
            print(f"bench: measuring processes ({args.runs} runs each) …", file=sys.stderr)
            processes = bench.cli_cases()
            print("bench: measuring in-process verify() …", file=sys.stderr)
            in_process = bench.in_process()
            profile = bench.profile() if args.profile else None
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    machine = machine_info()
    data: dict[str, Any] = {
        "benchmark": "tufoci verify",
        "format": 1,
        "machine": machine,
        "config": {
            "runs": args.runs,
            "registry": "docker-registry (CNCF distribution) on 127.0.0.1, plain HTTP, filesystem storage",
            "targets_signed": len(IMAGES),
            "batch_size": len(IMAGES),
            "p90": "linear interpolation between order statistics",
            "requests": f"access-log lines; metadata_repository = paths under {METADATA_PREFIX}",
        },
        "setup": setup,
        "results": {"processes": processes, "in_process": in_process},
    }
    if profile is not None:
        data["profile"] = profile
    data["config"]["bench_duration"] = figure(time.perf_counter() - started, "s")
    print_table(data["results"], machine, args.runs)
    write_json(args.out, data)
    print(f"bench: wrote {args.out} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
