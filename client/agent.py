"""A resident verifier on a Unix socket, so a `tufoci verify` process need not pay Python's start-up
and imports, nor a refresh per call.

Protocol (one request per connection), two forms:

* JSON, for programs: one line ``{"references": [...], "checkRegistry": bool}``;
  the answer is one JSON line ``{"results": [...]}`` with the same result
  objects as ``verify -o json``.
* ``render``, for the ``tufoci verify`` fast path, which must not pay for
  importing ``json``: one line ``render<TAB>text|json<TAB>1|0<TAB>REF…``; the
  answer is ``CODE LEN_OUT LEN_ERR\n`` followed by exactly what ``verify``
  would print on stdout and stderr (client/agent_client.py).

The agent runs the same ``Verifier`` as the command; with a freshness window it
reuses a refresh for that long, and without one it re-reads only the timestamp
manifest while that is unchanged (docs/performance.md). Each request is answered
on its own thread within its own budget (``request_timeout``), so a caller whose
registry stalls never delays the callers of other scopes; refreshes of one
scope that overlap are safe (client/refresh.py). The socket lives in
``$TUFOCI_HOME`` (mode 0700) and is itself created with mode 0600: only its
owner can ask. Both ends also check who is on the other side (SO_PEERCRED):
the agent answers only its own uid, and ``verify`` refuses an agent running as
another uid, or a socket (or its directory) that another user owns or can write.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import socketserver
import threading

from tufoci.budget import budget
from tufoci.client.agent_client import (  # noqa: F401 - default_socket_path is re-exported for the CLI
    MAX_REQUEST_BYTES,
    default_socket_path,
    format_rendered,
    peer_uid,
)
from tufoci.client.verify import Verifier
from tufoci.errors import StateError, UsageError
from tufoci.ownership import path_problem
from tufoci.registry_options import RegistryOptions
from tufoci.state import State
from tufoci.verify_output import render_results

logger = logging.getLogger(__name__)


REQUEST_TIMEOUT = 30.0  # seconds a request may take (tufoci agent --timeout), like tufoci verify's default


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a request stuck on a registry never delays the agent's exit
    block_on_close = False


def serve(
    state: State,
    path: str,
    *,
    freshness: float = 10.0,
    stop: threading.Event | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
    registry: RegistryOptions = RegistryOptions(),
) -> None:
    """Answer verify requests on ``path`` until SIGTERM/SIGINT (or ``stop``), each on its own thread
    and within ``request_timeout`` seconds."""
    verifier = Verifier(state, freshness=freshness, registry=registry)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.connection.settimeout(request_timeout)  # a caller that never sends its line holds one thread only
            uid = peer_uid(self.request)
            if uid is not None and uid != os.geteuid():
                # the socket's mode already keeps other users out; this holds even if someone loosens it
                logger.warning("refused a request from uid %d (this agent answers uid %d only)", uid, os.geteuid())
                return
            with budget(request_timeout):
                self.answer()

        def answer(self) -> None:
            line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            if len(line) > MAX_REQUEST_BYTES:
                return  # a cut line would drop references: no answer, and the client verifies them itself
            if line.startswith(b"render\t"):
                self.wfile.write(self.render(line.decode(errors="replace").rstrip("\r\n").split("\t")[1:]))
                return
            try:
                request = json.loads(line)
                references = [str(r) for r in request["references"]]
                outcomes = verifier.verify(references, check_registry=bool(request.get("checkRegistry", True)))
                answer: dict[str, object] = {"results": [o.to_dict() for o in outcomes]}
            except (ValueError, KeyError, TypeError) as e:
                answer = {"error": f"bad request: {e}"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")

        @staticmethod
        def render(fields: list[str]) -> bytes:
            """``verify``'s own output for a ``render`` request; an unreadable one gets no answer."""
            if len(fields) < 3 or fields[0] not in ("text", "json") or fields[1] not in ("0", "1"):
                return b""  # the client then verifies by itself
            outcomes = verifier.verify(fields[2:], check_registry=fields[1] == "1")
            out, err = io.StringIO(), io.StringIO()
            code = render_results([o.to_dict() for o in outcomes], fields[0], out, err)
            return format_rendered(code, out.getvalue(), err.getvalue())

    problem = path_problem(os.path.dirname(os.path.abspath(path)), "agent socket directory")
    if problem:
        raise StateError(problem)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if len(path.encode()) > 100:
        raise UsageError(f"socket path too long for a Unix socket: {path} (use --socket)")
    old_umask = os.umask(0o177)
    try:
        server = _Server(path, Handler)
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
