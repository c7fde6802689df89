#!/usr/bin/env python3
"""tufoci side by side with Notary v1, on loopback, in one run.

    .venv/bin/python bench/compare.py [--runs N] [--tags 1000] [--quick] [--profile] [--keep]

Starts its own servers in a temporary directory and removes everything at the end (also on Ctrl-C/SIGTERM):
a ``docker-registry`` (tests.support.registry) that holds the images and tufoci's metadata, and Notary v1
(notary-signer + notary-server, memory storage, TLS; bench/peers/notary.py, installed with ``apt-get install
notary`` when missing and running as root).

Both tools sign the same targets: for each tag, the same name, length and sha256 (the image manifest's). tufoci
signs ``SCOPE/app:tNNNN`` in the scope ``127.0.0.1:PORT/sNrR``; Notary signs ``tNNNN`` in the collection (GUN)
``127.0.0.1:PORT/sNrR/app``. For every size in the ladder (10, 100, … up to ``--tags``):

- publish: ``tufoci target add --publish`` of N refs (digests read from the registry) and ``tufoci target add
  --from-file BUILD --publish`` (digests supplied, as notary's are) vs N ``notary addhash`` processes + ``notary
  publish``, next to the registry's floor (curl GETs of the N manifests, 8 in parallel); the first repetition's
  repository is then used for the lookups;
- warm lookup of one tag, as a process: ``tufoci verify REF`` (and with ``--skip-registry-check``, which is
  what ``notary lookup`` does: trust data only) vs ``notary lookup GUN TAG``;
- cold lookup: the same, with the consumer's cache removed before each run (Notary then trusts the root it
  downloads: TOFU; tufoci has a pinned root);
- requests per run (registry access log / notary-server log) and bytes of metadata fetched (the response sizes
  those logs record), and the size of each tool's targets metadata.

Once, at the largest size: a batch of 100 tags (one ``tufoci verify`` with 100 refs vs 100 ``notary lookup``
processes). Once, on a small separate repository: cold lookup through one delegation (tufoci: targets delegates
``app:*`` to the role ``releases``; Notary: ``targets/releases``, ``--all-paths``).

Timed runs alternate the tools (ABAB…, order flipped every run) so load drifts hit both equally. Results:
``--out-dir`` (default ``bench/out/``; ``make bench-results`` writes ``bench/results/``): ``compare.json``
(every figure with unit, both tools, ratio tufoci/notary), ``compare.md`` (tables) and ``compare.png``
(time vs number of tags).

A warm ``tufoci verify`` without an agent is answered by the fast path (client/fast_verify.py, issue 19); the
``*_full_path`` figures run the same command with ``TUFOCI_NO_FAST_PATH=1`` (python-tuf's refresh every time),
side by side in the same interleaved runs, and ``warm_path_imports`` lists what ``-X importtime`` shows the warm
path importing (no python-tuf, securesystemslib, cryptography, urllib3 or click is the goal).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # for tests.support and bench; an installed tufoci comes first
# child interpreters (python -c …) must not import the source tree from the working directory either
os.environ["PYTHONSAFEPATH"] = "1"

from bench.peers.notary import (  # noqa: E402
    NotaryError,
    NotaryRequest,
    NotaryServer,
    ensure_notary_installed,
    make_delegation_key,
    notary_version,
)
from bench.verify import (  # noqa: E402
    BenchError,
    figure,
    machine_info,
    parse_importtime,
    percentile,
    unwind_on_signals,
    write_json,
)
from bench.verify import run_checked as _run_checked  # noqa: E402
from tests.support.images import build_image, images_available, push_image  # noqa: E402
from tests.support.registry import AccessLogLine, RegistryServer, registry_available  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "out"  # untracked; make bench-results updates bench/results/
PYTHON = sys.executable
PASSPHRASE = "bench passphrase"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_REPO = "app"  # one image repository per scope; tags t0000…
DELEGATED_ROLE = "releases"
NOTARY_DELEGATION = "targets/releases"
DELEGATION_TAGS = 10
BATCH = 100
RUN_TIMEOUT = 900.0
# A publish right after another one (1,000 manifests served, metadata pushed) ran 380–550 ms (median 447) where
# the same publish after 3 s of quiet ran 388–404 ms (396): each publish-figure run starts after this pause.
SETTLE_SECONDS = 2.0
# The performance issue's own figure for the registry's floor: "≈ 1.6 s to serve 1,000 manifests to 8 concurrent
# clients on 2 cores". curl --parallel over 8 kept-alive connections measures 0.86-1.08 s here: a stricter floor,
# reported beside it.
ISSUE_FLOOR_MS, ISSUE_FLOOR_TAGS = 1600.0, 1000
TUFOCI, NOTARY = "tufoci", "notary"
# what the warm verify path must not import (issue 19): ~200 ms of start-up between them
HEAVY_PACKAGES = ("tuf", "securesystemslib", "cryptography", "urllib3", "click")
# standard-library modules the warm path was cut loose from (dataclasses, typing: docs/performance.md)
SLOW_MODULES = ("dataclasses", "inspect", "typing", "sqlite_utils", "threading")

# argv[1] = "module:function" of the tufoci console script, the rest its arguments.
IMPORTTIME_SNIPPET = textwrap.dedent(
    """
    import importlib, sys
    entry = sys.argv[1]
    sys.argv = ["tufoci"] + sys.argv[2:]
    module, _, function = entry.partition(":")
    getattr(importlib.import_module(module), function)()
    """
)

PROFILE_SNIPPET = textwrap.dedent(
    """
    import cProfile, importlib, io, pstats, sys
    entry = sys.argv[1]
    sys.argv = ["tufoci"] + sys.argv[2:]
    profile = cProfile.Profile()
    profile.enable()
    module, _, function = entry.partition(":")
    main = getattr(importlib.import_module(module), function)
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    profile.disable()
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(30)
        sys.stderr.write("=== " + key + "\\n" + out.getvalue())
    sys.exit(code)
    """
)


def run_checked(argv: Sequence[str], env: dict[str, str], *, what: str) -> subprocess.CompletedProcess[str]:
    """bench.verify's, with this benchmark's longer timeout (1,000 `notary addhash` processes)."""
    return _run_checked(argv, env, what=what, timeout=RUN_TIMEOUT)


def stats_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "median": figure(statistics.median(ms), "ms"),
        "p90": figure(percentile(ms, 90), "ms"),
        "min": figure(min(ms), "ms"),
        "max": figure(max(ms), "ms"),
        "samples": {"value": [round(x, 3) for x in ms], "unit": "ms"},
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def median_int(values: Sequence[int]) -> float:
    m = statistics.median(values)
    return int(m) if float(m).is_integer() else m


def size_ladder(max_tags: int) -> list[int]:
    sizes = [n for n in (10, 100, 1000, 10000) if n < max_tags]
    return sizes + [max_tags]


def tufoci_entry_point() -> str:
    """``module:function`` of the ``tufoci`` console script (what the executable runs)."""
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group="console_scripts", name="tufoci"):
        return str(ep.value)
    return "tufoci.cli:main"


def agent_ask(sock: Path, ref: str) -> Any:
    """One request to a ``tufoci agent`` socket (client/agent.py protocol); None when nobody answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(sock))
            s.sendall(json.dumps({"references": [ref], "checkRegistry": False}).encode() + b"\n")
            with s.makefile("rb") as reply:
                return json.loads(reply.readline())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- one timed case


