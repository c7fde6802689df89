"""Who is acting, as other maintainers should read it: a name, never ``user@host`` by default.

A machine (one ``TUFOCI_HOME``) names itself once with ``tufoci config set actor
alice@acme``; without that, a proposal is named after the keys that signed it
(their names in this machine's catalogue). Each machine also gets a random id
once, written into its proposals, so ``discard`` can tell its own proposals
from a colleague's without trusting names (two people may both be "alice").
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable

from tufoci.keys import list_keys
from tufoci.state import State

ACTOR_SETTING = "actor"
MACHINE_SETTING = "machine-id"


def actor_name(state: State, keyids: Iterable[str] = ()) -> str:
    """``$TUFOCI_ACTOR``, else the configured actor, else the names of ``keyids`` in the catalogue, else "unknown"."""
    explicit = os.environ.get("TUFOCI_ACTOR") or state.setting(ACTOR_SETTING)
    if explicit:
        return explicit
    names = {k.keyid: k.name for k in list_keys(state) if k.name}
    signed = sorted({names[k] for k in keyids if k in names})
    return ", ".join(signed) or "unknown"


def machine_id(state: State) -> str:
    """This machine's random proposer id, created on first use (not secret: it only tells machines apart)."""
    current = state.setting(MACHINE_SETTING)
    if current is None:
        current = secrets.token_hex(16)
        state.set_setting(MACHINE_SETTING, current)
    return current
