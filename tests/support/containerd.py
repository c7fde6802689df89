"""A real containerd (Debian's package) for pull tests, in its own directories, as a node runs it.

Started as root with ``version = 2`` config, its own root, state and socket
under a temporary directory (the CRI plugin off: ``ctr`` talks to it directly),
ready when ``ctr --address SOCK version`` answers, stopped by its PID. Pulls
use ``ctr images pull --hosts-dir DIR/certs.d`` with a ``hosts.toml`` written as
a Kubernetes node's would be for a mirror: the mirror is the ``server`` AND the
only host, so containerd has nothing to fall back to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import stop_process


def containerd_available() -> str | None:
    """None when containerd can run here; else why not (the tests skip with it)."""
    if not shutil.which("containerd") or not shutil.which("ctr"):
        return "containerd is not installed (scripts/install-system-deps installs it)"
    if os.geteuid() != 0:
        return "containerd runs as root only"
    return None


def hosts_toml(mirror_url: str) -> str:
    """The node's ``certs.d/<registry>/hosts.toml``: every pull and resolve through the mirror, no fallback."""
    return (f'server = "{mirror_url}"\n\n'
            f'[host."{mirror_url}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


class Containerd:
    def __init__(self, directory: Path, process: subprocess.Popen, sockets: Path):
        self.directory, self.process, self._sockets = directory, process, sockets
        self.socket = sockets / "containerd.sock"
        self.hosts_dir = directory / "certs.d"

    @classmethod
    def start(cls, directory: Path, timeout: float = 30) -> Containerd:
        directory.mkdir(parents=True, exist_ok=True)
        # its sockets in a short directory of their own: a Unix socket path has at most 104 bytes (with
        # ".ttrpc" added), which a test's temporary directory under pytest-xdist can exceed
        sockets = Path(tempfile.mkdtemp(prefix="ctd-"))
        config = directory / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{directory / "root"}"\n'
            f'state = "{directory / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{sockets / "containerd.sock"}"\n'
            '[debug]\n  level = "warn"\n'
        )
        log = open(directory / "containerd.log", "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
        log.close()
        server = cls(directory, process, sockets)
        deadline = time.monotonic() + timeout
        while server.ctr("version", check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"containerd did not start: {(directory / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return server

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["ctr", "--address", str(self.socket), *args], capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {result.stderr}")
        return result

    def mirror(self, registry: str, mirror_url: str) -> None:
        """Route every pull of ``registry/...`` through ``mirror_url`` (hosts.toml)."""
        (self.hosts_dir / registry).mkdir(parents=True, exist_ok=True)
        (self.hosts_dir / registry / "hosts.toml").write_text(hosts_toml(mirror_url))

    def pull(self, reference: str, *options: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.ctr("images", "pull", "--hosts-dir", str(self.hosts_dir), *options, reference, check=False,
                        timeout=timeout)

    def image_digest(self, reference: str) -> str | None:
        """The digest containerd recorded for ``reference`` (``ctr images ls``), or None."""
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == reference:
                return fields[2]
        return None

    def content(self) -> set[str]:
        """Every digest in containerd's content store (``ctr content ls``)."""
        return {line.split()[0] for line in self.ctr("content", "ls", "-q").stdout.splitlines() if line.strip()}

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self._sockets, ignore_errors=True)
