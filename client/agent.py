"""A resident verifier on a Unix socket, so a `tufoci verify` process need not pay Python's start-up
and imports, nor a refresh per call.

Protocol (one request per connection): the client sends one JSON line
``{"references": [...], "checkRegistry": bool}``, the agent answers one JSON
line ``{"results": [...]}`` with the same result objects as ``verify -o json``.
The agent runs the same ``Verifier`` as the command; with a freshness window it
reuses a refresh for that long (docs/performance.md). The socket lives in
``$TUFOCI_HOME`` (mode 0700) and is itself created with mode 0600: only its
owner can ask.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import threading

from tufoci.client.agent_client import default_socket_path  # noqa: F401 - re-exported for the CLI
from tufoci.client.verify import Verifier
from tufoci.errors import UsageError
from tufoci.state import State

MAX_REQUEST_BYTES = 1024 * 1024


def serve(
    state: State,
    path: str,
    *,
    freshness: float = 10.0,
    stop: threading.Event | None = None,
    **registry_options: object,
) -> None:
    """Answer verify requests on ``path`` until SIGTERM/SIGINT (or ``stop``) — one at a time."""
    verifier = Verifier(state, freshness=freshness, **registry_options)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(MAX_REQUEST_BYTES)
            try:
                request = json.loads(line)
                references = [str(r) for r in request["references"]]
                outcomes = verifier.verify(references, check_registry=bool(request.get("checkRegistry", True)))
                answer = {"results": [o.to_dict() for o in outcomes]}
            except (ValueError, KeyError, TypeError) as e:
                answer = {"error": f"bad request: {e}"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if len(path.encode()) > 100:
        raise UsageError(f"socket path too long for a Unix socket: {path} (use --socket)")
    old_umask = os.umask(0o177)
    try:
        server = socketserver.UnixStreamServer(path, Handler)
    finally:
        os.umask(old_umask)
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        server.timeout = 0.2
        while not stop.is_set():
            server.handle_request()
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
