"""Benchmark: ``tufoci import-notary`` (dry run and full import) vs ``notary list`` reading the same collection.

    .venv/bin/python bench/notary_import.py [--tags 1000] [--runs 7] [--full-runs 3] [--out bench/out/notary_import.json]

Setup (not timed): notary-signer + notary-server on loopback (bench/peers/notary.py, TLS, memory storage), a
docker-registry on loopback holding N + N/10 real, distinct image manifests (one image pushed with skopeo, the
others the same manifest with an annotation, PUT by digest), one collection of N tags naming them, built with
``notary addhash`` and one publish, plus ``targets/releases`` (its delegate's key Notary-encrypted) holding every
tenth tag with another digest (N/10 conflicts to report).

Timed, each a separate process, N runs, median and p90:
- ``import_notary_dry_run``: ``tufoci import-notary GUN --server … --root-sha256 H --dry-run -o json`` (root
  chain, timestamp, snapshot, targets, delegation, signatures and hashes, the plan and its conflict report);
- ``import_notary_full``: the same without ``--dry-run``, into a freshly initialised scope (``--full-runs``
  runs; the scope's metadata repository and TUFOCI_HOME are wiped between runs, untimed): every manifest
  checked by digest in the registry, the delegation and the tags staged (each tag's manifest fetched again by
  ``target add REF@DIGEST``), ``targets`` signed and published, ``releases`` pushed as a proposal;
- ``import_notary_rerun``: the same import again with nothing changed in Notary (verify, plan, compare with the
  record; nothing staged, nothing published);
- ``notary_list_cold``: ``notary list GUN`` with the client's cache dropped first (it downloads and verifies
  root, timestamp, snapshot, targets and the delegation, trusting the root on first use);
- ``notary_list_warm``: ``notary list GUN`` with the cache kept (it still fetches the timestamp).
In-process, the split of the tufoci figure: ``in_process.verify`` (read + verify) and ``in_process.plan``.
Writes JSON to ``bench/out/`` (untracked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
os.environ["PYTHONSAFEPATH"] = "1"

from bench.peers.notary import NotaryError, NotaryServer, ensure_notary_installed, make_delegation_key, notary_version  # noqa: E402
from bench.verify import (  # noqa: E402
    figure,
    machine_info,
    run_checked,
    time_stats,
    tufoci_binary,
    unwind_on_signals,
    write_json,
)
from tests.support.images import build_image, images_available, push_image  # noqa: E402
from tests.support.registry import RegistryServer, registry_available  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "out" / "notary_import.json"
REPO = "acme/web"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_manifests(registry: RegistryServer, work: Path, count: int) -> list[tuple[str, int]]:
    """``count`` distinct manifests of one real image in ``REPO`` → [(sha256 hex, length)], PUT by digest."""
    push_image(build_image(work / "image", b"notary import bench"), "latest", f"{registry.host}/{REPO}:base")
    base = json.loads(registry.get_manifest(REPO, "base")[0])
    pushed = []
    for i in range(count):
        body = json.dumps(dict(base, annotations={"bench": str(i)}), separators=(",", ":")).encode()
        digest = hashlib.sha256(body).hexdigest()
        status, _, answer = registry.request("PUT", f"/v2/{REPO}/manifests/sha256:{digest}", data=body,
                                             headers={"Content-Type": OCI_MANIFEST})
        if status != 201:
            raise RuntimeError(f"PUT manifest {i}: HTTP {status}: {answer[:200]!r}")
        pushed.append((digest, len(body)))
    return pushed


def build(server: NotaryServer, work: Path, gun: str, manifests: list[tuple[str, int]], tags: int) -> tuple[object, float]:
    publisher = server.client("publisher")
    started = time.monotonic()
    for attempt in range(3):  # the signer's gRPC may not accept the server's first call yet
        try:
            publisher.init(gun)
            break
        except NotaryError:
            if attempt == 2:
                raise
            time.sleep(1)
    publisher.addhash_many(gun, ((f"t{i:05d}", manifests[i][1], manifests[i][0]) for i in range(tags)))
    publisher.publish(gun)
    key, cert = make_delegation_key(work / "keys", "releases")
    publisher.key_import(key, "targets/releases")
    publisher.delegation_add(gun, "targets/releases", cert)
    releases = ((f"t{i:05d}", manifests[tags + n][1], manifests[tags + n][0]) for n, i in enumerate(range(0, tags, 10)))
    publisher.addhash_many(gun, releases, role="targets/releases")
    publisher.publish(gun)
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
    parser.add_argument("--full-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    unwind_on_signals()
    ensure_notary_installed()
    if not (registry_available() and images_available()):
        print("bench: docker-registry, umoci and skopeo are needed (make setup)", file=sys.stderr)
        return 2
    with (tempfile.TemporaryDirectory(prefix="tufoci-bench-notary-") as tmp, NotaryServer.start(Path(tmp)) as server,
          RegistryServer.start(Path(tmp) / "registry") as registry):
        work = Path(tmp)
        gun = f"{registry.host}/{REPO}"
        started = time.monotonic()
        manifests = push_manifests(registry, work, args.tags + len(range(0, args.tags, 10)))
        push_seconds = time.monotonic() - started
        publisher, build_seconds = build(server, work, gun, manifests, args.tags)
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(server.certs.ca))
        with urllib.request.urlopen(f"{server.url}/v2/{gun}/_trust/tuf/1.root.json", context=context) as r:
            pin = hashlib.sha256(r.read()).hexdigest()
        env = dict(os.environ, TUFOCI_HOME=str(work / "home"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        tufoci = [tufoci_binary(), "import-notary", gun, "--server", server.url, "--ca-file", str(server.certs.ca),
                  "--root-sha256", pin, "-o", "json"]
        consumer = server.client("consumer")
        notary_list = consumer.argv("list", gun)
        results = {
            "import_notary_dry_run": time_stats(timed([*tufoci, "--dry-run"], env, args.runs)),
            "notary_list_cold": time_stats(timed(notary_list, consumer.env, args.runs,
                                                 before=lambda: consumer.drop_cache(gun))),
            "notary_list_warm": time_stats(timed(notary_list, consumer.env, args.runs)),
        }
        full_env = dict(env, TUFOCI_HOME=str(work / "home-full"), TUFOCI_PASSPHRASE="bench")
        scope = f"{registry.host}/acme"

        def fresh_scope() -> None:  # untimed: a new maintainer machine and an empty metadata repository
            nonlocal registry
            shutil.rmtree(work / "home-full", ignore_errors=True)
            shutil.rmtree(registry.root / "docker" / "registry" / "v2" / "repositories" / "acme" / "tuf",
                          ignore_errors=True)
            registry = registry.restart()
            for name, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",))):
                run_checked([tufoci_binary(), "key", "generate", name, *options], full_env, what="key generate")
            run_checked([tufoci_binary(), "init", scope, "--root-key", "root", "--targets-key", "targets",
                         "--online-key", "online", "--plain-http"], full_env, what="init")

        results["import_notary_full"] = time_stats(timed([*tufoci, "--plain-http"], full_env, args.full_runs,
                                                         before=fresh_scope))
        results["import_notary_rerun"] = time_stats(timed([*tufoci, "--plain-http"], full_env, args.runs))
        last = subprocess.run([*tufoci, "--plain-http", "--dry-run"], env=full_env, capture_output=True, text=True,
                              check=True)
        since = json.loads(last.stdout)["collections"][0]["sinceLastImport"]
        results["imported_tags"] = figure(since["unchanged"], "tags")
        registry.stop()  # the restarted one (the first is stopped by the with block, idempotently)
        # in-process split (one run after a warm-up)
        os.environ["TUFOCI_HOME"] = str(work / "home-inproc")
        from tufoci.repo_tool.notary_plan import make_plan
        from tufoci.repo_tool.notary_source import ServerSource
        from tufoci.repo_tool.notary_verify import RootPin, verify_collection

        source = ServerSource(server.url, gun, ca_file=str(server.certs.ca))
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
        "config": {"tags": args.tags, "runs": args.runs, "full_runs": args.full_runs,
                   "releases_tags": len(range(0, args.tags, 10))},
        "setup": {"build_collection": figure(build_seconds, "s"), "push_manifests": figure(push_seconds, "s")},
        "results": results,
    }
    write_json(args.out, data)
    for name in ("import_notary_dry_run", "import_notary_full", "import_notary_rerun", "notary_list_cold",
                 "notary_list_warm"):
        stats = results[name]
        print(f"{name:24} median {stats['median']['value']:8.1f} ms   p90 {stats['p90']['value']:8.1f} ms")
    print(f"in process: verify {results['in_process']['verify']['value']} ms, plan "
          f"{results['in_process']['plan']['value']} ms, {results['in_process']['requests']['value']} requests")
    print(f"full import: {results['imported_tags']['value']} tags recorded as imported")
    print(f"built {args.tags} tags in {build_seconds:.1f} s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
