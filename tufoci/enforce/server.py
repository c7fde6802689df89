"""The admission webhook's HTTPS server: AdmissionReview over TLS, health, readiness, metrics.

One job: HTTP. The verdicts come from ``decision`` over the verified ``views``
(answered from memory; the refresher thread does the network), the
AdmissionReview handling from ``admission``. Endpoints:

- ``POST /mutate``, ``POST /validate`` (``?timeout=10s`` as the apiserver sends it
  bounds how long a first load of a scope may take); a body that is not an
  AdmissionReview v1 is answered 400, and the apiserver applies its failurePolicy
- ``GET /healthz`` (the process serves), ``GET /readyz`` (every pinned scope has been
  verified once), ``GET /metrics`` (Prometheus text)

The certificate and key are re-read when either file changes (inode, mtime,
size), checked on a new connection at most once per second, so cert-manager's
rotation needs no restart; a half-written pair keeps the previous one. SIGTERM
stops accepting, lets in-flight requests finish, closes idle keep-alive
connections and exits 0. Logs are JSON lines on stderr.

Slow clients are bounded (shared with the mirror, which subclasses this server):
at most ``max_connections`` connections at once (more are closed at accept and
counted in ``tufoci_connections_refused_total``); the TLS handshake, and the
request line with its headers, must each arrive within ``HEAD_DEADLINE`` (from the
request's first byte), a body within ``BODY_DEADLINE``, and a kept-alive
connection may wait ``IDLE_TIMEOUT`` for its next request. The deadlines are
overall: the socket timeout is set to the time left before every read, so a
client sending a byte just before each timeout gains nothing.
"""

from __future__ import annotations

import functools
import http
import io
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tufoci.enforce.admission import MalformedReviewError, parse_review, review
from tufoci.enforce.decision import Verdict, decide
from tufoci.enforce.metrics import Metrics
from tufoci.enforce.policy import Mode, Policy, parse_duration
from tufoci.enforce.view import Views
from tufoci.errors import TufociError, UsageError

MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request limit is about 3 MiB
DEFAULT_TIMEOUT = 10.0  # the apiserver's default webhook timeout
TIMEOUT_MARGIN = 0.5  # answer this long before the apiserver gives up
IDLE_TIMEOUT = 30.0  # a keep-alive connection idle this long is closed
HEAD_DEADLINE = 10.0  # the TLS handshake; the request line and headers, from the request's first byte
BODY_DEADLINE = 10.0  # a request body (3 MiB at 300 KiB/s), from the end of its headers
DEFAULT_MAX_CONNECTIONS = 256  # connections served at once; more are closed at accept
MAX_LINE = 65536  # request line or header line
MAX_HEADERS = 100
_REASONS = {code.value: code.phrase for code in http.HTTPStatus}
_log_lock = threading.Lock()
_stamp: tuple[int, str] = (0, "")  # (second, its ISO text): the log's time, formatted once a second


def log(event: str, **fields: Any) -> None:
    """One JSON line on stderr."""
    global _stamp
    second = int(time.time())
    if second != _stamp[0]:
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    line = json.dumps({"time": _stamp[1], "event": event, **fields}, default=str) + "\n"
    with _log_lock:
        sys.stderr.write(line)
        sys.stderr.flush()


