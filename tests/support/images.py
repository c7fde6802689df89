"""Build small real OCI images with umoci and move them with skopeo, for tests.

No docker daemon is needed: ``umoci`` writes an OCI image layout on disk and
``skopeo`` copies between layouts and registries. Images are deterministic:
the payload file's mtime and every ``created`` timestamp are fixed to the
epoch, so the same payload (and platform) gives the same digest on every run
and machine with the same umoci, while different payloads give different
digests. That makes digests usable in assertions and fixtures.

Every registry reference here is plain HTTP on 127.0.0.1, so TLS verification
is turned off for ``docker://`` sides, and ``--insecure-policy`` avoids
needing /etc/containers/policy.json. Copies use ``--preserve-digests`` so that
skopeo fails rather than silently converting a manifest (changing its digest).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "OCI_INDEX",
    "OCI_MANIFEST",
    "ToolError",
    "build_image",
    "build_index",
    "images_available",
    "layout_digest",
    "push_image",
    "run_tool",
    "skopeo_copy",
    "skopeo_sync",
    "sync_destination",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

_EPOCH = "1970-01-01T00:00:00Z"
_DEFAULT_TIMEOUT = 120.0

# (payload sha256, tag, os, architecture) -> layout built earlier in this process
_IMAGE_CACHE: dict[tuple[str, str, str, str], Path] = {}


class ToolError(RuntimeError):
    """An external tool failed; the message carries the command and its stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{' '.join(self.cmd)} {status}\n--- stderr ---\n{stderr.strip()[-4000:]}")


def images_available() -> bool:
    """True when umoci and skopeo are installed, so tests can skip otherwise."""
    return shutil.which("umoci") is not None and shutil.which("skopeo") is not None


def run_tool(cmd: Sequence[str], *, timeout: float = _DEFAULT_TIMEOUT) -> str:
    """Run a command, return its stdout; raise :class:`ToolError` with stderr on failure.

    Timeouts keep a hung skopeo (e.g. a registry that stopped answering)
    from hanging the whole test run.
    """
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise ToolError(cmd, None, out, err) from exc
    except FileNotFoundError as exc:
        raise ToolError(cmd, 127, "", f"{cmd[0]} not found on PATH (run scripts/install-system-deps)") from exc
    if proc.returncode != 0:
        raise ToolError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


# ---------------------------------------------------------------------- building


def _umoci(*args: str) -> str:
    """umoci, rootless when not root (rootful umoci needs CAP_CHOWN etc.)."""
    cmd = ["umoci", *args]
    if os.geteuid() != 0 and args and args[0] in ("insert", "unpack", "repack"):
        cmd.insert(2, "--rootless")
    return run_tool(cmd, timeout=60)


def _build_layout(layout: Path, payload: bytes, tag: str, os_name: str, architecture: str) -> None:
    """Create ``layout`` holding one image: a layer with ``/payload`` = ``payload``."""
    staging = layout.parent / f".{layout.name}.payload"
    staging.write_bytes(payload)
    os.utime(staging, (0, 0))  # mtime goes into the layer tar: fix it for stable digests
    try:
        image = f"{layout}:{tag}"
        _umoci("init", "--layout", str(layout))
        _umoci("new", "--image", image)
        _umoci("insert", "--image", image, "--history.created", _EPOCH, str(staging), "/payload")
        _umoci(
            "config",
            "--image",
            image,
            "--no-history",
            "--created",
            _EPOCH,
            "--os",
            os_name,
            "--architecture",
            architecture,
            "--config.cmd",
            "/payload",
        )
        _umoci("gc", "--layout", str(layout))  # drop the intermediate manifests/configs
    finally:
        staging.unlink(missing_ok=True)


