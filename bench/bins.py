"""Scale with hashed bins: N signed tags, what one verify downloads, what one more tag re-signs.

Runs on the OCI image-layout backend (no server needed: sizes and signing work
are what is measured here; request counts are in bench/verify.py). Digests
are supplied as a build would (``target add --from-file``), so no images exist
and verification uses ``--skip-registry-check``. Also one flat repository
(``--flat-tags``, no bins): a big targets file must neither exhaust memory nor
approach the registries' ~4 MiB manifest cap (metadata lives in blobs, §2).
Peak memory is each tufoci process's own maximum resident set (wait4).

    .venv/bin/python bench/bins.py [--tags 100000] [--bins 1024 256 …] [--flat-tags 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUFOCI = str(Path(sys.executable).with_name("tufoci"))


@dataclass
class Ran:
    stdout: str
    peak_rss_mib: float


def tufoci(env: dict, *args: str) -> Ran:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([TUFOCI, *args], env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak resident set
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"tufoci {' '.join(args)} failed: {err.read()}")
        return Ran(out.read(), round(usage.ru_maxrss / 1024, 1))


def layout_blob_sizes(tuf_dir: Path) -> tuple[dict[str, int], int]:
    """(tag -> size of the metadata blob it points at, size of the largest manifest)."""
    index = json.loads((tuf_dir / "index.json").read_text())
    sizes, largest_manifest = {}, 0
    for descriptor in index["manifests"]:
        tag = (descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if not tag:
            continue
        raw = (tuf_dir / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_bytes()
        largest_manifest = max(largest_manifest, len(raw))
        sizes[tag] = json.loads(raw)["layers"][0]["size"]
    return sizes, largest_manifest


def run(tags: int, bins: int, work: Path) -> dict:
    env = {**os.environ, "TUFOCI_HOME": str(work / f"home-{bins}"), "TUFOCI_PASSPHRASE": "bench"}
    scope = f"oci:{work / f'store-{bins}'}/acme"
    for key, options in (("root", ()), ("targets", ()), ("online", ("--unencrypted",)), ("bins", ("--unencrypted",))):
        tufoci(env, "key", "generate", key, *options)
    tufoci(env, "init", scope, "--root-key", "root", "--targets-key", "targets", "--online-key", "online")
    if bins:
        tufoci(env, "delegate", scope, "bins", "--key", "bins", "--bins", str(bins))
    records = work / f"records-{bins}.txt"
    records.write_text("".join(f"{scope}/app:{n} sha256:{n:064x} {1000 + n % 9000}\n" for n in range(tags)))

    started = time.perf_counter()
    stage = tufoci(env, "target", "add", "--from-file", str(records))
    staged = time.perf_counter()
    publish = tufoci(env, "publish", scope)
    published = time.perf_counter()

    one = work / f"one-{bins}.txt"
    one.write_text(f"{scope}/app:{tags} sha256:{tags:064x} 1234\n")
    tufoci(env, "target", "add", "--from-file", str(one))
    t0 = time.perf_counter()
    again = json.loads(tufoci(env, "publish", scope, "-o", "json").stdout)
    add_one = time.perf_counter() - t0
    verify = tufoci(env, "verify", "--skip-registry-check", f"{scope}/app:{tags // 2}")

    sizes, largest_manifest = layout_blob_sizes(Path(scope[4:]) / "tuf")
    latest = {}
    for tag, size in sizes.items():
        role, _, version = tag.rpartition(".")
        if version.isdigit() and (role not in latest or int(version) > latest[role][0]):
            latest[role] = (int(version), size)
    snapshot = latest["snapshot"][1]
    targets = latest["targets"][1]
    bin_sizes = [size for role, (_, size) in latest.items() if role.startswith("d.bins-")]
    one_bin = max(bin_sizes) if bin_sizes else 0
    timestamp = sizes["timestamp"]
    return {
        "tags": tags,
        "bins": bins,
        "stage_seconds": round(staged - started, 3),
        "publish_seconds": round(published - staged, 3),
        "add_one_tag_publish_seconds": round(add_one, 3),
        "add_one_tag_re_signed": sorted(again["published"]),
        "snapshot_bytes": snapshot,
        "targets_bytes": targets,
        "largest_bin_bytes": one_bin,
        "verify_one_tag_metadata_bytes": timestamp + snapshot + targets + one_bin,
        "largest_manifest_bytes": largest_manifest,
        "peak_rss_mib": {"target_add": stage.peak_rss_mib, "publish": publish.peak_rss_mib,
                         "verify": verify.peak_rss_mib},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--bins", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--flat-tags", type=int, default=10_000, help="tags of the flat repository (0: none)")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "bins.json"))  # make bench-results: results/
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tufoci-bins-") as work:
        cases = [(args.tags, bins) for bins in args.bins] + ([(args.flat_tags, 0)] if args.flat_tags else [])
        for tags, bins in cases:
            result = run(tags, bins, Path(work))
            results.append(result)
            print(json.dumps(result), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
