"""A hostile registry for tests: an HTTP proxy on 127.0.0.1 that can rewrite any answer.

``TamperProxy`` forwards every request to an upstream (a real ``RegistryServer``)
and lets a test replace what comes back. Consumers use the proxy *as* their
registry: metadata never names a registry, so a scope pinned at
``127.0.0.1:PROXYPORT/acme`` verifies against whatever the proxy serves.

Rules are plain callables, tried in order for each request::

    def rule(exchange: Exchange) -> Reply | None: ...

``exchange.request`` is the request (method, path, headers, body);
``exchange.upstream()`` forwards it (once, cached) and returns the registry's
``Reply``. A rule returns ``None`` to pass (the next rule, or the upstream
answer unchanged) or a ``Reply`` to send instead: any status, headers and a body
that is ``bytes`` or an iterator of ``bytes`` (streamed with chunked encoding, or
raw after a ``Content-Length`` the rule chose, which may lie). ``Reply.stall``
delays the status line; a generator can sleep between chunks with
``proxy.sleep()`` (which returns early when the proxy stops, so no test waits on
a stalled handler at teardown). ``Reply.raw`` replaces the whole answer, status
line and headers included, with bytes the rule streams as it likes (a server
dripping its status line or headers). Every request is recorded in ``proxy.requests``
with its headers, so a test can assert what a client sent (e.g. that no
``Authorization`` header reached a host).
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = [
    "Exchange",
    "RecordedRequest",
    "Reply",
    "TamperProxy",
    "endless",
    "on",
    "require_basic_auth",
]

# hop-by-hop headers (RFC 9110 §7.6.1) and framing the proxy recomputes
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Reply:
    """An answer to send: the upstream's, or a rule's replacement.

    ``body`` is bytes, or an iterable of bytes streamed as it is produced.
    Without a ``Content-Length`` in ``headers`` the proxy frames the body itself
    (``Content-Length`` for bytes, chunked encoding for an iterable); with one,
    it sends that header as given and then the body raw, so a rule can announce
    one length and send another. ``stall`` seconds pass before the status line.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    stall: float = 0.0
    raw: Iterable[bytes] | None = None  # the whole answer, sent as is (then the connection closes)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def with_header(self, name: str, value: str) -> Reply:
        """A copy with ``name`` set to ``value`` (replacing any existing one)."""
        headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return Reply(self.status, [*headers, (name, value)], self.body, self.stall)

    def with_body(self, body: bytes | Iterable[bytes]) -> Reply:
        return Reply(self.status, list(self.headers), body, self.stall)

    @property
    def data(self) -> bytes:
        """The body as bytes (only for bytes bodies, e.g. an upstream answer)."""
        assert isinstance(self.body, bytes), "a streamed body has no fixed bytes"
        return self.body


class Exchange:
    """A request in flight: what the client sent and, on demand, what upstream answers."""

    def __init__(self, proxy: TamperProxy, request: RecordedRequest):
        self.proxy = proxy
        self.request = request
        self._upstream: Reply | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.path

    def upstream(self) -> Reply:
        """Forward the request to the upstream registry (once) and return its answer."""
        if self._upstream is None:
            self._upstream = self.proxy.forward(self.request)
        return self._upstream


Rule = Callable[[Exchange], "Reply | None"]


class TamperProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` (``host:port``)."""

    def __init__(self, upstream: str, *, name: str = "tamper-proxy"):
        self.upstream_host = upstream
        self.name = name
        self.rules: list[Rule] = []
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        """``127.0.0.1:PORT``: use it wherever a registry host goes."""
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=name, daemon=True)

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def start(cls, upstream: str, **options) -> TamperProxy:
        proxy = cls(upstream, **options)
        proxy._thread.start()
        return proxy

    def stop(self) -> None:
        """Stop serving; stalled handlers wake up (``sleep`` returns) and end."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TamperProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def sleep(self, seconds: float) -> bool:
        """Sleep in a handler; returns False early if the proxy is stopping."""
        return not self._stopping.wait(seconds)

    # -- rules and records -----------------------------------------------------------
    def add(self, *rules: Rule) -> TamperProxy:
        """Append rules (tried in order; the first to return a Reply wins)."""
        self.rules.extend(rules)
        return self

    def clear(self) -> None:
        """Drop every rule: the proxy passes everything through again."""
        self.rules.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def paths(self, method: str | None = None) -> list[str]:
        """Paths requested so far (optionally only one method)."""
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # -- forwarding --------------------------------------------------------------------
    def forward(self, request: RecordedRequest) -> Reply:
        """Send ``request`` to the upstream registry; the answer, fully read."""
        connection = http.client.HTTPConnection(self.upstream_host, timeout=30)
        try:
            headers = {k: v for k, v in request.headers if k.lower() not in _HOP_BY_HOP}
            # keep the client's Host: distribution builds absolute URLs (upload Locations) from it
            connection.request(request.method, request.path, body=request.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()
            return Reply(
                response.status,
                [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP],
                body,
            )
        finally:
            connection.close()

    def answer(self, request: RecordedRequest) -> Reply:
        exchange = Exchange(self, request)
        for rule in list(self.rules):
            reply = rule(exchange)
            if reply is not None:
                return reply
        return exchange.upstream()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (it stopped reading an endless body) is expected here, not an error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: TamperProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server_version = "tamper-proxy"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(self.command, self.path, tuple(self.headers.items()), body)
        self.owner._record(request)
        try:
            reply = self.owner.answer(request)
        except Exception as e:  # a broken rule must show up in the test, not hang the client
            reply = Reply(599, [("Content-Type", "text/plain")], f"tamper proxy rule failed: {e!r}".encode())
        try:
            self._send(reply)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        if reply.stall and not self.owner.sleep(reply.stall):
            self.close_connection = True
            return
        if reply.raw is not None:
            self.close_connection = True
            for chunk in reply.raw:
                self.wfile.write(chunk)
                self.wfile.flush()
            return
        self.send_response_only(reply.status)
        announced = reply.header("Content-Length")
        for key, value in reply.headers:
            if key.lower() in _HOP_BY_HOP and key.lower() != "content-length":
                continue
            self.send_header(key, value)
        if isinstance(reply.body, (bytes, bytearray)):
            if announced is None:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
            if announced is not None and int(announced) != len(reply.body):
                self.close_connection = True  # the framing lied: this connection is unusable
            return
        chunked = announced is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()
        for chunk in reply.body:
            if self.owner._stopping.is_set():
                self.close_connection = True
                return
            if not chunk:
                continue
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


# ---------------------------------------------------------------------------- rule helpers


def on(path: str, reply: Callable[[Exchange], Reply | None], *, method: str | None = "GET") -> Rule:
    """A rule applying ``reply`` to requests whose path matches the regex ``path`` (fullmatch,
    query string ignored) and, unless ``method`` is None, whose method is ``method``."""
    pattern = re.compile(path)

    def rule(exchange: Exchange) -> Reply | None:
        if method is not None and exchange.method != method:
            return None
        if not pattern.fullmatch(exchange.path.split("?", 1)[0]):
            return None
        return reply(exchange)

    return rule


def require_basic_auth(user: str, password: str, *, realm: str = "tamper-proxy") -> Rule:
    """A rule that answers 401 (Basic challenge) unless the request carries these credentials."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def rule(exchange: Exchange) -> Reply | None:
        if exchange.request.header("Authorization") == expected:
            return None
        return Reply(
            401,
            [("WWW-Authenticate", f'Basic realm="{realm}"'), ("Content-Type", "application/json")],
            b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        )

    return rule


def endless(chunk: bytes = b"x" * 16384, *, delay: float = 0.0, proxy: TamperProxy | None = None) -> Iterator[bytes]:
    """A body that never ends (optionally one chunk every ``delay`` seconds)."""
    while True:
        if delay:
            if proxy is not None:
                if not proxy.sleep(delay):
                    return
            else:
                time.sleep(delay)
        yield chunk
