"""Talking to a running ``tufoci agent`` — standard library only, so the fast path stays fast.

See client/agent.py for the protocol.
"""

from __future__ import annotations

import json
import os
import socket

from tufoci.errors import UsageError

SOCKET_NAME = "agent.sock"


def default_socket_path(home: str) -> str:
    return os.path.join(home, SOCKET_NAME)


def ask(path: str, references: list[str], *, check_registry: bool = True, timeout: float = 120.0) -> list[dict] | None:
    """Results from a running agent, or None when there is none (the caller verifies itself)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return None
    with client:
        client.sendall(json.dumps({"references": references, "checkRegistry": check_registry}).encode() + b"\n")
        with client.makefile("rb") as reply:
            answer = json.loads(reply.readline())
    if "results" not in answer:
        raise UsageError(f"tufoci agent: {answer.get('error', 'no results')}")
    return answer["results"]