def build_image(
    workdir: Path,
    payload: bytes,
    *,
    tag: str = "latest",
    os_name: str = "linux",
    architecture: str = "amd64",
) -> Path:
    """Build a one-layer OCI image holding ``payload`` and return its layout dir.

    The layout is ``workdir/oci-<hash>`` with the image under ``tag``; push
    it with :func:`push_image`. Built once per (payload, tag, platform) per
    process; later calls copy the cached layout (identical digests).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    payload_hash = hashlib.sha256(payload).hexdigest()
    key = (payload_hash, tag, os_name, architecture)
    name = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    layout = workdir / f"oci-{name}"
    if layout.is_dir():
        return layout  # only complete layouts are ever renamed into place
    tmp = _fresh_tmp(layout)
    cached = _IMAGE_CACHE.get(key)
    if cached is not None and cached.is_dir():
        shutil.copytree(cached, tmp)
    else:
        _build_layout(tmp, payload, tag, os_name, architecture)
    tmp.rename(layout)
    _IMAGE_CACHE.setdefault(key, layout)
    return layout


def _fresh_tmp(layout: Path) -> Path:
    """Empty scratch path next to ``layout``; builds go there, then are renamed.

    So a build interrupted half-way never leaves a layout that looks usable.
    """
    tmp = layout.with_name(f".{layout.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def _read_index(layout: Path) -> dict[str, Any]:
    """The layout's top-level index.json."""
    data: dict[str, Any] = json.loads((Path(layout) / "index.json").read_text(encoding="utf-8"))
    return data


def _descriptor(layout: Path, tag: str) -> dict[str, Any]:
    """The index.json descriptor that ``tag`` names in ``layout``."""
    for desc in _read_index(layout).get("manifests", []):
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return dict(desc)
    raise KeyError(f"tag {tag!r} not in OCI layout {layout}")


def layout_digest(layout: Path, tag: str = "latest") -> str:
    """Digest (``sha256:...``) of the manifest or index ``tag`` names in a layout.

    Since pushes preserve digests, it is also the digest the registry reports.
    """
    return str(_descriptor(layout, tag)["digest"])


def build_index(
    workdir: Path,
    platforms: Mapping[str, bytes] | None = None,
    *,
    tag: str = "latest",
) -> Path:
    """Build a multi-platform OCI image index and return its layout dir.

    ``platforms`` maps ``"os/arch"`` to that image's payload (default: two
    images, linux/amd64 and linux/arm64, with distinct payloads). Push it
    with ``push_image(layout, tag, dest, all_platforms=True)``.
    """
    if platforms is None:
        platforms = {"linux/amd64": b"index-member amd64\n", "linux/arm64": b"index-member arm64\n"}
    workdir = Path(workdir)
    key_material = "\0".join(f"{p}={hashlib.sha256(b).hexdigest()}" for p, b in sorted(platforms.items()))
    layout = workdir / f"oci-index-{hashlib.sha256((tag + key_material).encode()).hexdigest()[:16]}"
    if layout.is_dir():
        return layout
    final, layout = layout, _fresh_tmp(layout)
    manifests: list[dict[str, Any]] = []
    for platform, payload in platforms.items():
        os_name, _, architecture = platform.partition("/")
        if not os_name or not architecture:
            raise ValueError(f"platform must be 'os/arch', got {platform!r}")
        member = build_image(workdir / "members", payload, tag=tag, os_name=os_name, architecture=architecture)
        desc = _descriptor(member, tag)
        if not manifests:
            shutil.copytree(member, layout)
            (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}), encoding="utf-8")
        else:
            for blob in (member / "blobs" / "sha256").iterdir():
                target = layout / "blobs" / "sha256" / blob.name
                if not target.exists():
                    shutil.copyfile(blob, target)
        desc.pop("annotations", None)
        desc["platform"] = {"architecture": architecture, "os": os_name}
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    index_bytes = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    index_hash = hashlib.sha256(index_bytes).hexdigest()
    (layout / "blobs" / "sha256" / index_hash).write_bytes(index_bytes)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_INDEX,
                "digest": f"sha256:{index_hash}",
                "size": len(index_bytes),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top), encoding="utf-8")
    layout.rename(final)
    return final


# ---------------------------------------------------------------------- moving


