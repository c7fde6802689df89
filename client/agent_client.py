"""Talking to a running ``tufoci agent``, for the ``tufoci verify`` fast path.

Every millisecond of this path is Python start-up and imports, so it uses the
C socket module and no ``json`` (``socket`` and ``json`` pull in ``enum``, ``re``
and ``selectors``: about 10 ms, a third of the whole command). The agent
renders the output itself (client/agent.py, the ``render`` request).
"""

from __future__ import annotations

import os
import stat
import sys

from tufoci.ownership import ownership_problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on this path
if TYPE_CHECKING:
    import _socket

SOCKET_NAME = "agent.sock"
MAX_REQUEST_BYTES = 1024 * 1024  # one request line; a longer one is verified by the process itself
MAX_REPLY_BYTES = 64 * 1024 * 1024


def default_socket_path(home: str) -> str:
    return os.path.join(home, SOCKET_NAME)


def render_request(references: list[str], *, output: str, check_registry: bool) -> bytes | None:
    """The ``render`` request line, or None for references the line format cannot carry."""
    if any(not r or any(c in r for c in "\t\r\n") for r in references) or output not in ("text", "json"):
        return None
    try:
        line = "\t".join(["render", output, "1" if check_registry else "0", *references]).encode() + b"\n"
    except UnicodeEncodeError:  # undecodable bytes in argv
        return None
    return line if len(line) <= MAX_REQUEST_BYTES else None


def socket_problem(path: str) -> str | None:
    """Why the agent socket at ``path`` must not be asked: its directory or the socket itself belongs to
    another user or is writable by others (one stat each). None when it may be asked, or is not there."""
    try:
        directory, st = os.stat(os.path.dirname(path) or "."), os.lstat(path)
    except OSError:
        return None  # no agent: the process verifies by itself
    problem = ownership_problem(os.path.dirname(path), directory, "agent socket directory")
    if problem is None and stat.S_ISSOCK(st.st_mode):
        problem = ownership_problem(path, st, "agent socket")
    return problem


def peer_uid(connection: _socket.socket) -> int | None:
    """The uid of the process on the other end of a Unix socket (SO_PEERCRED); None where there is none."""
    import _socket

    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:
        return None  # not Linux: the socket's owner and mode (socket_problem) are the only check
    credentials = connection.getsockopt(_socket.SOL_SOCKET, option, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(credentials[4:8], sys.byteorder)


def ask_rendered(path: str, request: bytes, *, timeout: float = 120.0) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of ``verify`` as a running agent renders it; None when none answers.

    An agent that another user could have put there (tufoci.ownership: the
    socket, its directory, or the process answering) is refused: the answer is
    then exit code 1 and that one line, and nothing is sent to it.
    """
    import _socket

    problem = socket_problem(path)
    if problem:
        return 1, "", f"tufoci: error: {problem}\n"
    client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
        uid = peer_uid(client)
        if uid is not None and uid != os.geteuid():
            return 1, "", (f"tufoci: error: the agent on {path} runs as uid {uid}, not as this user "
                           f"(uid {os.geteuid()}): refusing its answer\n")
        client.sendall(request)
        chunks, size = [], 0
        while chunk := client.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                return None
    except OSError:
        return None
    finally:
        client.close()
    return parse_rendered(b"".join(chunks))


def parse_rendered(reply: bytes) -> tuple[int, str, str] | None:
    """``CODE LEN_OUT LEN_ERR\\n`` then both texts (UTF-8); None for anything else (an older agent)."""
    header, newline, body = reply.partition(b"\n")
    fields = header.split(b" ")
    if not newline or len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    code, out_len, err_len = (int(f) for f in fields)
    if len(body) != out_len + err_len:
        return None
    try:
        return code, body[:out_len].decode(), body[out_len:].decode()
    except UnicodeDecodeError:
        return None


def format_rendered(code: int, out: str, err: str) -> bytes:
    """The reply to a ``render`` request (the agent's side of ``parse_rendered``)."""
    out_bytes, err_bytes = out.encode(), err.encode()
    return f"{code} {len(out_bytes)} {len(err_bytes)}\n".encode() + out_bytes + err_bytes
