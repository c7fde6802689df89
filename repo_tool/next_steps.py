"""What happens next in a scope, and who must do it (issue 15.6).

``status`` must never leave a maintainer guessing: for every open proposal,
every role with staged changes and every role close to its expiry, one step
``{action, who, command}`` names the action, the people (key names from this
machine's catalogue, or key id prefixes) or service that can take it, and the
command. Pure functions over the dicts ``status`` reports: no I/O.
"""

from __future__ import annotations

from tufoci.layout_spec import ONLINE_ROLES
from tufoci.repo_tool.proposals import ProposalState

ONLINE = "the online service"


def _name(keyid: str, names: dict[str, str]) -> str:
    return names.get(keyid) or keyid[:16]


def proposal_step(scope: str, proposal: dict, state: ProposalState) -> dict:
    """Sign (who is missing), wait (a held proposal: why), or publish (the online service) a complete one."""
    if state is ProposalState.SHORT:
        return {"action": "sign", "who": _missing(proposal),
                "command": f"tufoci sign {scope} {proposal['role']} --expect {proposal['fingerprint']}"}
    if state is ProposalState.HELD:
        return {"action": "wait", "who": [], "command": None, "why": proposal["held"]}
    return {"action": "publish", "who": [ONLINE, "anyone holding the online key"],
            "command": f"tufoci publish {scope}"}


def _missing(proposal: dict) -> list[str]:
    who: list[str] = []
    for t in proposal["thresholds"]:
        if t["have"] < t["need"]:
            who += [m["key"] or m["keyid"][:16] for m in t["missing"] if (m["key"] or m["keyid"][:16]) not in who]
    return who


def staged_step(scope: str, role: str, open_version: int | None, queued_behind: int | None = None) -> dict:
    """Staged changes: this machine publishes them, or they wait behind the open proposal of their role
    (``queued_behind``: the version a publish queued them behind, which may have gone live since)."""
    if open_version is not None:
        return {"action": "queued", "who": ["this machine"], "command": f"tufoci publish --fold {scope}",
                "why": f"queued behind {role} v{open_version}; will be proposed when it goes live (by this machine's "
                       f"next 'tufoci publish {scope}'), or fold it in now"}
    if queued_behind is not None:
        return {"action": "publish", "who": ["this machine"], "command": f"tufoci publish {scope}",
                "why": f"queued behind {role} v{queued_behind}, which is no longer open: run publish now to propose it"}
    return {"action": "publish", "who": ["this machine"], "command": f"tufoci publish {scope}"}


def expiry_step(scope: str, role: str, warning: str | None, keyids: list[str], names: dict[str, str]) -> dict | None:
    """A role that expired or expires soon: the online service re-signs snapshot/timestamp; key holders renew the rest."""
    if warning is None:
        return None
    if role in ONLINE_ROLES:
        return {"action": "refresh", "who": [ONLINE], "command": f"tufoci online-service {scope} --every 6h"}
    return {"action": "renew", "who": [_name(k, names) for k in keyids],
            "command": f"tufoci renew {scope} {role}"}
