"""``tufoci admission serve`` as a real process on loopback, called over TLS the way the apiserver calls it.

The serving certificate comes from a throwaway CA with the SANs a cluster
uses (``tufoci-admission.tufoci-system.svc``) plus ``IP:127.0.0.1``; clients
verify it against that CA. The process listens on ``127.0.0.1:0`` and reports
its URL through ``--ready-file``; its JSON log lines land in ``stderr.log``.

Every admission goes through :class:`tests.support.apiserver.ApiserverClient` (the kit), so each
answer is judged by the apiserver's acceptance rules, its patch applied and the patched object
validated against the Kubernetes schema; the reviews are the kit's fixtures
(:mod:`tests.support.admission_reviews`). ``request`` stays a plain HTTPS client for what the
apiserver never sends (malformed bodies, probes).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support import admission_reviews as ar
from tests.support.apiserver import SERVICE_HOST, AdmissionResult, ApiserverClient
from tests.support.tls import CertificateAuthority, Issued
from tufoci.enforce.policy import parse_duration

SERVICE_NAME = SERVICE_HOST


def write_policy(path: Path, scopes: dict[str, Path], *, mode: str = "enforce", freshness: str = "60s",
                 extra_rules: list[dict] | None = None, exempt: list[str] | None = None) -> Path:
    """A policy pinning each scope to its root file, one ``SCOPE/**`` rule each (mutate)."""
    policy = {
        "apiVersion": "tufoci.dev/v1", "kind": "AdmissionPolicy", "mode": mode, "freshness": freshness,
        "trust": [{"scope": scope, "root": str(root)} for scope, root in scopes.items()],
        "rules": [*(extra_rules or []), *({"images": [f"{scope}/**"], "scope": scope} for scope in scopes)],
        "exempt": [{"images": exempt or ["registry.k8s.io/**"]}],
    }
    path.write_text(yaml.safe_dump(policy))
    return path


def pod_review(images: list[str], *, init: list[str] = (), ephemeral: list[str] = (), operation: str = "CREATE",
               name: str = "web") -> dict[str, Any]:
    """A Pod AdmissionReview v1 built by the kit (:mod:`tests.support.admission_reviews`).

    CREATE and UPDATE carry the Pod; DELETE carries only the old Pod; CONNECT (``kubectl exec``) carries
    the exec options and no Pod, as the apiserver sends them.
    """
    spec = {"init_images": init, "ephemeral_images": ephemeral}
    if operation == "DELETE":
        return ar.pod_delete(images)
    review = ar.admission_review(ar.pod(images, name=name, **spec),
                                 operation="UPDATE" if operation == "CONNECT" else operation)
    if operation == "CONNECT":
        review["request"].update(operation="CONNECT", object=None, oldObject=None, subResource="exec",
                                 options={"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"]})
    return review


def decode_patch(response: dict[str, Any]) -> list[dict] | None:
    """The JSON Patch of an answer already judged by :func:`~tests.support.apiserver.judge_response`."""
    if "patch" not in response:
        return None
    return json.loads(base64.b64decode(response["patch"]))


class WebhookProcess:
    """One ``tufoci admission serve`` process and an HTTPS client for it."""

    def __init__(self, process: subprocess.Popen, workdir: Path, ca: CertificateAuthority, leaf: Issued, url: str):
        self.process, self.workdir, self.ca, self.leaf = process, workdir, ca, leaf
        self.port = int(url.rsplit(":", 1)[1])
        self.context = ssl.create_default_context(cafile=str(ca.cert_file))

    @classmethod
    def start(cls, workdir: Path, policy: Path, *, prefix: list[str] = (), env: dict[str, str] | None = None,
              args: list[str] = (), wait_ready: bool = True) -> WebhookProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority(workdir / "pki")
        leaf = ca.issue("webhook", hosts=[SERVICE_NAME, "127.0.0.1"])
        ready = workdir / "ready"
        ready.unlink(missing_ok=True)  # a restart in the same directory
        command = [*prefix, sys.executable, "-c", "from tufoci.cli import main; main()", "admission", "serve",
                   "--policy", str(policy), "--tls-cert", str(leaf.cert_file), "--tls-key", str(leaf.key_file),
                   "--listen", "127.0.0.1:0", "--cache-dir", str(workdir / "cache"), "--ready-file", str(ready), *args]
        stderr = open(workdir / "stderr.log", "wb")  # noqa: SIM115 - the process owns it
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})},
                                   cwd=str(Path(__file__).resolve().parents[2]))
        stderr.close()
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"webhook did not start: {(workdir / 'stderr.log').read_text()}")
            time.sleep(0.02)
        server = cls(process, workdir, ca, leaf, ready.read_text().strip())
        if wait_ready:
            server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.request("GET", "/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"webhook not ready: {self.log()}")
            time.sleep(0.05)

    def connection(self, timeout: float = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, *, timeout: float = 30,
                connection: http.client.HTTPSConnection | None = None) -> tuple[int, dict[str, str], bytes]:
        own = connection is None
        connection = connection or self.connection(timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            if own:
                connection.close()

    def apiserver(self, timeout: float = 10) -> ApiserverClient:
        """A client calling this server exactly as kube-apiserver does (one kept-alive connection; the
        webhook's ``timeoutSeconds`` is a whole number of seconds, sent as ``?timeout=10s``)."""
        return ApiserverClient(self.port, self.ca.cert_file, timeout_seconds=int(timeout))

    def call(self, endpoint: str, review: dict[str, Any], *, timeout: str | float = "10s",
             client: ApiserverClient | None = None) -> AdmissionResult:
        """POST an AdmissionReview through :class:`ApiserverClient`: every answer passes the apiserver's rules,
        its patch is applied and the patched object validated against the Kubernetes schema.

        Raises:
            WebhookCallError: the answer breaks a rule, or none came within ``timeout``.
        """
        seconds = parse_duration(timeout) if isinstance(timeout, str) else timeout
        own = client is None
        client = client or self.apiserver(seconds)
        try:
            return client.mutate(review) if endpoint == "mutate" else client.validate(review)
        finally:
            if own:
                client.close()

    def review(self, endpoint: str, review: dict[str, Any], *, timeout: str | float = "10s",
               client: ApiserverClient | None = None) -> dict[str, Any]:
        """:meth:`call`, returning the ``response`` part of the (accepted) answer.

        Raises:
            WebhookCallError: as :meth:`call`.
        """
        return self.call(endpoint, review, timeout=timeout, client=client).raw["response"]

    def log(self) -> str:
        return (self.workdir / "stderr.log").read_text()

    def log_events(self, event: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