@dataclass
class Case:
    """One side of a comparison: how to run it once, and how its requests are counted."""

    tool: str  # TUFOCI or NOTARY
    label: str  # e.g. "tufoci verify", "tufoci verify --skip-registry-check"
    command: str  # shown in the results
    run: Callable[[], None]
    before: Callable[[], None] | None = None
    metadata_prefix: str | None = None  # tufoci: registry paths of the metadata repository
    seconds: list[float] = field(default_factory=list)
    requests: list[dict[str, int]] = field(default_factory=list)
    uris: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes) of the first timed run


class Bench:
    def __init__(
        self, work: Path, registry: RegistryServer, notary: NotaryServer, *, runs: int, sizes: list[int],
        publish_runs: int, batch_runs: int,
    ) -> None:
        self.work = work
        self.registry = registry
        self.notary = notary
        self.runs = runs
        self.sizes = sizes
        self.publish_runs = publish_runs
        self.batch_runs = batch_runs
        self.tufoci = str(Path(PYTHON).parent / "tufoci") if (Path(PYTHON).parent / "tufoci").exists() else (
            shutil.which("tufoci") or "tufoci"
        )
        base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        base.update(
            NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
            DOCKER_CONFIG=str(work / "docker-config"), TUFOCI_PASSPHRASE=PASSPHRASE, PYTHONUNBUFFERED="1",
        )
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        base.pop("PYTHONPROFILEIMPORTTIME", None)
        base.pop("TUFOCI_NO_AGENT", None)
        self.maintainer_env = dict(base, TUFOCI_HOME=str(work / "tufoci-maintainer"))
        # Plain `tufoci verify` figures never use a resident agent; the *_agent figures start one.
        self.agent_env = dict(base, TUFOCI_HOME=str(work / "tufoci-consumer"))
        self.consumer_env = dict(self.agent_env, TUFOCI_NO_AGENT="1")
        self.full_path_env = dict(self.consumer_env, TUFOCI_NO_FAST_PATH="1")  # issue 19's "before"
        self.agent_supported = subprocess.run(
            [self.tufoci, "agent", "--help"], env=self.consumer_env, capture_output=True, timeout=60, check=False
        ).returncode == 0
        self.publisher = notary.client("publisher")
        self.consumer = notary.client("consumer")
        self.base_layout: Path | None = None
        self.figures: list[dict[str, Any]] = []
        self.setup_seconds: dict[str, float] = {}
        # per size: the repository used for lookups
        self.lookup_repo: dict[int, dict[str, Any]] = {}

    # -- small wrappers ------------------------------------------------------------------
    def tufoci_m(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_checked([self.tufoci, *args], self.maintainer_env, what=f"tufoci {args[0]}")

    def tufoci_c(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_checked([self.tufoci, *args], self.consumer_env, what=f"tufoci {args[0]}")

    def drop_tufoci_cache(self) -> None:
        shutil.rmtree(Path(self.consumer_env["TUFOCI_HOME"]) / "cache", ignore_errors=True)

    # -- images ---------------------------------------------------------------------------
    def push_tags(self, namespace: str, n: int) -> list[tuple[str, int, str]]:
        """Push N distinct image manifests ``NAMESPACE/app:tNNNN`` → [(tag, length, sha256 hex)].

        One real image (umoci) is pushed with skopeo as ``app:base``; each tag is that manifest plus an
        annotation naming the tag (so every tag has its own digest), PUT over one keep-alive connection.
        """
        if self.base_layout is None:
            self.base_layout = build_image(self.work / "images", b"tufoci compare bench image\n")
        repo = f"{namespace}/{IMAGE_REPO}"
        push_image(self.base_layout, "latest", f"{self.registry.host}/{repo}:base")
        base, _ = self.registry.get_manifest(repo, "base")
        manifest = json.loads(base)
        width = max(4, len(str(n - 1)))
        out: list[tuple[str, int, str]] = []
        conn = http.client.HTTPConnection("127.0.0.1", self.registry.port, timeout=30)
        try:
            for i in range(n):
                tag = f"t{i:0{width}d}"
                manifest["annotations"] = {"org.opencontainers.image.version": tag}
                body = json.dumps(manifest, separators=(",", ":")).encode()
                conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": OCI_MANIFEST})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 201:
                    raise BenchError(f"PUT manifest {repo}:{tag}: HTTP {resp.status}")
                out.append((tag, len(body), hashlib.sha256(body).hexdigest()))
        finally:
            conn.close()
        return out

    # -- setup of keys ----------------------------------------------------------------------
    def setup_keys(self) -> None:
        t0 = time.perf_counter()
        self.tufoci_m("key", "generate", "root")
        self.tufoci_m("key", "generate", "targets")
        self.tufoci_m("key", "generate", "online", "--unencrypted")
        self.tufoci_m("key", "generate", DELEGATED_ROLE)
        self.setup_seconds["tufoci_keys"] = time.perf_counter() - t0

    def tufoci_init(self, scope: str, root_out: Path) -> None:
        self.tufoci_m(
            "init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
            "--root-out", str(root_out),
        )

    # -- resident agent (tufoci agent), when this tufoci has one ------------------------------
    @contextlib.contextmanager
    def agent(self, probe_ref: str, expected_sha256: str):
        """Run ``tufoci agent --freshness 0s`` (a refresh per request, like notary) for the duration."""
        sock = Path(self.agent_env["TUFOCI_HOME"]) / "agent.sock"
        log = open(self.work / "agent.log", "ab")
        proc = subprocess.Popen(
            [self.tufoci, "agent", "--freshness", "0s"], env=self.agent_env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"tufoci agent exited with {proc.returncode}: "
                                     f"{(self.work / 'agent.log').read_text(errors='replace')[-2000:]}")
                answer = agent_ask(sock, probe_ref) if sock.exists() else None
                if answer is not None:
                    if expected_sha256 not in json.dumps(answer):
                        raise BenchError(f"tufoci agent answered {answer!r} for {probe_ref}")
                    break
                if time.monotonic() > deadline:
                    raise BenchError("tufoci agent did not answer within 60 s")
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()
            log.close()

    # -- measuring ----------------------------------------------------------------------------
    def registry_counts(self, mark: int, prefix: str) -> tuple[dict[str, int], list[tuple[str, int]]]:
        lines: list[AccessLogLine] = self.registry.access_log_lines(mark)
        meta = [ln for ln in lines if ln.path.startswith(prefix)]
        image = [ln for ln in lines if not ln.path.startswith(prefix)]
        counts = {
            "total": len(lines),
            "metadata": len(meta),
            "image": len(image),
            "metadata_bytes": sum(ln.size for ln in meta),
            "image_bytes": sum(ln.size for ln in image),
        }
        return counts, [(f"{ln.method} {ln.path}", ln.size) for ln in lines]

    def notary_counts(self, mark: int) -> tuple[dict[str, int], list[tuple[str, int]]]:
        reqs: list[NotaryRequest] = self.notary.requests(mark)
        counts = {
            "total": len(reqs),
            "metadata": sum(1 for r in reqs if not r.is_ping),
            "ping": sum(1 for r in reqs if r.is_ping),
            "metadata_bytes": sum(r.bytes_written for r in reqs),
        }
        return counts, [(f"{r.method} {r.path}", r.bytes_written) for r in reqs]

    def measure(self, cases: Sequence[Case], runs: int, *, warmup: int = 1) -> None:
        """Run every case ``runs`` times, interleaved, order flipped every run; fill in the cases."""
        for _ in range(warmup):
            for case in cases:
                if case.before:
                    case.before()
                case.run()
        for i in range(runs):
            order = list(cases) if i % 2 == 0 else list(reversed(cases))
            for case in order:
                if case.before:
                    case.before()
                rmark = self.registry.mark()
                nmark = self.notary.mark()
                t0 = time.perf_counter()
                case.run()
                case.seconds.append(time.perf_counter() - t0)
                if case.tool == TUFOCI:
                    assert case.metadata_prefix is not None
                    counts, uris = self.registry_counts(rmark, case.metadata_prefix)
                    extra = self.notary.requests(nmark)
                else:
                    counts, uris = self.notary_counts(nmark)
                    extra = self.registry.access_log_lines(rmark)
                if extra:
                    raise BenchError(f"{case.label} reached the other tool's server: {extra[:3]}")
                case.requests.append(counts)
                if not case.uris:
                    case.uris = uris

    def process(self, argv: Sequence[str], env: dict[str, str], what: str) -> Callable[[], None]:
        def run() -> None:
            run_checked(argv, env, what=what)

        return run

    @staticmethod
    def side(case: Case) -> dict[str, Any]:
        out: dict[str, Any] = {"label": case.label, "command": case.command, "runs": len(case.seconds)}
        out["wall_time"] = stats_ms(case.seconds)
        keys = case.requests[0].keys() if case.requests else []
        out["requests"] = {
            k: figure(median_int([r[k] for r in case.requests]), "bytes/run" if k.endswith("bytes") else "requests/run")
            for k in keys
        }
        out["requests_first_run"] = [{"request": u, "bytes": b} for u, b in case.uris]
        return out

    def add_figure(
        self, fid: str, tags: int, what: str, tufoci_case: Case, notary_case: Case, **extra: Any
    ) -> dict[str, Any]:
        t, n = self.side(tufoci_case), self.side(notary_case)
        fig: dict[str, Any] = {
            "id": fid,
            "tags": tags,
            "what": what,
            "unit": "ms",
            TUFOCI: t,
            NOTARY: n,
            "ratio_tufoci_over_notary": {
                "median": figure(ratio(t["wall_time"]["median"]["value"], n["wall_time"]["median"]["value"]) or 0, "×"),
                "p90": figure(ratio(t["wall_time"]["p90"]["value"], n["wall_time"]["p90"]["value"]) or 0, "×"),
                "requests": figure(
                    ratio(t["requests"]["total"]["value"], n["requests"]["total"]["value"]) or 0, "×"
                ),
                "metadata_bytes": figure(
                    ratio(t["requests"]["metadata_bytes"]["value"], n["requests"]["metadata_bytes"]["value"]) or 0,
                    "×",
                ),
            },
        }
        fig.update(extra)
        self.figures.append(fig)
        return fig

    # -- the scenarios ----------------------------------------------------------------------
    def publish_size(self, n: int) -> None:
        """Stage and publish N tags with both tools, ``publish_runs`` times, each on a fresh repository.

        tufoci twice per repository: resolving the N digests against the registry (``target add REF×N
        --publish``), then with the digests the build supplies (``target add --from-file --publish``), which
        is what ``notary addhash`` is given. And the registry's own floor: curl fetching the N manifests,
        8 at a time, the least any tool that reads them must spend.
        """
        t_case = Case(TUFOCI, "tufoci target add --publish", f"tufoci target add --publish REF×{n}",
                      run=lambda: None)
        f_case = Case(TUFOCI, "tufoci target add --from-file --publish",
                      f"tufoci target add --from-file BUILD --publish  # {n} lines 'REF DIGEST SIZE'",
                      run=lambda: None)
        n_case = Case(NOTARY, "notary addhash + publish", f"notary addhash GUN TAG SIZE --sha256 HEX ×{n} && "
                      "notary publish GUN", run=lambda: None)
        notary_stage, notary_pub, floor = [], [], []
        setup = 0.0
        for rep in range(self.publish_runs):
            ns = f"s{n}r{rep}"
            scope = f"{self.registry.host}/{ns}"
            gun = f"{scope}/{IMAGE_REPO}"
            t0 = time.perf_counter()
            tags = self.push_tags(ns, n)
            root_file = self.work / f"root-{ns}.json"
            self.tufoci_init(scope, root_file)
            self.publisher.init(gun)
            setup += time.perf_counter() - t0
            refs = [f"{scope}/{IMAGE_REPO}:{tag}" for tag, _, _ in tags]
            build = self.work / f"build-{ns}.txt"
            lines = (f"{ref} sha256:{h} {size}\n" for ref, (_, size, h) in zip(refs, tags, strict=True))
            build.write_text("".join(lines))
            prefix = f"/v2/{ns}/tuf/"
            t_case.metadata_prefix = f_case.metadata_prefix = prefix

            def run_tufoci(case: Case, *args: str, prefix: str = prefix) -> None:
                mark = self.registry.mark()
                t0 = time.perf_counter()
                self.tufoci_m("target", "add", "--publish", *args)
                case.seconds.append(time.perf_counter() - t0)
                counts, uris = self.registry_counts(mark, prefix)
                case.requests.append(counts)
                if not case.uris:
                    case.uris = uris

            def run_notary(gun: str = gun, tags: list = tags) -> None:
                mark = self.notary.mark()
                t0 = time.perf_counter()
                self.publisher.addhash_many(gun, tags)
                t1 = time.perf_counter()
                self.publisher.publish(gun)
                t2 = time.perf_counter()
                notary_stage.append(t1 - t0)
                notary_pub.append(t2 - t1)
                n_case.seconds.append(t2 - t0)
                counts, uris = self.notary_counts(mark)
                n_case.requests.append(counts)
                if not n_case.uris:
                    n_case.uris = uris

            runs = [lambda refs=refs: run_tufoci(t_case, *refs),
                    lambda build=build: run_tufoci(f_case, "--from-file", str(build)),
                    run_notary, lambda ns=ns, tags=tags: floor.append(self.registry_floor(ns, [t for t, _, _ in tags]))]
            for run in (runs if rep % 2 == 0 else runs[::-1]):
                time.sleep(SETTLE_SECONDS)  # not charged for the registry's clean-up after the previous run
                run()
            if rep == 0:
                self.tufoci_c("trust", "add", scope, "--root", str(root_file))
                self.lookup_repo[n] = {"ns": ns, "scope": scope, "gun": gun, "tags": tags, "prefix": prefix}
        self.setup_seconds[f"repositories_{n}_tags"] = setup
        floor_ms = stats_ms(floor) if floor and all(floor) else None
        self.add_figure(
            "publish", n, f"stage {n} tags, digests read from the registry, and publish (fresh repository per run)",
            t_case, n_case,
            phases={NOTARY: {"addhash_all": stats_ms(notary_stage), "publish": stats_ms(notary_pub),
                             "addhash_per_target": figure(statistics.median(notary_stage) * 1000 / n, "ms")}},
            registry_floor=floor_ms,
        )
        self.add_figure("publish_from_file", n, f"stage {n} tags with the digests the build supplies, and publish",
                        f_case, n_case)

    def registry_floor(self, ns: str, tags: list[str]) -> float:
        """Seconds for curl to GET every manifest, 8 at a time (0.0 when this curl cannot run in parallel)."""
        config = self.work / f"curl-{ns}.cfg"
        url = f"http://{self.registry.host}/v2/{ns}/{IMAGE_REPO}/manifests"
        config.write_text("".join(f'url = "{url}/{tag}"\noutput = "/dev/null"\n' for tag in tags))
        argv = ["curl", "--silent", "--fail", "--parallel", "--parallel-max", "8",
                "-H", f"Accept: {OCI_MANIFEST}", "--config", str(config)]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT, check=False)
        except FileNotFoundError:
            return 0.0
        elapsed = time.perf_counter() - t0
        return elapsed if done.returncode == 0 else 0.0

    def lookups_size(self, n: int) -> None:
        repo = self.lookup_repo[n]
        tag = repo["tags"][n // 2][0]
        ref = f"{repo['scope']}/{IMAGE_REPO}:{tag}"
        gun = repo["gun"]
        expected = dict((t, h) for t, _, h in repo["tags"])[tag]
        out = self.tufoci_c("verify", ref).stdout
        if expected not in out:
            raise BenchError(f"tufoci verify {ref} printed {out!r}, expected sha256:{expected}")
        found = self.consumer.lookup(gun, tag)
        if found.sha256.removeprefix("sha256:") != expected:
            raise BenchError(f"notary lookup {gun} {tag} gave {found}, expected {expected}")

        for cold in (False, True):
            before_t = self.drop_tufoci_cache if cold else None
            before_n = (lambda: self.consumer.drop_cache(gun)) if cold else None
            t = Case(TUFOCI, "tufoci verify", f"tufoci verify {ref}",
                     self.process([self.tufoci, "verify", ref], self.consumer_env, "tufoci verify"),
                     before=before_t, metadata_prefix=repo["prefix"])
            ts = Case(TUFOCI, "tufoci verify --skip-registry-check", f"tufoci verify --skip-registry-check {ref}",
                      self.process([self.tufoci, "verify", "--skip-registry-check", ref], self.consumer_env,
                                   "tufoci verify --skip-registry-check"),
                      before=before_t, metadata_prefix=repo["prefix"])
            nc = Case(NOTARY, "notary lookup", f"notary lookup {gun} {tag}",
                      self.process(self.consumer.argv("lookup", gun, tag), self.consumer.env, "notary lookup"),
                      before=before_n)
            full = None if cold else Case(
                TUFOCI, "tufoci verify (full path)", f"TUFOCI_NO_FAST_PATH=1 tufoci verify {ref}",
                self.process([self.tufoci, "verify", ref], self.full_path_env, "tufoci verify (full path)"),
                metadata_prefix=repo["prefix"])
            self.measure([t, ts, nc] + ([full] if full else []), self.runs, warmup=0 if cold else 1)
            kind = "cold" if cold else "warm"
            if full is not None:
                self.add_figure("lookup_warm_full_path", n, f"look up one tag among {n} as a process, warm cache, "
                                "without the fast path (tufoci checks the registry tag too)", full, nc)
            what = (f"look up one tag among {n} as a process, "
                    + ("consumer cache removed before each run" if cold else "warm cache"))
            self.add_figure(f"lookup_{kind}", n, what + " (tufoci checks the registry tag too)", t, nc)
            trust_only = self.add_figure(f"lookup_{kind}_trust_only", n, what + " (tufoci --skip-registry-check)",
                                         ts, nc)

        if self.agent_supported:
            with self.agent(ref, expected):
                ta = Case(TUFOCI, "tufoci verify (agent running)", f"tufoci verify {ref}  # tufoci agent --freshness 0s",
                          self.process([self.tufoci, "verify", ref], self.agent_env, "tufoci verify (agent)"),
                          metadata_prefix=repo["prefix"])
                tas = Case(TUFOCI, "tufoci verify --skip-registry-check (agent running)",
                           f"tufoci verify --skip-registry-check {ref}  # tufoci agent --freshness 0s",
                           self.process([self.tufoci, "verify", "--skip-registry-check", ref], self.agent_env,
                                        "tufoci verify (agent)"),
                           metadata_prefix=repo["prefix"])
                nc = Case(NOTARY, "notary lookup", f"notary lookup {gun} {tag}",
                          self.process(self.consumer.argv("lookup", gun, tag), self.consumer.env, "notary lookup"))
                self.measure([ta, tas, nc], self.runs, warmup=1)
            what = (f"look up one tag among {n} as a process, warm, with `tufoci agent --freshness 0s` running "
                    "(the verify process asks it over a Unix socket; one refresh per request)")
            self.add_figure("lookup_warm_agent", n, what + " (tufoci checks the registry tag too)", ta, nc)
            self.add_figure("lookup_warm_agent_trust_only", n, what + " (tufoci --skip-registry-check)", tas, nc)

        # Size of each tool's targets metadata at this N (on the cold figure: its bytes are compared with it).
        trust_only["targets_metadata_bytes"] = {
            TUFOCI: figure(self.tufoci_targets_size(repo["ns"]), "bytes"),
            NOTARY: figure((self.consumer.metadata_dir(gun) / "targets.json").stat().st_size, "bytes"),
        }

    def tufoci_targets_size(self, ns: str) -> int:
        """Size of the newest ``targets.<N>`` blob in the metadata repository (docs/layout.md §2)."""
        tags = [t for t in self.registry.tags(f"{ns}/tuf") if t.startswith("targets.")]
        newest = max(tags, key=lambda t: int(t.split(".", 1)[1]))
        body, _ = self.registry.get_manifest(f"{ns}/tuf", newest)
        return int(json.loads(body)["layers"][0]["size"])

    def batch(self, n: int) -> None:
        repo = self.lookup_repo[n]
        tags = repo["tags"]
        step = max(1, len(tags) // BATCH)
        chosen = [tags[i][0] for i in range(0, len(tags), step)][:BATCH]
        refs = [f"{repo['scope']}/{IMAGE_REPO}:{t}" for t in chosen]
        gun = repo["gun"]

        def notary_loop() -> None:
            for tag in chosen:
                run_checked(self.consumer.argv("lookup", gun, tag), self.consumer.env, what="notary lookup")

        t = Case(TUFOCI, "tufoci verify (100 refs)", f"tufoci verify REF×{len(refs)}",
                 self.process([self.tufoci, "verify", *refs], self.consumer_env, "tufoci verify batch"),
                 metadata_prefix=repo["prefix"])
        ts = Case(TUFOCI, "tufoci verify --skip-registry-check (100 refs)",
                  f"tufoci verify --skip-registry-check REF×{len(refs)}",
                  self.process([self.tufoci, "verify", "--skip-registry-check", *refs], self.consumer_env,
                               "tufoci verify batch"),
                  metadata_prefix=repo["prefix"])
        nc = Case(NOTARY, f"notary lookup ×{len(chosen)}", f"notary lookup GUN TAG ×{len(chosen)} (one process each)",
                  notary_loop)
        full = Case(TUFOCI, "tufoci verify (100 refs, full path)", f"TUFOCI_NO_FAST_PATH=1 tufoci verify REF×{len(refs)}",
                    self.process([self.tufoci, "verify", *refs], self.full_path_env, "tufoci verify batch (full path)"),
                    metadata_prefix=repo["prefix"])
        self.measure([t, ts, nc, full], self.batch_runs, warmup=1)
        what = f"look up {len(chosen)} tags among {n}, warm: one tufoci process vs {len(chosen)} notary processes"
        self.add_figure("batch_lookup", n, what + " (tufoci checks the registry tags too)", t, nc, batch=len(chosen))
        self.add_figure("batch_lookup_trust_only", n, what + " (tufoci --skip-registry-check)", ts, nc,
                        batch=len(chosen))
        self.add_figure("batch_lookup_full_path", n, what + " (without the fast path; registry tags checked)", full,
                        nc, batch=len(chosen))
        if self.agent_supported:
            expected = dict((t, h) for t, _, h in tags)[chosen[0]]
            with self.agent(refs[0], expected):
                ta = Case(TUFOCI, "tufoci verify (100 refs, agent running)", f"tufoci verify REF×{len(refs)}  # agent",
                          self.process([self.tufoci, "verify", *refs], self.agent_env, "tufoci verify batch (agent)"),
                          metadata_prefix=repo["prefix"])
                nc = Case(NOTARY, f"notary lookup ×{len(chosen)}",
                          f"notary lookup GUN TAG ×{len(chosen)} (one process each)", notary_loop)
                self.measure([ta, nc], self.batch_runs, warmup=1)
            self.add_figure("batch_lookup_agent", n, what + " (tufoci agent --freshness 0s running; registry tags "
                            "checked)", ta, nc, batch=len(chosen))

    def delegation(self) -> None:
        """A small repository whose tags are all signed by one delegated role, looked up cold and warm."""
        ns = "deleg"
        scope = f"{self.registry.host}/{ns}"
        gun = f"{scope}/{IMAGE_REPO}"
        t0 = time.perf_counter()
        tags = self.push_tags(ns, DELEGATION_TAGS)
        root_file = self.work / f"root-{ns}.json"
        self.tufoci_init(scope, root_file)
        self.tufoci_m("delegate", scope, DELEGATED_ROLE, "--key", DELEGATED_ROLE, "--path", f"{IMAGE_REPO}:*")
        self.tufoci_m("target", "add", "--role", DELEGATED_ROLE, *[f"{scope}/{IMAGE_REPO}:{t}" for t, _, _ in tags])
        self.tufoci_m("publish", scope)
        self.tufoci_c("trust", "add", scope, "--root", str(root_file))
        key, cert = make_delegation_key(self.work / "notary-delegation", "releases")
        self.publisher.init(gun)
        self.publisher.delegation_add(gun, NOTARY_DELEGATION, cert)
        self.publisher.key_import(key, NOTARY_DELEGATION)
        self.publisher.addhash_many(gun, tags, role=NOTARY_DELEGATION)
        self.publisher.publish(gun)
        self.setup_seconds["delegation_repositories"] = time.perf_counter() - t0
        tag = tags[len(tags) // 2][0]
        ref = f"{scope}/{IMAGE_REPO}:{tag}"
        prefix = f"/v2/{ns}/tuf/"
        for cold in (True, False):
            before_t = self.drop_tufoci_cache if cold else None
            before_n = (lambda: self.consumer.drop_cache(gun)) if cold else None
            t = Case(TUFOCI, "tufoci verify", f"tufoci verify {ref}",
                     self.process([self.tufoci, "verify", ref], self.consumer_env, "tufoci verify"),
                     before=before_t, metadata_prefix=prefix)
            ts = Case(TUFOCI, "tufoci verify --skip-registry-check", f"tufoci verify --skip-registry-check {ref}",
                      self.process([self.tufoci, "verify", "--skip-registry-check", ref], self.consumer_env,
                                   "tufoci verify --skip-registry-check"),
                      before=before_t, metadata_prefix=prefix)
            nc = Case(NOTARY, "notary lookup", f"notary lookup {gun} {tag}",
                      self.process(self.consumer.argv("lookup", gun, tag), self.consumer.env, "notary lookup"),
                      before=before_n)
            self.measure([t, ts, nc], self.runs, warmup=0 if cold else 1)
            kind = "cold" if cold else "warm"
            what = f"look up one tag signed by a delegated role ({DELEGATION_TAGS} tags), {kind}"
            self.add_figure(f"delegated_lookup_{kind}", DELEGATION_TAGS, what + " (tufoci checks the registry tag)",
                            t, nc)
            self.add_figure(f"delegated_lookup_{kind}_trust_only", DELEGATION_TAGS,
                            what + " (tufoci --skip-registry-check)", ts, nc)

    def floors(self) -> None:
        """Start-up floors: ``tufoci --version`` vs ``notary version`` (no network)."""
        t = Case(TUFOCI, "tufoci --version", "tufoci --version",
                 self.process([self.tufoci, "--version"], self.consumer_env, "tufoci --version"), metadata_prefix="/-")
        nc = Case(NOTARY, "notary version", "notary version",
                  self.process(self.consumer.argv("version"), self.consumer.env, "notary version"))
        self.measure([t, nc], self.runs, warmup=1)
        self.add_figure("startup_floor", 0, "start a process that does no work (CLI start-up floor)", t, nc)

    def warm_imports(self) -> dict[str, Any]:
        """What a warm ``tufoci verify`` process imports (``-X importtime`` of the console script)."""
        n = max(self.lookup_repo)
        repo = self.lookup_repo[n]
        ref = f"{repo['scope']}/{IMAGE_REPO}:{repo['tags'][n // 2][0]}"
        self.tufoci_c("verify", ref)  # warm, and the record written
        command = [PYTHON, "-X", "importtime", "-c", IMPORTTIME_SNIPPET, tufoci_entry_point(), "verify", ref]
        proc = run_checked(command, self.consumer_env, what="importtime warm verify")
        rows, by_package = parse_importtime(proc.stderr)
        heavy = sorted(set(by_package) & set(HEAVY_PACKAGES))
        return {
            "command": f"python -X importtime -c <console script> verify {ref}  # warm, {n} tags, no agent",
            "heavy_packages_imported": heavy,
            "slow_modules_imported": sorted({row[3] for row in rows} & set(SLOW_MODULES)),
            "modules": len(rows),
            "imports_total_self": figure(sum(r[0] for r in rows) / 1000, "ms"),
            "imports_self_by_top_level_package": [
                {"package": k, "self": figure(v / 1000, "ms")}
                for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]
            ],
        }

    # -- profile --------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        n = max(self.lookup_repo)
        repo = self.lookup_repo[n]
        ref = f"{repo['scope']}/{IMAGE_REPO}:{repo['tags'][n // 2][0]}"
        self.tufoci_c("verify", ref)
        # -X importtime over the whole warm CLI verify (imports done lazily during the run count too).
        proc = run_checked(
            [PYTHON, "-X", "importtime", "-c", IMPORTTIME_SNIPPET, tufoci_entry_point(),
             "verify", ref], self.consumer_env, what="importtime verify",
        )
        rows, by_package = parse_importtime(proc.stderr)
        top_level = sorted(((c, name) for _, c, d, name in rows if d == 0), reverse=True)[:15]
        prof = run_checked([PYTHON, "-c", PROFILE_SNIPPET, tufoci_entry_point(), "verify", ref], self.consumer_env,
                           what="cProfile verify")
        return {
            "command": f"tufoci verify {ref} (warm, {n} tags)",
            "imports_total_self": figure(sum(r[0] for r in rows) / 1000, "ms"),
            "imports_self_by_top_level_package": [
                {"package": k, "self": figure(v / 1000, "ms")}
                for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]
            ],
            "imports_top_level_cumulative": [{"module": m, "cumulative": figure(c / 1000, "ms")} for c, m in top_level],
            "import_tree_over_5ms": [f"{c / 1000:7.1f} ms  {'  ' * d}{m}" for s, c, d, m in rows if c >= 5000],
            "cprofile": prof.stderr.splitlines(),
        }


# ---------------------------------------------------------------------------- goals, tables, chart


def find(figures: list[dict[str, Any]], fid: str, tags: int | None = None) -> dict[str, Any] | None:
    matches = [f for f in figures if f["id"] == fid and (tags is None or f["tags"] == tags)]
    if not matches:
        return None
    return max(matches, key=lambda f: f["tags"])


def goals(figures: list[dict[str, Any]], max_tags: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    med = lambda f, tool: f[tool]["wall_time"]["median"]["value"]  # noqa: E731
    note = "" if max_tags >= 1000 else f" (measured at {max_tags} tags: run without --quick for 1000)"

    f = find(figures, "lookup_warm")
    if f:
        r = med(f, TUFOCI) / med(f, NOTARY)
        fs = find(figures, "lookup_warm_trust_only")
        out.append({
            "goal": "warm single verify within 2× of Notary's lookup",
            "figure": f"lookup_warm @ {f['tags']} tags" + note,
            "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(med(f, NOTARY), "ms"),
            "measured": figure(r, "× (tufoci/notary)"), "target": "≤ 2×", "met": r <= 2,
            "also": None if fs is None else
            f"--skip-registry-check: {med(fs, TUFOCI):.0f} ms = {med(fs, TUFOCI) / med(fs, NOTARY):.1f}×"
            + ("" if find(figures, "lookup_warm_full_path") is None else
               f"; without the fast path: {med(find(figures, 'lookup_warm_full_path'), TUFOCI):.0f} ms"),
        })
    f = find(figures, "lookup_warm_agent")
    if f:
        r = med(f, TUFOCI) / med(f, NOTARY)
        out.append({
            "goal": "warm single verify within 2× of Notary's lookup — with `tufoci agent` running",
            "figure": f"lookup_warm_agent @ {f['tags']} tags" + note,
            "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(med(f, NOTARY), "ms"),
            "measured": figure(r, "× (tufoci/notary)"), "target": "≤ 2×", "met": r <= 2, "also": None,
        })
    f = find(figures, "delegated_lookup_cold")
    if f:
        meta = f[TUFOCI]["requests"]["metadata"]["value"]
        total = f[TUFOCI]["requests"]["total"]["value"]
        out.append({
            "goal": "cold verify through one delegation ≤ 3 round trips",
            "figure": f"delegated_lookup_cold @ {f['tags']} tags",
            "tufoci": figure(meta, "metadata requests"), "notary": figure(f[NOTARY]["requests"]["total"]["value"],
                                                                          "requests (incl. ping)"),
            "measured": figure(meta, "sequential metadata requests"), "target": "≤ 3", "met": meta <= 3,
            "also": f"with the registry tag check: {total} requests; {med(f, TUFOCI):.0f} ms vs notary "
                    f"{med(f, NOTARY):.0f} ms",
        })
    f = find(figures, "batch_lookup")
    if f:
        speedup = med(f, NOTARY) / med(f, TUFOCI)
        fs = find(figures, "batch_lookup_trust_only")
        out.append({
            "goal": f"batch of {f.get('batch', BATCH)} ≥ 15× faster than {f.get('batch', BATCH)} notary lookups",
            "figure": f"batch_lookup @ {f['tags']} tags",
            "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(med(f, NOTARY), "ms"),
            "measured": figure(speedup, "× faster (notary/tufoci)"), "target": "≥ 15×", "met": speedup >= 15,
            "also": None if fs is None else
            f"--skip-registry-check: {med(fs, TUFOCI):.0f} ms = {med(fs, NOTARY) / med(fs, TUFOCI):.1f}× faster",
        })
    f = find(figures, "publish")
    if f:
        speedup = med(f, NOTARY) / med(f, TUFOCI)
        out.append({
            "goal": f"publish {f['tags']} tags, digests read from the registry, ≥ 5× faster than notary "
                    "addhash+publish",
            "figure": f"publish @ {f['tags']} tags" + note,
            "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(med(f, NOTARY), "ms"),
            "measured": figure(speedup, "× faster (notary/tufoci)"), "target": "≥ 5×", "met": speedup >= 5,
            "also": None,
        })
        floors = []  # (ms, goal, what the floor is, what the ratio is)
        if f.get("registry_floor"):
            floors.append((f["registry_floor"]["median"]["value"],
                           f"publish {f['tags']} tags, digests read from the registry, within 1.5× of the registry's "
                           "floor (curl, 8 parallel GETs of the manifests)", "ms (the floor)", "× the floor"))
        if f["tags"] == ISSUE_FLOOR_TAGS:
            floors.append((ISSUE_FLOOR_MS,
                           f"the same, against the floor the issue states (the registry alone ≈ {ISSUE_FLOOR_MS / 1000} s "
                           f"for {ISSUE_FLOOR_TAGS} manifests to 8 concurrent clients; curl above is stricter)",
                           "ms (the issue's floor)", "× that floor"))
        for floor_ms, goal, label, ratio_unit in floors:
            r = med(f, TUFOCI) / floor_ms
            out.append({
                "goal": goal, "figure": f"publish @ {f['tags']} tags" + note,
                "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(floor_ms, label),
                "measured": figure(r, ratio_unit), "target": "≤ 1.5×", "met": r <= 1.5, "also": None,
            })
    f = find(figures, "publish_from_file")
    if f:
        speedup = med(f, NOTARY) / med(f, TUFOCI)
        out.append({
            "goal": f"publish {f['tags']} tags with build-supplied digests in ≤ 0.5 s (and vs notary, which is "
                    "given them too)",
            "figure": f"publish_from_file @ {f['tags']} tags" + note,
            "tufoci": figure(med(f, TUFOCI), "ms"), "notary": figure(med(f, NOTARY), "ms"),
            "measured": figure(med(f, TUFOCI) / 1000, "s"), "target": "≤ 0.5 s",
            "met": med(f, TUFOCI) <= 500, "also": f"{speedup:.1f}× faster than notary addhash+publish",
        })
    f = find(figures, "lookup_cold_trust_only")
    if f and "targets_metadata_bytes" in f:
        fetched = f[TUFOCI]["requests"]["metadata_bytes"]["value"]
        notary_targets = f["targets_metadata_bytes"][NOTARY]["value"]
        out.append({
            "goal": "bytes to look up one tag among 1000 < Notary's whole targets.json (ours, informational: the "
                    "issue's bytes target is 100,000 tags in bins, bench/bins.py)",
            "figure": f"lookup_cold @ {f['tags']} tags" + note,
            "tufoci": figure(fetched, "bytes of metadata fetched (cold)"),
            "notary": figure(notary_targets, "bytes (targets.json)"),
            "measured": figure(fetched / notary_targets, "× (tufoci/notary)"), "target": "< 1×",
            "met": fetched < notary_targets,
            "also": f"tufoci targets metadata alone: {f['targets_metadata_bytes'][TUFOCI]['value']} B; notary cold "
                    f"lookup fetched {f[NOTARY]['requests']['metadata_bytes']['value']} B in all",
        })
    return out


ORDER = [
    "lookup_warm", "lookup_warm_trust_only", "lookup_warm_full_path", "lookup_warm_agent", "lookup_warm_agent_trust_only", "lookup_cold", "lookup_cold_trust_only", "delegated_lookup_cold",
    "delegated_lookup_cold_trust_only", "delegated_lookup_warm", "delegated_lookup_warm_trust_only",
    "batch_lookup", "batch_lookup_trust_only", "batch_lookup_full_path", "batch_lookup_agent", "publish", "publish_from_file", "startup_floor",
]


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# tufoci vs Notary v1",
        "",
        f"{m['date']} · tufoci {m['tufoci']} ({m['tufoci_git_commit']}) · notary {m.get('notary')} · "
        f"python {m['python']} · {m['nproc']} CPU ({m['cpu_model']}) · {data['config']['runs']} runs per lookup "
        f"figure, {data['config']['publish_runs']} per publish, {data['config']['batch_runs']} per batch"
        + (" · --quick" if data["config"]["quick"] else ""),
        "",
        "Wall time of whole processes (median, p90 in brackets). Ratio = tufoci / notary (below 1: tufoci faster). "
        "Requests: tufoci = registry requests (metadata + image tag check); notary = notary-server requests "
        "(including the `GET /v2/` ping). Bytes: metadata response bytes per run from the server logs.",
        "",
        "| operation | tags | tufoci | notary | ratio | tufoci requests | notary requests | tufoci bytes | notary bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figs = sorted(data["figures"], key=lambda f: (ORDER.index(f["id"]) if f["id"] in ORDER else 99, f["tags"]))
    for f in figs:
        t, n = f[TUFOCI], f[NOTARY]

        def cell(s: dict[str, Any]) -> str:
            return f"{s['wall_time']['median']['value']:,.1f} ms ({s['wall_time']['p90']['value']:,.1f})"

        tq, nq = t["requests"], n["requests"]
        treq = f"{tq['total']['value']:g}" + (
            f" ({tq['metadata']['value']:g}+{tq['image']['value']:g})" if "image" in tq and tq["image"]["value"] else ""
        )
        lines.append(
            f"| {f['id']} | {f['tags']:,} | {cell(t)} | {cell(n)} | {f['ratio_tufoci_over_notary']['median']['value']:.2f}× "
            f"| {treq} | {nq['total']['value']:g} | {tq['metadata_bytes']['value']:,} | {nq['metadata_bytes']['value']:,} |"
        )
    lines += ["", "Size of the targets metadata (one file holding every tag):", "",
              "| tags | tufoci targets | notary targets.json |", "|---:|---:|---:|"]
    for f in figs:
        if "targets_metadata_bytes" in f:
            b = f["targets_metadata_bytes"]
            lines.append(f"| {f['tags']:,} | {b[TUFOCI]['value']:,} B | {b[NOTARY]['value']:,} B |")
    pub = [f for f in figs if f["id"] == "publish"]
    if pub:
        from_file = {f["tags"]: f for f in figs if f["id"] == "publish_from_file"}
        lines += ["", "Publish (median): tufoci in one process (`target add --publish`), reading the digests from the "
                  "registry or taking them from the build; the registry floor is curl fetching the same manifests, 8 "
                  "at a time.", "",
                  "| tags | tufoci, registry digests | tufoci, build digests | registry floor | notary addhash ×N "
                  "| notary publish | per addhash |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for f in pub:
            p, floor, ff = f["phases"], f.get("registry_floor"), from_file.get(f["tags"])
            lines.append(
                f"| {f['tags']:,} | {f[TUFOCI]['wall_time']['median']['value']:,.0f} ms | "
                f"{ff[TUFOCI]['wall_time']['median']['value'] if ff else float('nan'):,.0f} ms | "
                f"{floor['median']['value'] if floor else float('nan'):,.0f} ms | "
                f"{p[NOTARY]['addhash_all']['median']['value']:,.0f} ms"
                f" | {p[NOTARY]['publish']['median']['value']:,.0f} ms | {p[NOTARY]['addhash_per_target']['value']:.1f} ms |"
            )
    lines += ["", "## Goals from the performance issue", "", "| goal | figure | tufoci | notary | measured | target | met |",
              "|---|---|---:|---:|---:|---:|---|"]
    for g in data["goals"]:
        lines.append(
            f"| {g['goal']} | {g['figure']} | {g['tufoci']['value']:,.1f} {g['tufoci']['unit']} | "
            f"{g['notary']['value']:,.1f} {g['notary']['unit']} | {g['measured']['value']:.2f} {g['measured']['unit']} | "
            f"{g['target']} | {'yes' if g['met'] else '**no**'} |"
        )
    also = [g for g in data["goals"] if g.get("also")]
    if also:
        lines += [""] + [f"- {g['goal']}: {g['also']}" for g in also]
    prof = data.get("profile")
    if prof:
        lines += ["", f"## Profile of a warm `{prof['command']}`", "", "Imports, self time by top-level package:", ""]
        lines += [f"- {p['package']}: {p['self']['value']:.1f} ms" for p in prof["imports_self_by_top_level_package"][:10]]
        lines += ["", "Imports, cumulative by top-level import:", ""]
        lines += [f"- {p['module']}: {p['cumulative']['value']:.1f} ms" for p in prof["imports_top_level_cumulative"][:10]]
    lines += ["", "Chart: `compare.png`. Raw samples and every request of the first run of each case: `compare.json`.", ""]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib missing (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return False
    panels = [
        ("lookup_warm", "warm lookup of one tag (process)"),
        ("lookup_cold", "cold lookup of one tag (process)"),
        ("publish", "stage N tags + publish"),
    ]
    fig, grid = plt.subplots(2, 2, figsize=(13, 9.5))
    axes = list(grid.flat)
    colors = {TUFOCI: "tab:blue", NOTARY: "tab:orange"}
    for ax, (fid, title) in zip(axes, panels, strict=False):
        figs = sorted((f for f in data["figures"] if f["id"] == fid), key=lambda f: f["tags"])
        if not figs:
            ax.set_visible(False)
            continue
        xs = [f["tags"] for f in figs]
        for tool in (TUFOCI, NOTARY):
            med = [f[tool]["wall_time"]["median"]["value"] for f in figs]
            p90 = [f[tool]["wall_time"]["p90"]["value"] for f in figs]
            label = {TUFOCI: "tufoci verify" if fid != "publish" else "tufoci target add --publish",
                     NOTARY: "notary lookup" if fid != "publish" else "notary addhash×N + publish"}[tool]
            ax.errorbar(xs, med, yerr=[[0] * len(med), [p - m for p, m in zip(p90, med, strict=True)]], marker="o",
                        capsize=3, color=colors[tool], label=label)
            if fid == "publish" and tool == TUFOCI:
                built = sorted((f for f in data["figures"] if f["id"] == "publish_from_file"), key=lambda f: f["tags"])
                ax.plot([f["tags"] for f in built], [f[TUFOCI]["wall_time"]["median"]["value"] for f in built],
                        marker="s", linestyle="--", color=colors[TUFOCI], alpha=0.6,
                        label="tufoci target add --from-file --publish")
                floors = [(f["tags"], f["registry_floor"]["median"]["value"]) for f in figs if f.get("registry_floor")]
                ax.plot([x for x, _ in floors], [y for _, y in floors], marker="x", linestyle=":", color="gray",
                        label="registry floor (curl, 8 parallel manifest GETs)")
            if fid != "publish":
                skip = sorted((f for f in data["figures"] if f["id"] == fid + "_trust_only"), key=lambda f: f["tags"])
                if tool == TUFOCI and skip:
                    ax.plot([f["tags"] for f in skip], [f[TUFOCI]["wall_time"]["median"]["value"] for f in skip],
                            marker="s", linestyle="--", color=colors[TUFOCI], alpha=0.6,
                            label="tufoci verify --skip-registry-check")
                agent = sorted((f for f in data["figures"] if f["id"] == fid + "_agent"), key=lambda f: f["tags"])
                if tool == TUFOCI and agent:
                    ax.plot([f["tags"] for f in agent], [f[TUFOCI]["wall_time"]["median"]["value"] for f in agent],
                            marker="^", linestyle=":", color="tab:green",
                            label="tufoci verify, tufoci agent running")
        _log_axes(ax, "wall time, ms (median; bar to p90)", title)
    # Bytes: metadata fetched by a cold lookup of one tag, and each tool's targets metadata, vs N.
    ax = axes[3]
    figs = sorted((f for f in data["figures"] if f["id"] == "lookup_cold_trust_only"), key=lambda f: f["tags"])
    xs = [f["tags"] for f in figs]
    for tool in (TUFOCI, NOTARY):
        ax.plot(xs, [f[tool]["requests"]["metadata_bytes"]["value"] for f in figs], marker="o", color=colors[tool],
                label=f"{tool}: metadata fetched, cold lookup of one tag")
        ax.plot(xs, [f["targets_metadata_bytes"][tool]["value"] for f in figs], marker="s", linestyle="--",
                color=colors[tool], alpha=0.6, label=f"{tool}: targets metadata size")
    _log_axes(ax, "bytes", "metadata bytes to look up one tag (cold)")
    fig.suptitle(f"tufoci vs Notary v1 — {data['machine']['date']}, {data['machine']['nproc']} CPU, loopback")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return True


def _log_axes(ax: Any, ylabel: str, title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    ax.set_xlabel("number of tags signed")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def print_summary(md: str) -> None:
    print(md)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=None, help="timed runs per lookup figure (default 10; 5 with --quick)")
    parser.add_argument("--tags", type=int, default=1000, help="largest number of tags signed (default 1000)")
    parser.add_argument("--quick", action="store_true", help="a fast run: at most 100 tags, fewer runs")
    parser.add_argument("--publish-runs", type=int, default=None, help="repetitions of each publish (default 5; 2 quick)")
    parser.add_argument("--batch-runs", type=int, default=None, help="repetitions of the batch figure (default 5; 3 quick)")
    parser.add_argument("--profile", action="store_true", help="also profile a warm tufoci verify (-X importtime, cProfile)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"where results go (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (debugging)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 10)
    max_tags = min(args.tags, 100) if args.quick else args.tags
    publish_runs = args.publish_runs or (2 if args.quick else 5)
    batch_runs = args.batch_runs or (3 if args.quick else 5)
    if runs < 1 or max_tags < 1 or publish_runs < 1 or batch_runs < 1:
        parser.error("--runs, --tags, --publish-runs and --batch-runs must be at least 1")
    if not (registry_available() and images_available()):
        print("bench: docker-registry, umoci and skopeo are needed (make setup)", file=sys.stderr)
        return 2
    try:
        ensure_notary_installed()
    except NotaryError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2

    unwind_on_signals()

    started = time.perf_counter()
    sizes = size_ladder(max_tags)
    work = Path(tempfile.mkdtemp(prefix="tufoci-bench-compare-"))
    profile = None
    warm_imports: dict[str, Any] = {}
    try:
        with RegistryServer.start(work) as registry, NotaryServer.start(work) as notary:
            bench = Bench(work, registry, notary, runs=runs, sizes=sizes, publish_runs=publish_runs,
                          batch_runs=batch_runs)
            log = lambda msg: print(f"bench [{time.perf_counter() - started:6.1f}s]: {msg}", file=sys.stderr)  # noqa: E731
            log(f"registry {registry.host}, notary {notary.url}, workdir {work}; sizes {sizes}")
            bench.setup_keys()
            bench.floors()
            for n in sizes:
                log(f"{n} tags: publish ×{publish_runs} per tool …")
                bench.publish_size(n)
                log(f"{n} tags: lookups ×{runs} …")
                bench.lookups_size(n)
            if max_tags >= BATCH:
                log(f"batch of {BATCH} at {max_tags} tags ×{batch_runs} …")
                bench.batch(max_tags)
            log("warm path imports …")
            warm_imports = bench.warm_imports()
            log("delegation …")
            bench.delegation()
            if args.profile:
                log("profile …")
                profile = bench.profile()
            figures, setup_seconds = bench.figures, bench.setup_seconds
    except (BenchError, NotaryError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    machine = machine_info()
    machine["notary"] = notary_version()
    data: dict[str, Any] = {
        "benchmark": "tufoci vs notary v1",
        "format": 1,
        "machine": machine,
        "config": {
            "runs": runs, "publish_runs": publish_runs, "batch_runs": batch_runs, "quick": args.quick,
            "sizes": sizes, "batch_size": BATCH, "delegation_tags": DELEGATION_TAGS,
            "registry": "docker-registry (CNCF distribution) on 127.0.0.1, plain HTTP, filesystem storage",
            "notary": "notary-server + notary-signer on 127.0.0.1, memory storage, TLS (mutual between them)",
            "timing": "wall time of whole processes (time.perf_counter around subprocess.run); runs interleaved, "
                      "order flipped every run",
            "p90": "linear interpolation between order statistics",
            "ratio": "tufoci / notary; below 1 means tufoci is faster / smaller",
            "requests": "tufoci: registry access-log lines, metadata = paths under /v2/<scope>/tuf/; "
                        "notary: notary-server 'response completed' log lines (ping included)",
            "bytes": "response body bytes as the server logs record them (registry: combined-log size; "
                     "notary-server: http.response.written)",
        },
        "setup": {k: figure(v, "s") for k, v in setup_seconds.items()},
        "figures": figures,
    }
    data["goals"] = goals(figures, max_tags)
    data["warm_path_imports"] = warm_imports
    data["goals"].append({
        "goal": "a warm verify process imports no python-tuf, securesystemslib, cryptography (nor urllib3, click)",
        "figure": "warm_path_imports", "tufoci": figure(warm_imports["modules"], "modules imported"),
        "notary": figure(0, "(n/a)"), "measured": figure(len(warm_imports["heavy_packages_imported"]), "of them"),
        "target": "0", "met": not warm_imports["heavy_packages_imported"],
        "also": "imported: " + (", ".join(warm_imports["heavy_packages_imported"]) or "none of them") + "; of "
                + ", ".join(SLOW_MODULES) + ": " + (", ".join(warm_imports["slow_modules_imported"]) or "none"),
    })
    if profile is not None:
        data["profile"] = profile
    data["config"]["bench_duration"] = figure(time.perf_counter() - started, "s")
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "compare.json", data)
    md = markdown(data)
    tmp = out_dir / "compare.md.tmp"
    tmp.write_text(md, encoding="utf-8")
    os.replace(tmp, out_dir / "compare.md")
    chart(data, out_dir / "compare.png")
    print_summary(md)
    print(f"bench: wrote {out_dir}/compare.{{json,md,png}} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
