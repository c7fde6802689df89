#!/usr/bin/env python3
"""Benchmark the verifying mirror with containerd: direct pulls vs pulls through ``tufoci mirror serve``.

    sudo .venv/bin/python bench/mirror.py [--runs N] [--size-mb 64] [--out bench/out/mirror.json]

Sets up everything in a temporary directory and removes it at the end: a
``docker-registry`` on 127.0.0.1, images built by umoci from random bytes (so
layers do not compress) and pushed by skopeo, a maintainer who signs them, a
mirror fronting ``registry.example.com`` (mapped to that registry) and a
containerd (root only) in its own directories. Measured side by side:

- ``pull_big``: ``ctr images pull`` of one image with ``--size-mb`` of layers,
  directly (``--plain-http 127.0.0.1:PORT/…``) and through the mirror (hosts.toml),
  alternating, N runs each, the image and its content removed (``--sync``)
  before every run; the goal is mirror ≤ 1.2 × direct;
- ``mirror_rss``: the mirror's peak RSS (VmHWM) after pulling a 1 MB image and
  after pulling the big one: flat in the image size;
- ``manifest_by_tag``: warm ``GET /v2/acme/web/manifests/1.0?ns=…`` over one
  kept-alive connection, 2,000 requests, p50 and p99 (goal p99 ≤ 5 ms);
- ``pull_10_concurrent``: 10 different 4 MB images pulled at once, direct vs mirror.

JSON goes to ``--out`` (``bench/out/`` is not tracked) and a table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from tests.support.containerd import Containerd, containerd_available  # noqa: E402
from tests.support.images import build_image, push_image  # noqa: E402
from tests.support.mirror_server import UPSTREAM, MirrorProcess, write_mirror_config  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402


def tufoci(home: Path, *args: str) -> str:
    env = {**os.environ, "TUFOCI_HOME": str(home), "TUFOCI_PASSPHRASE": "bench", "TUFOCI_NO_AGENT": "1"}
    done = subprocess.run([sys.executable, "-c", "from tufoci.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"tufoci {' '.join(args)}: {done.stderr}")
    return done.stdout


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def clean(node: Containerd, reference: str) -> None:
    node.ctr("images", "rm", "--sync", reference, check=False)


def timed_pull(node: Containerd, reference: str, *options: str) -> float:
    started = time.perf_counter()
    result = node.ctr("images", "pull", *options, reference, check=False, timeout=600)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"pull {reference}: {result.stderr}")
    return took


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4),
            "runs_s": [round(v, 4) for v in values]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "mirror.json"))
    options = parser.parse_args()
    reason = containerd_available()
    if reason:
        print(f"bench/mirror.py: {reason}", file=sys.stderr)
        return 2
    results: dict = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "nproc": os.cpu_count(), "runs": options.runs, "size_mb": options.size_mb}
    with tempfile.TemporaryDirectory(prefix="tufoci-bench-mirror-") as work_dir:
        work = Path(work_dir)
        with RegistryServer.start(work / "registry") as registry:
            scope = f"{registry.host}/acme"
            home = work / "maintainer"
            for key, extra in (("root", ()), ("targets", ()), ("online", ("--unencrypted",))):
                tufoci(home, "key", "generate", key, *extra)
            tufoci(home, "init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online",
                   "--root-out", str(work / "root.json"))
            started = time.perf_counter()
            images = {"big": os.urandom(options.size_mb * 1024 * 1024), "web": os.urandom(1024 * 1024)}
            images.update({f"app{i}": os.urandom(4 * 1024 * 1024) for i in range(10)})
            for name, payload in images.items():
                push_image(build_image(work / "images", payload), "latest", f"{scope}/{name}:1.0")
            tufoci(home, "target", "add", "--publish", *(f"{scope}/{name}:1.0" for name in images))
            results["setup_s"] = round(time.perf_counter() - started, 2)

            config = write_mirror_config(work / "mirror.yaml", registry.host, work / "root.json", default=False)
            mirror = MirrorProcess.start(work / "mirror", config)
            node = Containerd.start(work / "containerd")
            node.mirror(UPSTREAM, f"http://{mirror.host}")
            via_mirror = ("--hosts-dir", str(node.hosts_dir))
            try:
                # memory: a small image first, then the big one
                timed_pull(node, f"{UPSTREAM}/acme/web:1.0", *via_mirror)
                rss_small = peak_rss_kib(mirror.process.pid)
                direct, mirrored = [], []
                for _ in range(options.runs):
                    for times, reference, extra in ((direct, f"{scope}/big:1.0", ("--plain-http",)),
                                                    (mirrored, f"{UPSTREAM}/acme/big:1.0", via_mirror)):
                        clean(node, reference)
                        times.append(timed_pull(node, reference, *extra))
                        clean(node, reference)
                rss_big = peak_rss_kib(mirror.process.pid)
                results["pull_big"] = {"direct": summary(direct), "mirror": summary(mirrored),
                                       "ratio_median": round(statistics.median(mirrored) / statistics.median(direct), 3),
                                       "goal_ratio": 1.2}
                results["mirror_rss"] = {"peak_kib_after_1mb_image": rss_small,
                                         f"peak_kib_after_{options.size_mb}mb_image": rss_big}

                # warm manifest by tag over one kept-alive connection
                connection = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
                latencies = []
                for i in range(2100):
                    started = time.perf_counter()
                    connection.request("GET", f"/v2/acme/web/manifests/1.0?ns={UPSTREAM}")
                    response = connection.getresponse()
                    response.read()
                    if i >= 100:  # the first 100 warm up
                        latencies.append(time.perf_counter() - started)
                    assert response.status == 200
                connection.close()
                latencies.sort()
                results["manifest_by_tag"] = {
                    "requests": len(latencies), "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
                    "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3), "goal_p99_ms": 5.0}

                # 10 different images at once
                def pull_all(prefix: str, *extra: str) -> float:
                    references = [f"{prefix}/app{i}:1.0" for i in range(10)]
                    for reference in references:
                        clean(node, reference)
                    started = time.perf_counter()
                    with ThreadPoolExecutor(10) as pool:
                        list(pool.map(lambda r: timed_pull(node, r, *extra), references))
                    took = time.perf_counter() - started
                    for reference in references:
                        clean(node, reference)
                    return took

                concurrent = {"direct": [], "mirror": []}
                for _ in range(max(1, options.runs // 2)):
                    concurrent["direct"].append(pull_all(scope, "--plain-http"))
                    concurrent["mirror"].append(pull_all(f"{UPSTREAM}/acme", *via_mirror))
                results["pull_10_concurrent"] = {k: summary(v) for k, v in concurrent.items()}
                results["mirror_metrics_excerpt"] = [line for line in mirror.metrics().splitlines()
                                                     if line.startswith(("tufoci_mirror_requests_total",
                                                                         "tufoci_mirror_bytes_streamed_total"))]
            finally:
                node.stop()
                mirror.stop()
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "mirror_metrics_excerpt"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
