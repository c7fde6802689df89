"""Printing verify results (standard library only): shared by the CLI and the agent, for the fast path."""

from __future__ import annotations

import json

from tufoci.safe_text import printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing on the fast path
if TYPE_CHECKING:
    from typing import TextIO


def render_results(results: list[dict], output: str, out: TextIO, err: TextIO) -> int:
    """Print ``verify`` results as text (one ``repo@digest`` line each) or JSON; returns the exit code.

    The exit code is that of the first failing reference, 0 when all verified.
    """
    if output == "json":
        out.write(json.dumps({"results": results}, indent=2, sort_keys=True) + "\n")
    else:
        for r in results:
            if r["verified"]:
                out.write(printable(r["pinned"]) + "\n")
                if r.get("tags"):  # a digest-only reference: which signed tags sign it
                    err.write(printable(f"tufoci: {r['pinned']} is signed as tag(s) {', '.join(r['tags'])}") + "\n")
    failures = [r for r in results if not r["verified"]]
    for r in failures:
        # issue 18: in a batch every line says which reference it is about
        message = r["error"]["message"]
        if len(results) > 1 and r["reference"] not in message:
            message = f"{r['reference']}: {message}"
        err.write(f"tufoci: error: {printable(message)}\n")
    return failures[0]["error"]["code"] if failures else 0
