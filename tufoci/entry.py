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

Without an agent, a warm ``verify`` is answered from the record the last full
refresh left (client/fast_verify.py: standard library only) when the registry
still serves what that refresh verified; anything else runs the full CLI. Set
``TUFOCI_NO_FAST_PATH=1`` to always run the full CLI.
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
    if args[:1] == ["verify"] and os.environ.get("TUFOCI_NO_FAST_PATH") != "1":
        _fast_verify(args[1:])
    from tufoci.cli import main as cli_main

    cli_main()


def _fast_verify(args: list[str]) -> None:
    """Answer from the last full refresh's record (client/fast_verify.py), else the full CLI; both under
    one ``--timeout`` budget, opened here (the CLI's own, opened later, ends later: this one holds)."""
    from tufoci import budget
    from tufoci.client.fast_verify import fast_verify, parse_options
    from tufoci.errors import TufociError

    options = parse_options(args)
    if options is None:
        return  # options only the full CLI knows
    try:
        seconds = budget.parse_seconds(options["timeout"] or os.environ.get("TUFOCI_TIMEOUT") or budget.VERIFY_TIMEOUT)
    except TufociError:
        return  # the CLI says what is wrong with it
    home = os.environ.get("TUFOCI_HOME") or os.path.join(os.path.expanduser("~"), ".tufoci")
    with budget.budget(seconds):
        answer = fast_verify(args, home)
        if answer is None:
            from tufoci.cli import main as cli_main

            cli_main()
            return
    code, out, err = answer
    sys.stdout.write(out)
    sys.stderr.write(err)
    _exit_now(code)


def _exit_now(code: int) -> None:
    """End the process once its answer is written, without the interpreter's teardown of every module
    (~4 ms of a warm verify: as much as its imports of json and socket). Nothing on the fast path registers
    an ``atexit`` handler or leaves a thread running; an output that cannot be flushed (a closed pipe) takes
    the usual ``sys.exit``, which reports it as Python always does."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
