"""The ``tufoci`` executable: a fast path to a running agent, else the full CLI.

``tufoci verify REF…`` (optionally ``-o json`` and ``--skip-registry-check``)
asks the resident verifier (``tufoci agent``) when one listens on
``$TUFOCI_HOME/agent.sock``; this module then imports nothing but the standard
library (not even ``json``: the agent renders the output), so the command costs
Python's start-up and one socket round trip.
An agent another user could have put there (its socket, the socket's directory or
its process belongs to another uid, or others can write them) is refused with one
line (client/agent_client.py). Anything else, or no agent, runs ``tufoci.cli`` as usual. Set
``TUFOCI_NO_AGENT=1`` to bypass the agent; ``--timeout`` or ``TUFOCI_TIMEOUT`` bypass it too.
"""

from __future__ import annotations

import os
import sys


def _agent_verify(args: list[str]) -> int | None:
    output, check_registry, references = "text", True, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-o", "--output") and i + 1 < len(args) and args[i + 1] in ("text", "json"):
            output, i = args[i + 1], i + 2
            continue
        if arg == "--skip-registry-check":
            check_registry, i = False, i + 1
            continue
        if arg.startswith("-"):
            return None  # an option only the full CLI knows
        references.append(arg)
        i += 1
    if not references:
        return None
    home = os.environ.get("TUFOCI_HOME") or os.path.join(os.path.expanduser("~"), ".tufoci")
    path = os.path.join(home, "agent.sock")
    if not os.path.exists(path):
        return None
    from tufoci.client.agent_client import ask_rendered, render_request

    request = render_request(references, output=output, check_registry=check_registry)
    # a broken or older agent must never stop verification: None, and this process verifies
    answer = ask_rendered(path, request) if request is not None else None
    if answer is None:
        return None
    code, out, err = answer
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def main() -> None:
    args = sys.argv[1:]
    # a TUFOCI_TIMEOUT the agent could not honour (it has its own per-request budget) is the full CLI's
    if args[:1] == ["verify"] and os.environ.get("TUFOCI_NO_AGENT") != "1" and not os.environ.get("TUFOCI_TIMEOUT"):
        code = _agent_verify(args[1:])
        if code is not None:
            sys.exit(code)
    from tufoci.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
