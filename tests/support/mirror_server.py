"""``tufoci mirror serve`` as a real process on loopback, and a plain HTTP client for it.

The mirror fronts ``registry.example.com`` (a name that is never resolved nor
contacted): its config maps that name to a real local registry (or a tamper
proxy in front of one) at ``127.0.0.1:PORT``, and the trust scope
``registry.example.com/acme`` reads its metadata from ``127.0.0.1:PORT/acme/tuf``.
The process listens on ``127.0.0.1:0`` and reports its URL through ``--ready-file``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.admission_server import WebhookProcess

UPSTREAM = "registry.example.com"
SCOPE = f"{UPSTREAM}/acme"


def write_mirror_config(path: Path, endpoint: str, root: Path, *, metadata_host: str | None = None,
                        freshness: str = "60s", timeout: str = "5s", default: bool = True,
                        extra: dict | None = None) -> Path:
    """A MirrorPolicy: ``registry.example.com/acme/**`` signed by ``root``, upstream ``endpoint``."""
    config = {
        "apiVersion": "tufoci.dev/v1", "kind": "MirrorPolicy", "freshness": freshness,
        "trust": [{"scope": SCOPE, "root": str(root), "metadata": f"{metadata_host or endpoint}/acme/tuf"}],
        "rules": [{"images": [f"{SCOPE}/**"], "scope": SCOPE}],
        "mirror": {"upstreams": [{"name": UPSTREAM, "endpoint": endpoint}], "timeout": timeout,
                   **({"default": UPSTREAM} if default else {})},
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(config))
    return path


class MirrorProcess:
    """One ``tufoci mirror serve`` process."""

    def __init__(self, process: subprocess.Popen, workdir: Path, url: str):
        self.process, self.workdir, self.url = process, workdir, url
        self.host = url.split("://", 1)[1]
        self.port = int(url.rsplit(":", 1)[1])

    @classmethod
    def start(cls, workdir: Path, config: Path, *, env: dict[str, str] | None = None, prefix: list[str] = (),
              args: list[str] = (), wait_ready: bool = True) -> MirrorProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        ready = workdir / "ready"
        ready.unlink(missing_ok=True)
        command = [*prefix, sys.executable, "-c", "from tufoci.cli import main; main()", "mirror", "serve",
                   "--config", str(config), "--listen", "127.0.0.1:0", "--cache-dir", str(workdir / "cache"),
                   "--ready-file", str(ready), *args]
        stderr = open(workdir / "stderr.log", "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                   env={**os.environ, **(env or {})}, cwd=str(Path(__file__).resolve().parents[2]))
        stderr.close()
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"mirror did not start: {(workdir / 'stderr.log').read_text()}")
            time.sleep(0.02)
        server = cls(process, workdir, ready.read_text().strip())
        if wait_ready and server.url.startswith("http:"):
            server.wait_ready()
        return server

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def error_code(self, body: bytes) -> str:
        return json.loads(body)["errors"][0]["code"]

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()

    # the same process handling as the webhook's
    wait_ready, log, log_events, stop = (WebhookProcess.wait_ready, WebhookProcess.log, WebhookProcess.log_events,
                                         WebhookProcess.stop)
