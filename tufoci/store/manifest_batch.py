"""Many manifests of one repository over bare, pipelined HTTP/1.1 connections.

Why this exists: ``target add`` of 1,000 tags reads 1,000 manifests. urllib3 on
http.client spends ~0.5 ms of CPU per response (request building, header parsing
through the ``email`` package, pool bookkeeping); on a 2-core machine that CPU
is taken from the registry serving the same requests, and the whole resolve ran
at 1.6× what curl needs. One GET over a kept-alive socket, parsed here, costs
~0.06 ms (measured: 0.55 s vs 0.07 s of client CPU for 1,000 manifests).
Requests are pipelined (RFC 9112 §9.3.2: a server answers them in order), so
a far registry costs one round trip per ``DEPTH`` tags rather than per tag, and
the local one spends less CPU per request. 3 connections × 64 beat 4 × 32 and 8
unpipelined ones on 2 cores (1,000 manifests, ten runs each: 0.85 vs 0.92 s wall,
1.51 vs 1.64 registry CPU-seconds; curl with 8 connections 1.01 s, 1.76).

Pipelining ties an answer to its tag by position alone, so this module is
strict where a lenient parser could shift every later answer onto the wrong tag:
nothing but validated tags, repository path and header values goes into a
request; an answer is used only when it is a ``200`` with one exact
``Content-Length`` and no ``Content-Encoding``, headers that parse exactly; any
other answer ends that connection rather than guess where its body ends, and a
connection with bytes left over after its last answer is dropped. Whatever is
not used is left to the caller, whose regular client re-fetches, retries and
reports it; a stall or a ``401`` ends the whole batch. So this module never
decides an error, and what it returns is raw bytes the caller hashes
(``Manifest``), like every other read: ``Docker-Content-Digest`` is ignored.
"""

from __future__ import annotations

import _socket
import re
import time

from tufoci.frozen import Frozen
from tufoci.reference import DIGEST_RE, PATH_RE, TAG_RE

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the warm verify path
if TYPE_CHECKING:
    import ssl  # only the TLS context's type: plain HTTP (the verify fast path on loopback) never loads ssl
    from collections.abc import Callable
    from typing import TypeVar

    from tufoci.store.base import Manifest

    _S = TypeVar("_S", bound=_socket.socket)  # _socket.socket, or socket.socket for TLS

CONNECTIONS = 3
DEPTH = 64  # requests in flight per connection
MAX_HEADER_BYTES = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 §5.6.2)
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF or other control character
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([0-9]{3})(?: .*)?")
_LENGTH = re.compile(r"[0-9]{1,12}")
_SINGLE = {"content-length", "transfer-encoding", "content-encoding", "content-type", "connection"}


class _Unusable(Exception):
    """This connection cannot carry another answer (closed, malformed, unframed)."""


class _Stalled(_Unusable):
    """The server went quiet: the batch stops, the regular client takes the rest (it has the deadline)."""


class Endpoint(Frozen):
    """The registry host and the regular client's TLS settings and limits, so both transports connect alike.

    ``Frozen``, not a dataclass: the warm verify builds one (tufoci/frozen.py)."""

    __slots__ = ("host", "port", "host_header", "tls", "connect_timeout", "read_timeout", "deadline", "until")
    host: str
    port: int
    host_header: str
    tls: ssl.SSLContext | None
    connect_timeout: float
    read_timeout: float
    deadline: float
    until: float | None  # time.monotonic() at which the command's budget ends: no wait goes past it

    def __init__(self, host: str, port: int, host_header: str, tls: ssl.SSLContext | None, connect_timeout: float,
                 read_timeout: float, deadline: float, until: float | None = None) -> None:
        self._init(host, port, host_header, tls, connect_timeout, read_timeout, deadline, until)

    def give_up_at(self, seconds: float) -> float:
        """``seconds`` from now, or when the budget ends if that is sooner."""
        at = time.monotonic() + seconds
        return at if self.until is None else min(at, self.until)


class Answer(Frozen):
    """One response as read: ``body`` is None when not read (any status but 200, or over the cap);
    ``reusable`` says whether the next answer on this connection can be read."""

    __slots__ = ("status", "headers", "body", "reusable")
    status: int
    headers: dict[str, str]
    body: bytes | None
    reusable: bool

    def __init__(self, status: int, headers: dict[str, str], body: bytes | None, reusable: bool) -> None:
        self._init(status, headers, body, reusable)


