"""Benchmark: read + verify + plan a Notary collection with ``tufoci import-notary`` vs ``notary list`` reading it.

    .venv/bin/python bench/notary_import.py [--tags 1000] [--runs 7] [--out bench/out/notary_import.json]

Setup (not timed): notary-signer + notary-server on loopback (bench/peers/notary.py, TLS, memory storage), one
collection of N tags built with ``notary addhash`` (one process per tag: ~13 s for 1,000) and one publish, plus
``targets/releases`` holding every tenth tag with another digest (N/10 conflicts to report).

Timed, each a separate process, N runs, median and p90:
- ``import_notary_dry_run``: ``tufoci import-notary GUN --server … --root-sha256 H --dry-run -o json`` (root
  chain, timestamp, snapshot, targets, delegation, signatures and hashes, the plan and its conflict report);
- ``notary_list_cold``: ``notary list GUN`` with the client's cache dropped first (it downloads and verifies
  root, timestamp, snapshot, targets and the delegation, trusting the root on first use);
- ``notary_list_warm``: ``notary list GUN`` with the cache kept (it still fetches the timestamp).
In-process, the split of the tufoci figure: ``in_process.verify`` (read + verify) and ``in_process.plan``.
Writes JSON to ``bench/out/`` (untracked).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
os.environ["PYTHONSAFEPATH"] = "1"

from bench.peers.notary import NotaryServer, ensure_notary_installed, make_delegation_key, notary_version  # noqa: E402
from bench.verify import (  # noqa: E402
    figure,
    machine_info,
    run_checked,
    time_stats,
    tufoci_binary,
    unwind_on_signals,
    write_json,
)

DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "notary_import.json"
GUN = "registry.example.com/acme/web"


def _digest(n: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}manifest {n}".encode()).hexdigest()


def build(server: NotaryServer, work: Path, tags: int) -> tuple[object, float]:
    publisher = server.client("publisher")
    started = time.monotonic()
    publisher.init(GUN)
    publisher.addhash_many(GUN, ((f"t{i:05d}", 500 + i, _digest(i)) for i in range(tags)))
    publisher.publish(GUN)
    key, cert = make_delegation_key(work / "keys", "releases")
    publisher.key_import(key, "targets/releases")
    publisher.delegation_add(GUN, "targets/releases", cert)
    publisher.addhash_many(
        GUN, ((f"t{i:05d}", 600 + i, _digest(i, "release ")) for i in range(0, tags, 10)), role="targets/releases"
    )
    publisher.publish(GUN)
    return publisher, time.monotonic() - started


def timed(argv: list[str], env: dict[str, str], runs: int, before=None) -> list[float]:
    samples = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        run_checked(argv, env, what=argv[0])
        samples.append(time.perf_counter() - started)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    unwind_on_signals()
    ensure_notary_installed()
    with tempfile.TemporaryDirectory(prefix="tufoci-bench-notary-") as tmp, NotaryServer.start(Path(tmp)) as server:
        work = Path(tmp)
        publisher, build_seconds = build(server, work, args.tags)
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(server.certs.ca))
        with urllib.request.urlopen(f"{server.url}/v2/{GUN}/_trust/tuf/1.root.json", context=context) as r:
            pin = hashlib.sha256(r.read()).hexdigest()
        env = dict(os.environ, TUFOCI_HOME=str(work / "home"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        tufoci = [tufoci_binary(), "import-notary", GUN, "--server", server.url, "--ca-file", str(server.certs.ca),
                  "--root-sha256", pin, "--dry-run", "-o", "json"]
        consumer = server.client("consumer")
        notary_list = consumer.argv("list", GUN)
        results = {
            "import_notary_dry_run": time_stats(timed(tufoci, env, args.runs)),
            "notary_list_cold": time_stats(timed(notary_list, consumer.env, args.runs,
                                                 before=lambda: consumer.drop_cache(GUN))),
            "notary_list_warm": time_stats(timed(notary_list, consumer.env, args.runs)),
        }
        # in-process split (one run after a warm-up)
        os.environ["TUFOCI_HOME"] = str(work / "home-inproc")
        from tufoci.repo_tool.notary_plan import make_plan
        from tufoci.repo_tool.notary_source import ServerSource
        from tufoci.repo_tool.notary_verify import RootPin, verify_collection

        source = ServerSource(server.url, GUN, ca_file=str(server.certs.ca))
        started = time.perf_counter()
        collection = verify_collection(source, RootPin(sha256=pin))
        verified = time.perf_counter()
        plan = make_plan(collection, "dct")
        planned = time.perf_counter()
        results["in_process"] = {
            "verify": figure((verified - started) * 1000, "ms"),
            "plan": figure((planned - verified) * 1000, "ms"),
            "requests": figure(source.request_count, "requests"),
            "tags_planned": figure(len(plan.tags), "tags"),
            "conflicts": figure(len(plan.conflicts), "tags"),
        }
        listed = subprocess.run(notary_list, env=consumer.env, capture_output=True, text=True, check=True).stdout
        results["notary_list_rows"] = figure(sum(1 for line in listed.splitlines() if line.startswith("t")), "tags")
    data = {
        "machine": dict(machine_info(), notary=notary_version()),
        "config": {"tags": args.tags, "runs": args.runs, "releases_tags": len(range(0, args.tags, 10))},
        "setup": {"build_collection": figure(build_seconds, "s")},
        "results": results,
    }
    write_json(args.out, data)
    for name in ("import_notary_dry_run", "notary_list_cold", "notary_list_warm"):
        stats = results[name]
        print(f"{name:24} median {stats['median']['value']:8.1f} ms   p90 {stats['p90']['value']:8.1f} ms")
    print(f"in process: verify {results['in_process']['verify']['value']} ms, plan "
          f"{results['in_process']['plan']['value']} ms, {results['in_process']['requests']['value']} requests")
    print(f"built {args.tags} tags in {build_seconds:.1f} s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
