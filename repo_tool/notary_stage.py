"""Stage a verified Notary import into tufoci: delegations, tags per role, and what changed since the last import.

The importing maintainer stages each delegation (the delegates' keys, thresholds, paths) in the role that
delegates it and each role's tags; ``publish`` then signs what this machine's keys may sign (the top-level
``targets``) and pushes every delegated role's next version as a proposal its delegates review (``tufoci status``)
and sign (``tufoci sign --expect``): a delegated role is never signed with a key its delegates do not hold.

What each import staged is kept in ``$TUFOCI_HOME/notary-imported.json`` (per GUN: target → role and digest,
and the delegations staged), so a re-run imports only what changed in Notary since (tags added, moved or
removed) and a run that stopped half way is finished by the next: staging is idempotent and the record is
written only once ``publish`` has returned.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from securesystemslib.signer import SecretsHandler

from tufoci.atomic_file import atomic_write
from tufoci.errors import StateError
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.notary_plan import CollectionPlan, DelegationPlan, KeyPlan
from tufoci.state import State

IMPORTED_FILE = "notary-imported.json"


@dataclass
class ImportDiff:
    """What changed in a collection since the last import (every tag is new on the first)."""

    added: list[str] = field(default_factory=list)  # target names
    changed: list[str] = field(default_factory=list)  # another digest, or now listed by another role
    removed: list[str] = field(default_factory=list)  # imported before, gone from Notary (or no answer any more)
    unchanged: int = 0
    delegations: list[str] = field(default_factory=list)  # tufoci roles to delegate (not delegated by an import yet)
    first: bool = True  # no earlier import of this GUN is recorded on this machine


def _imported_path(home: str) -> str:
    return os.path.join(home, IMPORTED_FILE)


def load_record(path: str, afresh: str) -> dict:
    """A JSON object this machine keeps about Notary imports, ``{}`` before the first.

    Raises:
        StateError: the file is unreadable or not an object (never start afresh silently: what it protects
            — rollback protection, removals — would be lost); the message says to move it away to ``afresh``.
    """
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"{path} is unreadable ({exc}); move it away to {afresh}") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path} is not a JSON object; move it away to {afresh}")
    return data


def save_record(path: str, data: dict) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def load_imported(home: str) -> dict[str, dict]:
    """GUN → {"tags": {target: {"role", "digest"}}, "delegations": [role]} of the earlier imports.

    Raises:
        StateError: the file is unreadable (removed tags would otherwise stay signed).
    """
    return load_record(_imported_path(home), "import afresh")


def diff_since(plan: CollectionPlan, imported: dict[str, dict]) -> ImportDiff:
    """Compare the plan with what the last import of its GUN staged and published."""
    before = imported.get(plan.gun) or {}
    tags, delegated = before.get("tags", {}), set(before.get("delegations", []))
    diff = ImportDiff(first=not before)
    for tag in plan.tags:
        old = tags.get(tag.target)
        if old is None:
            diff.added.append(tag.target)
        elif (old.get("role"), old.get("digest")) != (tag.role, tag.digest):
            diff.changed.append(tag.target)
        else:
            diff.unchanged += 1
    planned = {t.target for t in plan.tags}
    diff.removed = sorted(name for name in tags if name not in planned)
    diff.delegations = [d.role for d in plan.delegations if d.role not in delegated]
    return diff


def for_delegates(plan: CollectionPlan, diff: ImportDiff) -> list[dict]:
    """What this import proposes to each delegation's delegates: the new or changed tags of its role (a new
    delegation carried over empty is listed too: its delegates publish into it when they have something)."""
    wanted = set(diff.added) | set(diff.changed)
    proposals = []
    for d in plan.delegations:
        tags = [t.target for t in plan.tags if t.role == d.role and t.target in wanted]
        if tags or d.role in diff.delegations:
            proposals.append({"role": d.role, "notaryRole": d.notary_role, "tags": tags, "threshold": d.threshold,
                              "keyids": [k.keyid for k in d.keys]})
    return proposals


def _key_spec(key: KeyPlan) -> str:
    """The delegate's public key as ``resolve_key`` takes it (JSON): no catalogue name is needed."""
    return json.dumps({"keytype": key.keytype, "scheme": key.scheme, "keyval": {"public": key.public_pem},
                       "keyid": key.keyid})


