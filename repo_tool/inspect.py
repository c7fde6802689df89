"""Read-only views for maintainers: status, signed targets, the audit log.

Every view of published metadata goes through a verified refresh, so what a
maintainer reads is what consumers will trust.
"""

from __future__ import annotations

import os
from typing import Any

from tufoci.client.refresh import cache_dir
from tufoci.errors import TufociError
from tufoci.json_keys import camel_keys
from tufoci.layout_spec import target_media_type
from tufoci.reference import parse_repository
from tufoci.repo_tool.genesis import GenesisTree
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.repo_tool.next_steps import expiry_step, proposal_step, staged_step
from tufoci.repo_tool.renew import role_expiries, warning_windows
from tufoci.repo_tool.sessions import review_session
from tufoci.repo_tool.staging import staged_changes, to_row
from tufoci.state import State, now_utc
from tufoci.tuf_compat import cached_file, cached_file_name


def _expires_in(expires) -> str:
    minutes = round((expires - now_utc()).total_seconds() / 60)
    if minutes < 0:
        return "EXPIRED"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"in {days}d{hours:02d}h" if days else f"in {hours}h{minutes:02d}m"


def scope_status(session: MaintainerSession, *, warn: list[str] | tuple[str, ...] = ()) -> dict:
    """Staged changes, open proposals, and per role: version, expiry (with warnings), threshold."""
    state, pin = session.state, session.pin
    report: dict = {
        "scope": pin.scope,
        "metadata": pin.metadata,
        "staged": [
            {"action": r.action, "role": r.role, "target": r.name, "digest": r.digest, "length": r.length}
            for r in map(to_row, staged_changes(state, pin.scope))
        ],
        "roles": [],
    }
    try:
        # one refresh serves both the roles and the proposals
        with review_session(session) as (plan, reviews):
            current, tree = plan.current, plan.tree
            genesis = isinstance(tree, GenesisTree)  # issue 15.1: only the pinned root v1 exists yet
            report["awaitingFirstSignatures"] = genesis
            rows = role_expiries(current, None if genesis else tree, genesis=genesis)
        names = session.key_names()
        report["proposals"] = [r.to_dict(names) for r in reviews]
        report["ignoredProposals"] = [i.to_dict() for i in plan.ignored]
    except TufociError as e:
        report["error"] = str(e)
        return report
    # issue 15.6: what happens next, per role, and who must do it
    steps = []
    for review, proposal in zip(reviews, report["proposals"], strict=True):
        proposal["next"] = proposal_step(pin.scope, proposal, review.state)
        steps.append({"role": proposal["role"], **proposal["next"]})
    queued = queued_behind(state, pin.scope)
    for role in dict.fromkeys(c["role"] for c in report["staged"]):
        opened = plan.from_registry.get(role)
        steps.append({"role": role, **staged_step(pin.scope, role, opened.version if opened else None,
                                                  queued.get(role))})
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


def signed_targets(session: MaintainerSession) -> list[dict]:
    """Every signed target of every role, verified, in the order clients search roles.

    An entry outside its role's delegated paths signs nothing (clients never
    consult the role for it), so it is not listed.
    """
    rows = []
    with session.live() as live:
        tree = live.tree
        for role in tree.walk():
            for name, info in sorted(tree.metadata(role).signed.targets.items()):
                if not tree.trusted_for(role, name):
                    continue
                rows.append({"target": name, "digest": "sha256:" + info.hashes.get("sha256", ""),
                             "length": info.length, "mediaType": target_media_type(info.custom), "role": role,
                             "scope": session.scope})
    return rows


def queued_behind(state: State, scope: str) -> dict[str, int]:
    """role -> the proposal version this machine's staged changes to it were last queued behind
    (``publish`` records it), unless this machine proposed or published the role since."""
    queued: dict[str, int] = {}
    for record in state.audit_log(scope, actions=("queue", "propose", "publish")):
        if record.action == "queue" and record.role and record.version is not None:
            queued[record.role] = record.version
        else:
            for role in (record.role or "").split(","):
                queued.pop(role, None)
    return queued


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
        if not os.path.exists(cached_file(directory, "root")):
            directory_root = pin.root_file
        else:
            directory_root = cached_file(directory, "root")
        with open(directory_root, "rb") as f:
            root = Metadata[Root].from_bytes(f.read()).signed
        for role, entry in root.roles.items():
            for keyid in entry.keyids:
                usage.setdefault(keyid, []).append({"scope": pin.scope, "role": role})
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if not name.endswith(".json") or name in {cached_file_name(r) for r in ("root", "timestamp", "snapshot")}:
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
