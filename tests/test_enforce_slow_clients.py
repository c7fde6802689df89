"""Slow clients against both enforcement points (``tufoci/enforce/server.py``, shared by the mirror).

Real processes: the admission webhook over real TLS, the verifying mirror over
plain HTTP, each started with ``--max-connections 4``. A client dripping its
headers or its body one byte a second (far inside the 30 s per-read timeout)
is cut off by the overall deadline; five slow clients take the four slots and
the fifth is closed at once, a fresh client is answered as soon as a slot frees,
and the refusal is counted in ``/metrics``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import needs_registry, publish_web
from tests.support.admission_server import WebhookProcess, write_policy
from tests.support.mirror_server import MirrorProcess, write_mirror_config
from tufoci.enforce.server import BODY_DEADLINE, HEAD_DEADLINE

pytestmark = needs_registry
CAP = 4
SLACK = 5.0  # a shared 2-core machine: the cut-off may come a little after the deadline
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Server:
    """A running webhook (TLS) or mirror (plain HTTP) and raw connections to it."""

    def __init__(self, process: WebhookProcess | MirrorProcess, context: ssl.SSLContext | None):
        self.process, self.context = process, context

    def connect(self) -> socket.socket:
        """A connection ready for HTTP bytes (for the webhook: after the TLS handshake)."""
        sock = socket.create_connection(("127.0.0.1", self.process.port), timeout=10)
        if self.context is None:
            return sock
        return self.context.wrap_socket(sock, server_hostname="127.0.0.1")

    def get(self, path: str) -> tuple[int, bytes]:
        """Raises:
            OSError: the connection was closed unanswered (``http.client`` and ``ssl`` errors included)."""
        if self.context is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.process.port, timeout=10)
        else:
            connection = http.client.HTTPSConnection("127.0.0.1", self.process.port, context=self.context, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as e:
            raise OSError(str(e)) from e
        finally:
            connection.close()


@pytest.fixture(params=["webhook", "mirror"])
def server(request, registry, tmp_path: Path, home: Path, monkeypatch) -> Iterator[Server]:
    scope, _, root = publish_web(registry.host, tmp_path, monkeypatch)
    args = ["--max-connections", str(CAP)]
    if request.param == "webhook":
        process = WebhookProcess.start(tmp_path / "webhook", write_policy(tmp_path / "policy.yaml", {scope: root}),
                                       args=args, wait_ready=False)
        server = Server(process, process.context)
    else:
        config = write_mirror_config(tmp_path / "mirror.yaml", registry.host, root)
        server = Server(MirrorProcess.start(tmp_path / "mirror", config, args=args, wait_ready=False), None)
    yield server
    server.process.stop()


def closed(sock: socket.socket, wait: float) -> bool:
    """Whether the server closed the connection within ``wait`` seconds: EOF or a reset, no answer.

    A read, not ``select``: a TLS 1.3 server's session tickets make the socket readable with no data.
    """
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        return True


def drip_until_closed(sock: socket.socket, start: bytes, limit: float) -> float:
    """Send ``start``, then one byte a second until the server closes the connection; the seconds it took.

    Fails the test if the server still holds the connection after ``limit`` seconds.
    """
    started = time.monotonic()
    sock.sendall(start)
    while time.monotonic() - started < limit:
        if closed(sock, 1.0):
            return time.monotonic() - started
        try:
            sock.sendall(b"a")
        except OSError:
            return time.monotonic() - started
    pytest.fail(f"a client dripping a byte a second still held its connection after {limit:.0f}s")


def test_a_client_dripping_its_headers_is_cut_off_at_the_head_deadline(server):
    with server.connect() as sock:
        took = drip_until_closed(sock, HEAD + b"X-Slow: ", HEAD_DEADLINE + 3 * SLACK)
    assert HEAD_DEADLINE - 1 <= took <= HEAD_DEADLINE + SLACK
    assert server.process.log_events("request-timeout")[0]["part"] == "head"
    assert server.get("/healthz")[0] == 200


def test_a_client_dripping_its_body_is_cut_off_at_the_body_deadline(server):
    # the webhook reads the AdmissionReview; the mirror reads (and discards) a push's body before its 405
    path = b"/mutate" if isinstance(server.process, WebhookProcess) else b"/v2/acme/web/blobs/uploads/"
    start = b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with server.connect() as sock:
        took = drip_until_closed(sock, start + b"Content-Length: 100000\r\n\r\n{", BODY_DEADLINE + 3 * SLACK)
    assert BODY_DEADLINE - 1 <= took <= BODY_DEADLINE + SLACK
    assert server.process.log_events("request-timeout")[0]["part"] == "body"


def test_connections_beyond_the_cap_are_closed_at_once_and_counted(server):
    slow = [server.connect() if isinstance(server.process, MirrorProcess) else socket.create_connection(
        ("127.0.0.1", server.process.port)) for _ in range(CAP)]  # the webhook's: held in their TLS handshake
    try:
        for sock in slow:
            sock.sendall(HEAD if isinstance(server.process, MirrorProcess) else b"\x16")
        # accepted in order: the fifth finds every slot taken and is closed unanswered, at once
        started = time.monotonic()
        with pytest.raises(OSError):
            server.get("/healthz")
        assert time.monotonic() - started < 2
        # a slot frees: a fresh client is answered
        slow.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert server.get("/healthz") == (200, b"ok\n")
                break
            except OSError:  # the server has not seen the close yet
                assert time.monotonic() < deadline, "no slot freed after a slow client left"
                time.sleep(0.1)
        # the other slow clients are cut off by the deadline, which frees their slots
        for sock in slow:
            assert closed(sock, HEAD_DEADLINE + SLACK)
    finally:
        for sock in slow:
            sock.close()
    metrics = server.get("/metrics")[1].decode()
    assert f"tufoci_connections_max {CAP}\n" in metrics
    refused = next(line for line in metrics.splitlines() if line.startswith("tufoci_connections_refused_total "))
    assert int(refused.split()[1]) >= 1
