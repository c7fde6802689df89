"""Many manifests of one repository over bare, pipelined HTTP/1.1 connections.

Why this exists: ``target add`` of 1,000 tags reads 1,000 manifests. urllib3 on
http.client spends ~0.5 ms of CPU per response (request building, header parsing
through the ``email`` package, pool bookkeeping); on a 2-core machine that CPU
is taken from the registry serving the same requests, and the whole resolve ran
at 1.6× what curl needs. One GET over a kept-alive socket, parsed here, costs
~0.06 ms (measured: 0.55 s vs 0.07 s of client CPU for 1,000 manifests).
Requests are pipelined (RFC 9112 §9.3.2: a server answers them in order), so
a far registry costs one round trip per ``DEPTH`` tags rather than per tag, and
the local one spends less CPU per request (1.4 vs 1.6 CPU-seconds per 1,000).

Only the plain case is handled: ``200`` with a ``Content-Length`` and no
``Content-Encoding``, within the size cap and the deadline. Anything else (an
auth challenge, a redirect, an error status, a chunked or compressed body, a
server that hangs up) leaves that tag to the
caller, whose regular client knows how to answer, retry and report it. So this
module never decides an error, and what it returns is raw bytes the caller
hashes (``Manifest``), like every other read: the ``Docker-Content-Digest``
header is ignored here too.
"""

from __future__ import annotations

import collections
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from tufoci.store.base import Manifest

CONNECTIONS = 4
DEPTH = 32  # requests in flight per connection
MAX_HEADER_BYTES = 64 * 1024
# tags (distribution spec) and digests: nothing that could break the request line
_SAFE_REFERENCE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[0-9a-f]{64}")


class _Unusable(Exception):
    """This connection cannot carry another request (closed, unframed body, timeout)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: one registry host, plain or TLS, with the client's limits."""

    host: str
    port: int
    host_header: str
    tls: ssl.SSLContext | None
    connect_timeout: float
    read_timeout: float
    deadline: float


class _Connection:
    """One socket and its read buffer; every read honours the read timeout and the response deadline."""

    def __init__(self, endpoint: Endpoint):
        self._endpoint = endpoint
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.tls is not None:
            sock = endpoint.tls.wrap_socket(sock, server_hostname=endpoint.host)
        self._sock = sock
        self._buffer = bytearray()
        self._give_up_at = 0.0

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def send(self, requests: bytes) -> None:
        self._sock.settimeout(self._endpoint.read_timeout)
        self._sock.sendall(requests)

    def receive(self, max_bytes: int) -> tuple[int, dict[str, str], bytes | None, bool]:
        """The next response: (status, headers, body or None when over the cap, whether more may follow)."""
        self._give_up_at = time.monotonic() + self._endpoint.deadline
        status, headers = self._read_head()
        while 100 <= status < 200:  # interim answers (RFC 9110 §15.2) precede the real one
            status, headers = self._read_head()
        if "transfer-encoding" in headers or "content-length" not in headers:
            raise _Unusable("a body without Content-Length")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _Unusable("a malformed Content-Length") from None
        if length < 0 or length > max_bytes:
            return status, headers, None, False  # not read: the caller's client reports it
        body = self._read_exact(length)
        return status, headers, body, headers.get("connection", "").lower() != "close"

    def _read_head(self) -> tuple[int, dict[str, str]]:
        end = self._buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise _Unusable("response headers too long")
            self._fill()
            end = self._buffer.find(b"\r\n\r\n")
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise _Unusable(f"not an HTTP/1.x status line: {status_line[:60]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Unusable("a malformed header line")
            name = name.strip().lower()
            if name == "content-length" and name in headers:
                raise _Unusable("more than one Content-Length")
            headers[name] = value.strip()
        return int(parts[1]), headers

    def _read_exact(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._fill()
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    def _fill(self) -> None:
        remaining = self._give_up_at - time.monotonic()
        if remaining <= 0:
            raise _Unusable("the response did not finish within the deadline")
        self._sock.settimeout(min(self._endpoint.read_timeout, remaining))
        chunk = self._sock.recv(65536)
        if not chunk:
            raise _Unusable("the server closed the connection")
        self._buffer += chunk


def fetch_manifests(
    endpoint: Endpoint,
    repository: str,
    references: list[str],
    headers: dict[str, str],
    *,
    max_bytes: int,
    connections: int = CONNECTIONS,
    depth: int = DEPTH,
) -> tuple[dict[str, Manifest], list[str]]:
    """Fetch ``/v2/REPOSITORY/manifests/REF`` for each reference over ``connections`` connections,
    ``depth`` requests in flight on each.

    Returns the manifests that came back as a plain 200, and the references left
    for the caller (in their given order): every answer that was not a plain 200,
    the one being read when a connection failed, and any this fetch did not get
    to. Requests sent but unanswered when a server closed go to another
    connection. A reference given as a digest is returned only if the bytes hash to it.
    """
    request_head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": endpoint.host_header, **headers}.items())
    fetched: dict[str, Manifest] = {}
    pending = collections.deque(r for r in dict.fromkeys(references) if _SAFE_REFERENCE.fullmatch(r))
    lock = threading.Lock()

    def take() -> list[str]:
        with lock:
            return [pending.popleft() for _ in range(min(depth, len(pending)))]

    def give_back(unanswered: list[str]) -> None:
        with lock:
            pending.extendleft(reversed(unanswered))

    def worker() -> None:
        connection: _Connection | None = None
        failures_in_a_row = 0
        try:
            while failures_in_a_row < 2 and (batch := take()):
                answered, usable = 0, True
                try:
                    if connection is None:
                        connection = _Connection(endpoint)
                    connection.send(b"".join(
                        f"GET /v2/{repository}/manifests/{r} HTTP/1.1\r\n{request_head}\r\n".encode() for r in batch
                    ))
                    while usable and answered < len(batch):
                        status, answer, body, usable = connection.receive(max_bytes)
                        reference = batch[answered]
                        answered += 1
                        # bytes as sent, or the caller's client, which decodes a Content-Encoding
                        plain = answer.get("content-encoding", "identity").lower() == "identity"
                        if status == 200 and body is not None and plain:
                            manifest = Manifest(body, answer.get("content-type"))
                            if not reference.startswith("sha256:") or manifest.digest == reference:
                                with lock:
                                    fetched[reference] = manifest
                    failures_in_a_row = 0
                except (OSError, _Unusable):
                    # the reference being read is the caller's now; the rest go to a fresh connection
                    failures_in_a_row = 0 if answered else failures_in_a_row + 1
                    answered, usable = answered + 1, False
                if not usable:
                    if connection is not None:
                        connection.close()
                    connection = None
                    give_back(batch[answered:])
        finally:
            if connection is not None:
                connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return fetched, [r for r in references if r not in fetched]
