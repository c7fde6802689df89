"""Helpers for the servers the tests and benchmarks start on loopback: a free port, a clean stop."""

from __future__ import annotations

import socket
import subprocess

STOP_TIMEOUT = 5.0


def free_port() -> int:
    """Ask the kernel for a free loopback port (tiny race until the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill; always wait() so the child is reaped (no <defunct> left behind)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