class CertificateFiles:
    """The serving certificate and key, reloaded when the files change."""

    def __init__(self, cert_file: str, key_file: str):
        self.cert_file, self.key_file = cert_file, key_file
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()
        self._context = self._load()  # a bad pair at start fails the start
        self._checked = time.monotonic()

    def _read_stamp(self) -> tuple:
        stamps: list[tuple[int, int, int] | None] = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def context(self) -> ssl.SSLContext:
        """The current context; re-reads the files if they changed (checked at most once a second)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return self._context
        with self._lock:
            if now - self._checked >= 1.0:
                self._checked = now
                stamp = self._read_stamp()
                if stamp != self._stamp:
                    try:
                        self._context = self._load()
                        self._stamp = stamp
                        log("certificate-reloaded", cert=self.cert_file)
                    except (OSError, ssl.SSLError) as e:  # mid-rotation: try again next time
                        log("certificate-reload-failed", cert=self.cert_file, error=str(e))
        return self._context


class Webhook:
    """Judges AdmissionReviews against the policy, from the verified views."""

    def __init__(self, policy: Policy, views: Views, metrics: Metrics):
        self.policy, self.views, self.metrics = policy, views, metrics

    def admit(self, endpoint: str, body: bytes, timeout: float) -> dict[str, Any]:
        """The AdmissionReview answering ``body`` on ``/mutate`` or ``/validate``.

        Raises:
            MalformedReviewError: the body is not an AdmissionReview v1 request.
        """
        started = time.monotonic()
        deadline = started + max(0.1, timeout - TIMEOUT_MARGIN)
        request = parse_review(body)
        mutate = endpoint == "mutate"

        def judge(image: str) -> Verdict:
            return decide(image, self.policy, lambda scope: self.views.view(scope, max(0.05, deadline - time.monotonic())),
                          now=time.time(), require_digest=not mutate)

        answer, verdicts = review(request, judge, mutate=mutate, warn=self.policy.mode is Mode.WARN)
        elapsed = time.monotonic() - started
        self.metrics.record(endpoint, [("allowed" if v.allowed else "denied", v.reason.value) for v in verdicts],
                            elapsed)
        response = answer["response"]
        log("admission", endpoint=endpoint, uid=request["uid"], operation=request.get("operation"),
            kind=(request.get("kind") or {}).get("kind"), namespace=request.get("namespace"),
            name=request.get("name"), allowed=response["allowed"], warn=bool(response.get("warnings")),
            patched="patch" in response, ms=round(elapsed * 1000, 2),
            images=[{"image": v.image, "reason": v.reason.value, "pinned": v.pinned} for v in verdicts])
        return answer


class _HeaderFields(dict):
    """Header fields by lower-case name; looked up by any case, as http.server's parsed headers are."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, each with the socket timeout set to the time left before ``deadline``.

    A socket timeout restarts with every byte received; this makes a read deadline overall (a
    client dripping one byte just before each timeout is still cut off when it passes). Without a
    deadline a read waits ``IDLE_TIMEOUT``. TLS: one ``recv_into`` is one ``SSL_read``, whose
    timeout CPython also applies to the whole call.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Raises:
            TimeoutError: the deadline passed, or no byte came within the idle timeout."""
        if self.deadline is None:
            self.sock.settimeout(IDLE_TIMEOUT)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("read deadline passed")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)

    def until(self, deadline: float | None) -> None:
        """Bound the following reads by ``deadline`` (monotonic); None: back to the idle timeout, also for
        writes (the socket keeps the last read's timeout otherwise)."""
        self.deadline = deadline
        if deadline is None:
            self.sock.settimeout(IDLE_TIMEOUT)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AdmissionServer
    # parsed by _read_headers into _HeaderFields, not by http.client into an email Message
    headers: Any
    rfile: io.BufferedReader  # over _DeadlineReader, set in setup
    timeout = IDLE_TIMEOUT
    # the headers and the body go out in separate writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (~40 ms per answer on a kept-alive connection)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - JSON logs instead
        pass

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # socketserver's buffered file: reads go through the deadline reader instead
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        if isinstance(self.connection, ssl.SSLSocket):  # the mirror may serve plain HTTP
            # here, in the connection's thread: a slow client holds no one else up (for HEAD_DEADLINE at most)
            self.connection.settimeout(HEAD_DEADLINE)
            self.connection.do_handshake()
            self.connection.settimeout(IDLE_TIMEOUT)

    def handle_one_request(self) -> None:
        """One request: the request line and headers read and parsed here (http.server's email parser
        costs more than the admission itself), the answer written in one TLS record."""
        self.close_connection = True
        self.server.idle_connections.add(self.connection)
        try:
            self.reader.until(None)
            if not self.rfile.peek(1):  # kept alive: IDLE_TIMEOUT for the next request's first byte
                return
        except (TimeoutError, OSError, ssl.SSLError):
            return
        finally:
            self.server.idle_connections.discard(self.connection)
        try:
            self.reader.until(time.monotonic() + HEAD_DEADLINE)
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            parts = self.raw_requestline.split()
            bad_line = len(self.raw_requestline) > MAX_LINE or len(parts) != 3 or not parts[2].startswith(b"HTTP/1.")
            headers = None if bad_line else self._read_headers()
        except (TimeoutError, OSError, ssl.SSLError) as e:
            if isinstance(e, TimeoutError):
                log("request-timeout", part="head", client=self.client_address[0])
            return
        finally:
            self.reader.until(None)
        if bad_line:
            self._send(400, b'{"error":"bad request line"}')
            return
        self.command, self.path, self.request_version = (p.decode("latin-1") for p in parts)
        self.requestline = self.raw_requestline.rstrip(b"\r\n").decode("latin-1")  # send_response logs it
        if headers is None:
            self._send(431, b'{"error":"bad or too many header lines"}')
            return
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0"
                                                           and connection != "keep-alive")
        if self.server.stopping.is_set():
            self.close_connection = True  # answer this one, then let the client reconnect elsewhere
        method = getattr(self, f"do_{self.command}", None)  # the mirror adds HEAD (and refuses writes)
        if method is None:
            self.close_connection = True
            self._send(405, b'{"error":"method not allowed"}')
            return
        method()

    def _read_headers(self) -> _HeaderFields | None:
        """Header fields, names case-insensitive (RFC 9112 §5); None when malformed or too many."""
        headers = _HeaderFields()
        for _ in range(MAX_HEADERS):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return headers
            name, colon, value = line.partition(b":")
            if not colon or len(line) > MAX_LINE or not name or name != name.strip():
                return None
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        return None

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        """Status line, headers and body in one write: one TLS record, no Nagle/delayed-ACK stall."""
        close = "Connection: close\r\n" if self.close_connection else ""
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{close}\r\n")
        self.wfile.write(head.encode("latin-1") + body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.urlsplit(self.path).path
        views = self.server.webhook.views
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif path == "/readyz":
            ready = views.ready() and not self.server.stopping.is_set()
            self._send(200 if ready else 503, b"ok\n" if ready else b"not ready\n", "text/plain")
        elif path == "/metrics":
            text = self.server.webhook.metrics.render(views.ages(), views.refresh_errors())
            text += self.server.connection_metrics()
            self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, b'{"error":"not found"}')

    def do_POST(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        endpoint = url.path.strip("/")
        if endpoint not in ("mutate", "validate"):
            if self._discard_body():
                self._send(404, b'{"error":"not found"}')
            return
        if "transfer-encoding" in self.headers:  # the apiserver sends a length; anything else is not for us
            self.close_connection = True
            self._send(411, b'{"error":"Content-Length required"}')
            return
        try:
            length = int(self.headers.get("content-length", ""))
        except ValueError:
            self.close_connection = True
            self._send(411, b'{"error":"Content-Length required"}')
            return
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send(413, b'{"error":"body too large"}')
            return
        body = self._read_body(length)
        if body is None:
            return
        timeout = _timeout(url.query)
        try:
            answer = self.server.webhook.admit(endpoint, body, timeout)
        except MalformedReviewError as e:
            log("malformed-review", endpoint=endpoint, error=str(e))
            self._send(400, json.dumps({"error": f"malformed AdmissionReview: {e}"}).encode())
            return
        self._send(200, json.dumps(answer, separators=(",", ":")).encode())

    def _discard_body(self) -> bool:
        """Read past a body not wanted, so the connection can serve the next request; False: it did not
        arrive in time (the connection is closed unanswered)."""
        length = self.headers.get("content-length", "0")
        if not (length.isdigit() and int(length) <= MAX_BODY):
            self.close_connection = True  # answered, then closed: the body is not read
            return True
        return self._read_body(int(length)) is not None

    def _read_body(self, length: int) -> bytes | None:
        """``length`` bytes of body within ``BODY_DEADLINE``; None (the connection is closed unanswered)
        when they do not all arrive in time."""
        self.reader.until(time.monotonic() + BODY_DEADLINE)
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            if isinstance(e, TimeoutError):
                log("request-timeout", part="body", path=self.path, client=self.client_address[0])
            body = b""
        finally:
            self.reader.until(None)
        if len(body) < length:
            self.close_connection = True
            return None
        return body


@functools.lru_cache(maxsize=64)
def _timeout(query: str) -> float:
    """The apiserver's ``?timeout=10s`` (capped at its maximum, 30 s); the default when absent or invalid.
    The same few query strings arrive on every request: parsed once each."""
    for value in urllib.parse.parse_qs(query).get("timeout", [])[:1]:
        try:
            return min(parse_duration(value), 30.0)
        except ValueError:
            pass
    return DEFAULT_TIMEOUT


class AdmissionServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; TLS handshakes in that thread, not in the
    accept loop."""

    daemon_threads = False
    block_on_close = True  # server_close() waits for in-flight requests

    def __init__(self, address: tuple[str, int], certificates: CertificateFiles, webhook: Webhook,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.certificates, self.webhook = certificates, webhook
        self.stopping = threading.Event()
        self.idle_connections: set[socket.socket] = set()
        self.max_connections = max_connections
        self._connections_lock = threading.Lock()
        self.connections = self.connections_refused = 0
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(IDLE_TIMEOUT)
        return self.certificates.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """A free slot, or the connection is closed at once (before TLS): a flood of slow clients costs
        ``max_connections`` threads, each for the handshake, head or body deadline at most."""
        with self._connections_lock:
            if self.connections < self.max_connections:
                self.connections += 1
                return True
            self.connections_refused += 1
            return False

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self.connections -= 1

    def connection_metrics(self) -> str:
        """The connection gauges and counters, appended to each server's /metrics."""
        return ("# HELP tufoci_connections Connections being served.\n# TYPE tufoci_connections gauge\n"
                f"tufoci_connections {self.connections}\n"
                "# HELP tufoci_connections_max Connections served at once (--max-connections).\n"
                f"# TYPE tufoci_connections_max gauge\ntufoci_connections_max {self.max_connections}\n"
                "# HELP tufoci_connections_refused_total Connections closed at accept: every slot was taken.\n"
                "# TYPE tufoci_connections_refused_total counter\n"
                f"tufoci_connections_refused_total {self.connections_refused}\n")

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
            return  # a client that went away or failed the handshake
        log("internal-error", error=f"{type(error).__name__}: {error}")

    def stop(self) -> None:
        """Stop accepting; close idle keep-alive connections; in-flight requests finish."""
        self.stopping.set()
        self.shutdown()
        for connection in list(self.idle_connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``.

    Raises:
        ValueError: no port, or a port out of range.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(
    policy: Policy,
    views: Views,
    *,
    cert_file: str,
    key_file: str,
    listen: tuple[str, int],
    ready_file: str | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code (0 after a clean stop).

    Raises:
        UsageError: the certificate or key cannot be loaded.
        TufociError: the address cannot be bound.
    """
    try:
        certificates = CertificateFiles(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot load the TLS certificate {cert_file} and key {key_file}: {e}") from e
    try:
        server = AdmissionServer(listen, certificates, Webhook(policy, views, Metrics()), max_connections)
    except OSError as e:
        raise TufociError(f"cannot listen on {listen[0]}:{listen[1]}: {e.strerror}") from e
    return run_until_signalled(server, views, "https", ready_file, mode=policy.mode.value,
                               freshness=policy.freshness)


def run_until_signalled(server: AdmissionServer, views: Views, scheme: str, ready_file: str | None,
                        **fields: Any) -> int:
    """Start the refresher, serve until SIGTERM or SIGINT, then drain; returns 0.

    Shared by the admission webhook and the verifying mirror: the URL goes to the
    log (JSON on stderr) and to ``ready_file``; in-flight requests finish before it returns.
    """
    views.start()

    def on_signal(signum: int, frame: object) -> None:
        log("stopping", signal=signal.Signals(signum).name)
        threading.Thread(target=server.stop, name="tufoci-stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # the bound address as the socket reports it: str for an IP socket (typeshed's server_address also allows
    # bytes, which an f-string would print as b'...')
    host, port = server.socket.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # the start-up line, JSON like every other: {"event": "listening", "url": "https://HOST:PORT", ...}
    url = f"{scheme}://{shown}:{port}"
    log("listening", url=url, scopes=views.scopes, max_connections=server.max_connections, **fields)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(url + "\n")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        views.stop()
        server.server_close()  # joins the request threads: in-flight answers are sent
    log("stopped")
    return 0
