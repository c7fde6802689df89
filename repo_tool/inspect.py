"""Read-only views for maintainers: status, signed targets, the audit log.

Every view of published metadata goes through a verified refresh, so what a
maintainer reads is what consumers will trust.
"""

from __future__ import annotations

import os
from typing import Any

from tufoci.client.refresh import cache_dir, trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import TufociError
from tufoci.json_keys import camel_keys
from tufoci.layout_spec import target_media_type
from tufoci.reference import parse_repository
from tufoci.repo_tool.genesis import GenesisTree
from tufoci.repo_tool.next_steps import expiry_step, proposal_step, staged_step
from tufoci.repo_tool.plan import load_current
from tufoci.repo_tool.renew import role_expiries, warning_windows
from tufoci.repo_tool.roles import RoleTree
from tufoci.repo_tool.sessions import key_names, review_session
from tufoci.repo_tool.staging import staged_changes
from tufoci.state import State, now_utc


def _expires_in(expires) -> str:
    minutes = round((expires - now_utc()).total_seconds() / 60)
    if minutes < 0:
        return "EXPIRED"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"in {days}d{hours:02d}h" if days else f"in {hours}h{minutes:02d}m"


def scope_status(
    state: State, scope_text: str, *, warn: list[str] | tuple[str, ...] = (), **registry_options: Any
) -> dict:
    """Staged changes, open proposals, and per role: version, expiry (with warnings), threshold."""
    pin = pin_for_scope(state, scope_text)
    report: dict = {
        "scope": pin.scope,
        "metadata": pin.metadata,
        "staged": [
            {"action": c.action, "role": c.role, "target": c.name, "digest": c.digest, "length": c.length}
            for c in staged_changes(state, pin.scope)
        ],
        "roles": [],
    }
    try:
        # one refresh serves both the roles and the proposals
        with review_session(state, scope_text, registry_options) as (_, _, plan, reviews):
            current, tree = plan.current, plan.tree
            genesis = isinstance(tree, GenesisTree)  # issue 15.1: only the pinned root v1 exists yet
            report["awaitingFirstSignatures"] = genesis
            rows = role_expiries(current, None if genesis else tree, genesis=genesis)
        names = key_names(state)
        report["proposals"] = [r.to_dict(names) for r in reviews]
        report["ignoredProposals"] = [i.to_dict() for i in plan.ignored]
    except TufociError as e:
        report["error"] = str(e)
        return report
    # issue 15.6: what happens next, per role, and who must do it
    steps = []
    for proposal in report["proposals"]:
        proposal["next"] = proposal_step(pin.scope, proposal)
        steps.append({"role": proposal["role"], **proposal["next"]})
    for role in dict.fromkeys(c["role"] for c in report["staged"]):
        opened = plan.from_registry.get(role)
        steps.append({"role": role, **staged_step(pin.scope, role, opened.version if opened else None)})
    windows = warning_windows(current.expiry_periods, warn)
    now = now_utc()
    for expiry in rows:
        entry: dict[str, Any] = {
            "role": expiry.role,
            "version": expiry.version,
            "expires": expiry.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expiresIn": _expires_in(expiry.expires),
            "warning": expiry.warning(windows.get(expiry.role, windows["targets"]), now),
            "threshold": expiry.threshold,
            "keys": len(expiry.keyids),
            "keyNames": [names.get(k) or k[:16] for k in expiry.keyids],
            # issue 15.4: who must sign its next version (renew it, or the online service for snapshot/timestamp)
            "renewBy": [{"keyid": k, "key": names.get(k)} for k in expiry.keyids],
            "advice": expiry.advice(pin.scope, names),
        }
        # issue 15.6: what happens next
        entry["next"] = expiry_step(pin.scope, expiry.role, entry["warning"], list(expiry.keyids), names)
        report["roles"].append(entry)
        if entry["next"]:
            steps.append({"role": expiry.role, **entry["next"]})
    report["next"] = steps
    return report


def signed_targets(state: State, scope_text: str, **registry_options: Any) -> list[dict]:
    """Every signed target of every role, verified, in the order clients search roles.

    An entry outside its role's delegated paths signs nothing (clients never
    consult the role for it), so it is not listed.
    """
    pin = pin_for_scope(state, scope_text)
    rows = []
    with trusted_session(state.home, pin, allow_expired=True, **registry_options) as session:
        tree = RoleTree(session, load_current(session).root.signed)
        for role in tree.walk():
            for name, info in sorted(tree.metadata(role).signed.targets.items()):
                if not tree.trusted_for(role, name):
                    continue
                rows.append({"target": name, "digest": "sha256:" + info.hashes.get("sha256", ""),
                             "length": info.length, "mediaType": target_media_type(info.custom), "role": role,
                             "scope": pin.scope})
    return rows


def audit_log(state: State, scope_text: str | None = None) -> list[dict]:
    records = state.audit_log(str(parse_repository(scope_text)) if scope_text else None)
    return [
        {
            "id": r.id, "at": r.at, "actor": r.actor, "scope": r.scope, "action": r.action,
            # records name their details as the code that wrote them did (root_sha256): shown in camelCase
            "role": r.role, "version": r.version, "details": camel_keys(r.details),
        }
        for r in records
    ]


def key_usage(state: State) -> dict[str, list[dict]]:
    """keyid -> the (scope, role) pairs that use it, from the locally cached trusted metadata.

    No network: it reflects each scope as of this machine's last refresh.
    """
    from tuf.api.metadata import Metadata, Root, Targets

    usage: dict[str, list[dict]] = {}
    for pin in state.pins():
        directory = cache_dir(state.home, pin)
        if not os.path.exists(os.path.join(directory, "root.json")):
            directory_root = pin.root_file
        else:
            directory_root = os.path.join(directory, "root.json")
        with open(directory_root, "rb") as f:
            root = Metadata[Root].from_bytes(f.read()).signed
        for role, entry in root.roles.items():
            for keyid in entry.keyids:
                usage.setdefault(keyid, []).append({"scope": pin.scope, "role": role})
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if not name.endswith(".json") or name in ("root.json", "timestamp.json", "snapshot.json"):
                continue
            try:
                with open(os.path.join(directory, name), "rb") as f:
                    signed = Metadata[Targets].from_bytes(f.read()).signed
            except (OSError, ValueError):
                continue
            delegations = signed.delegations
            for child, entry in (delegations.roles or {}).items() if delegations else ():
                for keyid in entry.keyids:
                    usage.setdefault(keyid, []).append({"scope": pin.scope, "role": child})
    return usage
