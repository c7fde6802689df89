"""A small HTTP forward proxy on 127.0.0.1 that logs every request it carries.

What a corporate proxy does, and no more: ``CONNECT host:port`` opens a tunnel (HTTPS), an
absolute-form request (``GET http://host:port/path``) is forwarded (plain HTTP, one request per
upstream connection, answered with ``Connection: close``). ``routes`` maps the ``host:port`` a
client asks for to where the proxy really connects, so a test can name a registry at an address
where nothing listens: only requests through the proxy reach it. Everything stays on loopback.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ForwardProxy", "ProxiedRequest"]


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str  # host:port for CONNECT, the absolute URL otherwise
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _read_head(reader) -> tuple[str, list[tuple[str, str]]] | None:
    line = reader.readline(65536)
    if not line:
        return None
    headers = []
    while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        """One request per client connection: a tunnel, or one forwarded request answered with Connection: close."""
        head = _read_head(self.rfile)
        if head is None:
            return
        request_line, headers = head
        method, target, _ = request_line.split(" ", 2)
        self.server.owner._record(ProxiedRequest(method, target, tuple(headers)))
        if method == "CONNECT":
            upstream = socket.create_connection(self.server.owner.route(target))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True).start()
            _pipe(self.connection, upstream)
            return
        if not target.startswith("http://"):
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        authority, _, path = target[len("http://"):].partition("/")
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = self.rfile.read(length) if length else b""
        hop = {"connection", "proxy-connection", "keep-alive", "proxy-authorization"}
        forwarded = [(k, v) for k, v in headers if k.lower() not in hop] + [("Connection", "close")]
        with socket.create_connection(self.server.owner.route(authority)) as upstream:
            upstream.sendall(f"{method} /{path} HTTP/1.1\r\n".encode("latin-1")
                             + "".join(f"{k}: {v}\r\n" for k, v in forwarded).encode("latin-1") + b"\r\n" + body)
            reader = upstream.makefile("rb")
            status, answer_headers = _read_head(reader) or ("HTTP/1.1 502 Bad Gateway", [])
            kept = [(k, v) for k, v in answer_headers if k.lower() not in hop] + [("Connection", "close")]
            self.wfile.write(f"{status}\r\n".encode("latin-1")
                             + "".join(f"{k}: {v}\r\n" for k, v in kept).encode("latin-1") + b"\r\n")
            while data := reader.read1(65536):
                self.wfile.write(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ForwardProxy


class ForwardProxy:
    """``with ForwardProxy(routes) as proxy:``; ``proxy.url`` for HTTP(S)_PROXY, ``proxy.requests`` its log."""

    def __init__(self, routes: Mapping[str, str] | None = None) -> None:
        self._routes = dict(routes or {})
        self._lock = threading.Lock()
        self.requests: list[ProxiedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, authority: str) -> tuple[str, int]:
        host, _, port = self._routes.get(authority, authority).rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"this test proxy only connects to loopback, not {host}")
        return host, int(port)

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