def _depth(delegation: DelegationPlan) -> int:
    return delegation.notary_role.count("/")


def stage_import(
    state: State, plan: CollectionPlan, diff: ImportDiff, ok: set[str], registry: RegistryOptions
) -> tuple[bool, list[str]]:
    """Stage the new delegations (parents first), the added and changed tags whose manifest checked ``ok``
    (each in its role), and the removals. Returns (anything staged, warnings: delegations not carried over).

    Raises:
        UsageError, TufociError: from staging (the registry or the trust repository could not be read).
    """
    from tufoci.repo_tool.delegations import stage_delegation
    from tufoci.repo_tool.staging import stage_removals, stage_targets

    warnings, staged = [], False
    new = set(diff.delegations)
    for d in sorted(plan.delegations, key=_depth):
        if d.role not in new:
            continue
        if not d.patterns:
            warnings.append(f"{d.notary_role}: delegates no path in Notary; not carried over")
            continue
        stage_delegation(state, plan.scope, d.role, keys=[_key_spec(k) for k in d.keys], paths=d.patterns,
                         threshold=d.threshold, parent=d.parent)
        staged = True
    wanted = set(diff.added) | set(diff.changed)
    by_role: dict[str, list[str]] = {}
    for tag in plan.tags:
        if tag.target in wanted and tag.tag in ok:
            by_role.setdefault(tag.role, []).append(f"{plan.scope}/{plan.repository}:{tag.tag}@{tag.digest}")
    for role, references in by_role.items():
        # what Notary signed is migrated as signed, even where the tag has moved since (issue 18's tag check
        # would refuse it): the plan's manifest checks already said what the registry serves
        stage_targets(state, references, role=role, allow_tag_mismatch=True, registry=registry)
        staged = True
    before = load_imported(state.home).get(plan.gun, {}).get("tags", {})
    roles = {t.target: t.role for t in plan.tags if t.tag in ok}
    moved = [name for name in diff.changed if name in roles and before[name]["role"] != roles[name]]
    for name in diff.removed + moved:  # a tag now listed by another role leaves its old one
        stage_removals(state, plan.scope, [name], role=before[name]["role"], registry=registry)
        staged = True
    return staged, warnings


def record_import(home: str, plan: CollectionPlan, diff: ImportDiff, ok: set[str]) -> None:
    """Remember what this import staged and ``publish`` pushed (tags that failed their manifest check are
    left out, so the next run tries them again)."""
    imported = load_imported(home)
    before = imported.get(plan.gun, {})
    tags = {name: entry for name, entry in before.get("tags", {}).items() if name not in diff.removed}
    for tag in plan.tags:
        if tag.tag in ok:
            tags[tag.target] = {"role": tag.role, "digest": tag.digest}
    delegated = set(before.get("delegations", [])) | {d.role for d in plan.delegations if d.patterns}
    imported[plan.gun] = {"tags": tags, "delegations": sorted(delegated)}
    save_record(_imported_path(home), imported)


def publish_scopes(state: State, scopes: list[str], secrets: SecretsHandler | None,
                   registry: RegistryOptions) -> list[dict]:
    """``publish`` each scope staged into: the top-level role goes live, delegated roles become proposals.

    Raises:
        TufociError: from publishing (the registry keeps the previous state; the staged changes stay).
    """
    from tufoci.repo_tool.maintainer import MaintainerSession
    from tufoci.repo_tool.publish import publish

    return [publish(MaintainerSession.open(state, scope, registry=registry), secrets=secrets).to_dict()
            for scope in dict.fromkeys(scopes)]
