"""Scale with hashed bins: N signed tags, what one verify downloads, what one more tag re-signs.

Runs on the OCI image-layout backend (no server needed: sizes and signing work
are what is measured here; request counts are in bench/verify.py). Digests
are supplied as a build would (``target add --from-file``), so no images exist
and verification uses ``--skip-registry-check``.

    .venv/bin/python bench/bins.py [--tags 100000] [--bins 1024 256 …] [--out bench/results/bins.json]
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUFOCI = str(Path(sys.executable).with_name("tufoci"))


def tufoci(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([TUFOCI, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"tufoci {' '.join(args)} failed: {result.stderr}")
    return result


def layout_blob_sizes(tuf_dir: Path) -> dict[str, int]:
    """tag -> size of the metadata blob it points at."""
    index = json.loads((tuf_dir / "index.json").read_text())
    sizes = {}
    for descriptor in index["manifests"]:
        tag = (descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if not tag:
            continue
        manifest = json.loads((tuf_dir / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_text())
        sizes[tag] = manifest["layers"][0]["size"]
    return sizes


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
    tufoci(env, "target", "add", "--from-file", str(records))
    staged = time.perf_counter()
    tufoci(env, "publish", scope)
    published = time.perf_counter()

    one = work / f"one-{bins}.txt"
    one.write_text(f"{scope}/app:{tags} sha256:{tags:064x} 1234\n")
    tufoci(env, "target", "add", "--from-file", str(one))
    t0 = time.perf_counter()
    again = json.loads(tufoci(env, "publish", scope, "-o", "json").stdout)
    add_one = time.perf_counter() - t0

    sizes = layout_blob_sizes(Path(scope[4:]) / "tuf")
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--bins", type=int, nargs="+", default=[1024, 256])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "bins.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tufoci-bins-") as work:
        for bins in args.bins:
            result = run(args.tags, bins, Path(work))
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
