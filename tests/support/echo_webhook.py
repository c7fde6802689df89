"""A minimal HTTPS admission webhook on loopback that allows everything: the far end for transport tests.

It records what each call looked like (path with query, ``Host``, ``Content-Type``, the client's
address) so tests can check how :class:`tests.support.apiserver.ApiserverClient` calls, and can stall
for ``delay`` seconds to test the timeout. HTTP/1.1 with keep-alive, as a real webhook server.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["EchoWebhook", "echo_webhook"]


@dataclass
class EchoWebhook:
    """A running echo webhook: its port, the calls seen, the TLS server names (SNI) of the handshakes."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


@contextmanager
def echo_webhook(cert_file: Path | str, key_file: Path | str, *, delay: float = 0.0) -> Iterator[EchoWebhook]:
    """Serve on 127.0.0.1 with the given certificate; answer every POST ``allowed: true``, uid echoed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    state = EchoWebhook(0)
    context.sni_callback = lambda sock, name, ctx: state.server_names.append(name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.seen.append({"path": self.path, "host": self.headers["Host"],
                               "type": self.headers["Content-Type"], "peer": self.client_address})
            time.sleep(delay)
            body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": {"uid": review["request"]["uid"], "allowed": True}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