def _connect(host: bytes | str, port: int, timeout: float, new_socket: Callable[..., _S]) -> _S:
    """A TCP connection to the first address of ``host`` that answers, as ``socket.create_connection`` — but
    within ``timeout`` in all: create_connection gives every address the whole timeout, so a name resolving
    to many addresses that never answer would hold the caller (the warm verify, within its ``--timeout``
    budget) that many times over (docs/security.md §11.4). Raises OSError (TimeoutError when time ran out).

    On the C module ``_socket`` for plain HTTP: ``import socket`` builds its enums and loads ``selectors``
    (~2 ms of a warm verify, docs/performance.md) for nothing a plain-HTTP fetch uses."""
    give_up_at = time.monotonic() + timeout
    error: OSError | None = None
    for family, kind, protocol, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        left = give_up_at - time.monotonic()
        if left <= 0:
            break
        sock = new_socket(family, kind, protocol)
        try:
            sock.settimeout(left)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = error or e
    raise error or TimeoutError(f"no connection to {host!r} within {timeout:g} s")


def _connect_tls(host: bytes | str, port: int, timeout: float, tls: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
    """A TLS connection with the regular client's context (ssl wraps a ``socket.socket``; it imports socket)."""
    import socket

    sock = _connect(host, port, timeout, socket.socket)
    try:
        return tls.wrap_socket(sock, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise


class _Connection:
    """One socket and its read buffer; every read honours the read timeout and the answer's deadline."""

    def __init__(self, endpoint: Endpoint):
        self._endpoint = endpoint
        left = endpoint.give_up_at(endpoint.connect_timeout) - time.monotonic()
        if left <= 0:
            raise _Stalled("the budget ran out")
        # an ASCII host as bytes: getaddrinfo then skips the "idna" codec, whose import (unicodedata,
        # stringprep: ~2 ms) would be most of a warm verify's connection cost; the bytes are the same
        host = endpoint.host.encode("ascii") if endpoint.host.isascii() else endpoint.host
        if endpoint.tls is None:
            sock = _connect(host, endpoint.port, left, _socket.socket)
        else:
            sock = _connect_tls(host, endpoint.port, left, endpoint.tls, endpoint.host)
        self._sock = sock
        self._buffer = bytearray()
        self._give_up_at = 0.0

    @property
    def drained(self) -> bool:
        return not self._buffer

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def send(self, requests: bytes) -> None:
        left = self._endpoint.give_up_at(self._endpoint.read_timeout) - time.monotonic()
        if left <= 0:
            raise _Stalled("the budget ran out")
        self._sock.settimeout(left)
        try:
            self._sock.sendall(requests)
        except TimeoutError:
            raise _Stalled("the server stopped reading requests") from None

    def receive(self, max_bytes: int) -> Answer:
        """The next answer. A body is read only for a 200 within the cap: any other status
        (a 204 or 304 has no body whatever its Content-Length says) ends the connection."""
        self._give_up_at = self._endpoint.give_up_at(self._endpoint.deadline)
        version, status, headers = self._read_head()
        while 100 <= status < 200:  # interim answers (RFC 9110 §15.2) precede the real one
            version, status, headers = self._read_head()
        if status != 200:
            return Answer(status, headers, None, False)
        if "transfer-encoding" in headers or not _LENGTH.fullmatch(headers.get("content-length", "")):
            raise _Unusable("a body without one exact Content-Length")
        length = int(headers["content-length"])
        if length > max_bytes:
            return Answer(status, headers, None, False)  # not read: the caller's client reports it
        body = self._read_exact(length)
        options = {token.strip().lower() for token in headers.get("connection", "").split(",")}
        reusable = "close" not in options and (version == "1" or "keep-alive" in options)
        return Answer(status, headers, body, reusable)

    def _read_head(self) -> tuple[str, int, dict[str, str]]:
        searched = 0
        while (end := self._buffer.find(b"\r\n\r\n", searched)) < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise _Unusable("response headers too long")
            searched = max(0, len(self._buffer) - 3)
            self._fill()
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise _Unusable(f"not an HTTP/1.x status line: {status_line[:60]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            # no folded lines, no space before the colon, no stray CR or LF (a bare LF could hide a second head)
            if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise _Unusable("a malformed header line")
            name = name.lower()
            if name in _SINGLE and name in headers:
                raise _Unusable(f"more than one {name} header")
            headers[name] = value.strip(" \t")
        return match[1], int(match[2]), headers

    def _read_exact(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._fill()
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    def _fill(self) -> None:
        remaining = self._give_up_at - time.monotonic()
        if remaining <= 0:
            raise _Stalled("the answer did not finish within the deadline")
        self._sock.settimeout(min(self._endpoint.read_timeout, remaining))
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise _Stalled("the server went quiet") from None
        if not chunk:
            raise _Unusable("the server closed the connection")
        self._buffer += chunk


def fetch_in_order(endpoint: Endpoint, requests: list[tuple[str, str, int]], headers: dict[str, str]) -> list[Answer]:
    """``GET /v2/REPOSITORY/manifests/REF`` for each (repository, reference, size cap), pipelined on one new
    connection in one write, of any repositories of the endpoint: the answers read, in order, up to the first
    one after which the connection cannot go on (a non-200, ``Connection: close``): the rest are not read.

    The warm verify asks for the timestamp manifest and its tags this way: one round trip, not one each.

    Raises:
        ValueError: a repository, reference or header that would not go into a request as is.
        OSError: the connection failed.
        Exception: an answer was malformed, unframed or late (this module's own, never a decision).
    """
    fields = {"Host": endpoint.host_header, **headers}
    if not all(_TOKEN.fullmatch(k) and _FIELD_VALUE.fullmatch(v) for k, v in fields.items()) or not all(
        PATH_RE.fullmatch(repository) and (TAG_RE.fullmatch(reference) or DIGEST_RE.fullmatch(reference))
        for repository, reference, _ in requests
    ):
        raise ValueError("not a request this module sends")
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    connection = _Connection(endpoint)
    try:
        connection.send(b"".join(f"GET /v2/{repository}/manifests/{reference} HTTP/1.1\r\n{head}\r\n".encode()
                                 for repository, reference, _ in requests))
        answers = []
        for _, _, max_bytes in requests:
            answers.append(connection.receive(max_bytes))
            if not answers[-1].reusable:
                break
        return answers
    finally:
        connection.close()


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
    to. Requests sent but unanswered when a connection ended go to another
    connection. A reference given as a digest is returned only if the bytes hash to it.
    """
    import collections
    import math
    import threading

    from tufoci.store.base import Manifest

    wanted = [r for r in dict.fromkeys(references) if TAG_RE.fullmatch(r) or DIGEST_RE.fullmatch(r)]
    fields = {"Host": endpoint.host_header, **headers}
    if not PATH_RE.fullmatch(repository) or not all(
        _TOKEN.fullmatch(k) and _FIELD_VALUE.fullmatch(v) for k, v in fields.items()
    ):
        return {}, list(references)  # nothing odd goes into a pipeline: it could add requests of its own
    request_head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    fetched: dict[str, Manifest] = {}
    pending = collections.deque(wanted)
    lock, stop = threading.Lock(), threading.Event()

    def take() -> list[str]:
        with lock:  # spread the work over every connection, up to ``depth`` each
            count = min(depth, math.ceil(len(pending) / connections))
            return [] if stop.is_set() else [pending.popleft() for _ in range(count)]

    def give_back(unanswered: list[str]) -> None:
        with lock:
            pending.extendleft(reversed(unanswered))

    def run(connection: _Connection | None, batch: list[str]) -> tuple[_Connection | None, int, int]:
        """Send ``batch`` and read its answers: (the connection if it can go on, answers read,
        references given up: the one being read when the connection failed is the caller's now,
        never sent down a pipeline again)."""
        answered, reusable = 0, False
        try:
            if connection is None:
                connection = _Connection(endpoint)
            connection.send(b"".join(
                f"GET /v2/{repository}/manifests/{r} HTTP/1.1\r\n{request_head}\r\n".encode() for r in batch
            ))
            while answered < len(batch):
                answer = connection.receive(max_bytes)
                reference = batch[answered]
                answered += 1
                if answer.status == 401:
                    stop.set()  # the token ran out: the regular client answers the challenge
                plain = answer.headers.get("content-encoding", "identity").lower() == "identity"
                if answer.body is not None and plain:
                    manifest = Manifest(answer.body, answer.headers.get("content-type"))
                    if not DIGEST_RE.fullmatch(reference) or manifest.digest == reference:
                        with lock:
                            fetched[reference] = manifest
                reusable = answer.reusable
                if not reusable:
                    break
            if reusable and connection.drained:  # bytes beyond the last answer: not ours
                return connection, answered, 0
            given_up = 0
        except _Stalled:
            stop.set()
            given_up = 0
        except (OSError, ValueError, _Unusable):
            given_up = 1
        if connection is not None:
            connection.close()
        return None, answered, given_up

    def worker() -> None:
        connection: _Connection | None = None
        failures_in_a_row = 0  # connections that ended before a single answer
        while failures_in_a_row < 2 and (batch := take()):
            connection, answered, given_up = run(connection, batch)
            give_back(batch[answered + given_up:])
            failures_in_a_row = 0 if answered else failures_in_a_row + 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, connections))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return fetched, [r for r in references if r not in fetched]