def _creds_args(flag: str, creds: str | tuple[str, str] | None) -> list[str]:
    if creds is None:
        return []
    value = creds if isinstance(creds, str) else f"{creds[0]}:{creds[1]}"
    return [flag, value]


def skopeo_copy(
    src: str,
    dst: str,
    all_platforms: bool = False,
    *,
    src_creds: str | tuple[str, str] | None = None,
    dest_creds: str | tuple[str, str] | None = None,
    timeout: float = _DEFAULT_TIMEOUT,
) -> None:
    """``skopeo copy`` between refs with transports (``docker://H:P/repo:tag``, ``oci:DIR:TAG``).

    ``all_platforms`` copies a whole index (``--all``); otherwise skopeo
    picks the image for the host platform out of an index.
    """
    cmd = ["skopeo", "copy", "--insecure-policy", "--preserve-digests"]
    if all_platforms:
        cmd.append("--all")
    if src.startswith("docker://"):
        cmd.append("--src-tls-verify=false")
    if dst.startswith("docker://"):
        cmd.append("--dest-tls-verify=false")
    cmd += _creds_args("--src-creds", src_creds)
    cmd += _creds_args("--dest-creds", dest_creds)
    cmd += [src, dst]
    run_tool(cmd, timeout=timeout)


def push_image(
    layout: Path,
    tag: str,
    dest: str,
    *,
    all_platforms: bool = False,
    dest_creds: str | tuple[str, str] | None = None,
) -> None:
    """Push the image ``tag`` of an OCI layout to ``dest`` (``127.0.0.1:PORT/acme/web:1.0``).

    For an index from :func:`build_index` pass ``all_platforms=True``.
    """
    dst = dest if dest.startswith("docker://") else f"docker://{dest}"
    skopeo_copy(f"oci:{Path(layout)}:{tag}", dst, all_platforms, dest_creds=dest_creds)


def sync_destination(src_repo: str, dst_prefix: str) -> str:
    """Where :func:`skopeo_sync` puts ``src_repo`` under ``dst_prefix`` (without ``--scoped``).

    skopeo keeps only the last path component of the source repository:
    ``127.0.0.1:P1/acme/web`` + ``127.0.0.1:P2/acme`` -> ``127.0.0.1:P2/acme/web``
    (and ``+ 127.0.0.1:P2/mirror`` -> ``127.0.0.1:P2/mirror/web``). A tag on
    the source is dropped from the result.
    """
    repo = src_repo.removeprefix("docker://")
    last = repo.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return f"{dst_prefix.removeprefix('docker://').rstrip('/')}/{last}"


def skopeo_sync(
    src_repo: str,
    dst_prefix: str,
    *,
    all_platforms: bool = True,
    src_creds: str | tuple[str, str] | None = None,
    dest_creds: str | tuple[str, str] | None = None,
    timeout: float = _DEFAULT_TIMEOUT,
) -> str:
    """Copy every tag of ``src_repo`` (or one tag, if given) registry-to-registry.

    Destination naming (skopeo 1.9, no ``--scoped``): the LAST path
    component of the source repo is appended to ``dst_prefix``, so
    ``skopeo_sync("127.0.0.1:P1/acme/web", "127.0.0.1:P2/acme")`` fills
    ``127.0.0.1:P2/acme/web``; the ``acme`` of the source is not kept. (``--scoped``
    would append the full source ref, host:port included, which is not a
    valid reference for a 127.0.0.1:PORT source, so it is not offered.)
    Returns that destination repository. Digests are preserved.
    """
    cmd = [
        "skopeo",
        "sync",
        "--insecure-policy",
        "--preserve-digests",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]
    if all_platforms:
        cmd.append("--all")
    cmd += _creds_args("--src-creds", src_creds)
    cmd += _creds_args("--dest-creds", dest_creds)
    cmd += [src_repo.removeprefix("docker://"), dst_prefix.removeprefix("docker://")]
    run_tool(cmd, timeout=timeout)
    return sync_destination(src_repo, dst_prefix)
