"""``tufoci import-notary``: read, verify and plan Notary collections; check the images they name.

Every collection is verified completely before any plan is made (issue 16); a plan is printed, the manifests of
the tags added or changed since the last import checked in the registry, and the import staged and published
into a scope the user initialised (``notary_stage``): delegated roles as proposals their delegates sign.

The versions seen by each verified import are kept in ``$TUFOCI_HOME/notary-seen.json``, like a Notary
client's cache: a later import refuses an older timestamp, snapshot or targets (a rollback).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from securesystemslib.signer import SecretsHandler

from tufoci.errors import ContentMismatchError, NotFoundError, RegistryError, StateError, UsageError
from tufoci.json_keys import camel_fields
from tufoci.reference import parse_repository
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.notary_plan import CollectionPlan, make_plan
from tufoci.repo_tool.notary_source import open_source
from tufoci.repo_tool.notary_stage import (
    ImportDiff,
    diff_since,
    for_delegates,
    load_imported,
    load_record,
    publish_scopes,
    record_import,
    save_record,
    stage_import,
)
from tufoci.repo_tool.notary_verify import RootPin, verify_collection
from tufoci.repo_tool.staging import staged_changes
from tufoci.state import State

SEEN_FILE = "notary-seen.json"


@dataclass
class ManifestCheck:
    tag: str
    digest: str
    status: str  # ok | missing | mismatch | unchecked
    media_type: str | None = None
    detail: str = ""


@dataclass
class ImportResult:
    plans: list[CollectionPlan]
    home: str  # the TUFOCI_HOME that remembers earlier imports
    checks: dict[str, list[ManifestCheck]] = field(default_factory=dict)  # gun → checks
    published: list[dict] = field(default_factory=list)  # PublishResult.to_dict() per scope
    diffs: dict[str, ImportDiff] = field(default_factory=dict)  # gun → what changed since the last import

    def __post_init__(self) -> None:
        imported = load_imported(self.home)
        self.diffs = {plan.gun: diff_since(plan, imported) for plan in self.plans}

    def to_json(self) -> dict:
        return {
            "collections": [
                dict(plan.to_json(),
                     manifests=[asdict(c, dict_factory=camel_fields) for c in self.checks.get(plan.gun, [])],
                     sinceLastImport=asdict(self.diffs[plan.gun], dict_factory=camel_fields),
                     forDelegates=for_delegates(plan, self.diffs[plan.gun]))
                for plan in self.plans
            ],
            "published": self.published,
        }


def pins_for(guns: list[str], sha256: list[str], fingerprints: list[str], tofu: bool) -> dict[str, RootPin]:
    """One pin per GUN, given in the order of the GUNs.

    Raises:
        UsageError: no pin, pins of two kinds, or not one pin per GUN.
    """
    if tofu and not (sha256 or fingerprints):
        return {gun: RootPin(tofu=True) for gun in guns}
    if bool(sha256) == bool(fingerprints) or tofu:
        raise UsageError("pin each Notary root: --root-sha256 HEX or --root-cert-fingerprint HEX per GUN "
                         "(or --tofu to trust whatever root the source serves, explicitly)")
    values = sha256 or fingerprints
    if len(values) != len(guns):
        raise UsageError(f"{len(values)} root pin(s) for {len(guns)} GUN(s): give one per GUN, in order")
    if sha256:
        return {gun: RootPin(sha256=v) for gun, v in zip(guns, values, strict=True)}
    return {gun: RootPin(cert_fingerprint=v) for gun, v in zip(guns, values, strict=True)}


def _seen_path(home: str) -> str:
    return os.path.join(home, SEEN_FILE)


def load_seen(home: str) -> dict[str, dict[str, int]]:
    """Raises:
        StateError: the file is unreadable (never start afresh silently: rollback protection would be off).
    """
    return load_record(_seen_path(home), "start afresh")


def save_seen(home: str, seen: dict[str, dict[str, int]]) -> None:
    save_record(_seen_path(home), seen)


def plan_import(
    guns: list[str],
    pins: dict[str, RootPin],
    *,
    home: str,
    server: str | None = None,
    trust_dir: str | None = None,
    semantics: str = "dct",
    allow_expired: bool = False,
    scope: str | None = None,
    server_options: dict | None = None,
    unpublished: str = "carry",
) -> list[CollectionPlan]:
    """Verify every collection, then plan each; remember the versions seen (rollback protection).

    Nothing is remembered unless every collection verified.

    Raises:
        NotaryRejectedError: a collection failed verification (nothing is planned, nothing remembered).
        UsageError, RegistryError: bad options, an unreadable source.
    """
    if not guns:
        raise UsageError("name at least one GUN (e.g. registry.example.com/acme/web)")
    seen = load_seen(home)
    verified = []
    for gun in guns:
        options = dict(server_options or {})
        if server is not None:
            # docker keeps the login under the registry's name; its token service answers the server's challenge
            options.setdefault("credentials_registry", parse_repository(gun).registry)
        source = open_source(gun, server=server, trust_dir=trust_dir, **options)
        verified.append(verify_collection(source, pins[gun], allow_expired=allow_expired, known_versions=seen.get(gun)))
    plans = [make_plan(collection, semantics, scope, unpublished) for collection in verified]
    for collection in verified:
        seen[collection.gun] = {**seen.get(collection.gun, {}), **collection.versions}
    save_seen(home, seen)
    return plans


def check_manifests(
    plan: CollectionPlan, registry: RegistryOptions = RegistryOptions(), diff: ImportDiff | None = None
) -> list[ManifestCheck]:
    """Fetch each planned tag's manifest by digest: length and digest checked, a missing one reported.

    With ``diff``, only the tags added or changed since the last import (the others were checked then and are
    not staged again): a re-run of an unchanged collection asks the registry nothing.
    A registry that cannot be reached leaves the rest ``unchecked`` (reported), never assumed present.
    """
    from tufoci.store.registry import registry_client

    scope = parse_repository(plan.scope)
    assert scope.registry is not None  # split_gun: the scope holds the GUN, a registry's repository
    repository = registry_client(scope.registry, registry).repository(
        f"{scope.path}/{plan.repository}"
    )
    checks: list[ManifestCheck] = []
    unreachable = ""
    wanted = None if diff is None else set(diff.added) | set(diff.changed)
    for tag in plan.tags:
        if wanted is not None and tag.target not in wanted:
            continue
        if unreachable:
            checks.append(ManifestCheck(tag.tag, tag.digest, "unchecked", detail=unreachable))
            continue
        try:
            manifest = repository.get_manifest(tag.digest)
        except NotFoundError:
            checks.append(ManifestCheck(tag.tag, tag.digest, "missing", detail="not in the registry: skipped"))
            continue
        except ContentMismatchError as exc:
            checks.append(ManifestCheck(tag.tag, tag.digest, "mismatch", detail=str(exc)))
            continue
        except RegistryError as exc:
            unreachable = f"registry not checked: {exc}"
            checks.append(ManifestCheck(tag.tag, tag.digest, "unchecked", detail=unreachable))
            continue
        if len(manifest.data) != tag.length:
            checks.append(ManifestCheck(tag.tag, tag.digest, "mismatch", manifest.content_type,
                                        f"manifest is {len(manifest.data)} bytes, Notary signed {tag.length}"))
            continue
        checks.append(ManifestCheck(tag.tag, tag.digest, "ok", manifest.content_type))
    return checks


def import_plans(
    state: State, result: ImportResult, *, secrets: SecretsHandler | None, registry: RegistryOptions = RegistryOptions()
) -> None:
    """Stage what changed since the last import (``notary_stage``) and publish it: the top-level tags go live,
    each delegated role's next version is a proposal for its delegates.

    Only into a scope the user initialised (``tufoci init``); a tag whose manifest did not check ``ok`` is
    left out (and tried again by the next run).

    Raises:
        StateError: a plan's scope is not initialised here.
        RegistryError: the registry could not be reached to check the images (nothing staged).
        TufociError: from staging or publishing (the registry keeps the previous state; staged changes stay,
            and the next run finishes them).
    """
    from tufoci.client.trust_pins import pin_for_scope
    from tufoci.errors import NotTrustedError

    options = registry
    for plan in result.plans:
        unchecked = [c for c in result.checks.get(plan.gun, []) if c.status == "unchecked"]
        if unchecked:
            raise RegistryError(f"{plan.gun}: nothing published, the images could not be checked ({unchecked[0].detail})")
        try:
            pin_for_scope(state, plan.scope)
        except NotTrustedError as exc:
            raise StateError(f"scope {plan.scope} is not initialised on this machine: run 'tufoci init "
                             f"{plan.scope} …' first (or --scope for another), or use --dry-run") from exc
    scopes, ok = [], {}
    for plan in result.plans:
        ok[plan.gun] = {c.tag for c in result.checks.get(plan.gun, []) if c.status == "ok"}
        staged, warnings = stage_import(state, plan, result.diffs[plan.gun], ok[plan.gun], options)
        plan.warnings.extend(warnings)
        if staged or staged_changes(state, plan.scope):  # a run that stopped before publishing left them
            scopes.append(plan.scope)
    result.published = publish_scopes(state, scopes, secrets, options)
    for plan in result.plans:
        record_import(state.home, plan, result.diffs[plan.gun], ok[plan.gun])


def _answer(answer) -> str:
    return "nothing" if answer is None else f"{answer.role} sha256:{answer.sha256[:12]}… ({answer.length} B)"


def render_text(result: ImportResult) -> list[str]:
    """The plan for people: scopes, roles, keys old → new, tags, conflicts, skips, warnings."""
    lines: list[str] = []
    for plan in result.plans:
        lines.append(f"{plan.gun} → scope {plan.scope}, repository {plan.repository} "
                     f"(root v{plan.root_version} sha256 {plan.root_sha256}, {plan.semantics} semantics)")
        for d in plan.delegations:
            state = "" if d.published else " [declared, never published: carried over empty]"
            lines.append(f"  role {d.notary_role} → {d.role} (parent {d.parent}), threshold {d.threshold}, "
                         f"{d.tags} tag(s), paths {d.notary_paths} → {d.patterns}{state}")
            for k in d.keys:
                cn = f" CN={k.certificate_cn}" if k.certificate_cn else ""
                lines.append(f"    key {k.notary_keyid[:16]}… ({k.notary_keytype}{cn}) → {k.keyid[:16]}… ({k.scheme})")
        checks = {c.tag: c for c in result.checks.get(plan.gun, [])}
        for t in plan.tags:
            check = checks.get(t.tag)
            note = f"  [{check.status}{': ' + check.detail if check.detail else ''}]" if check else ""
            lines.append(f"  tag {t.target} {t.digest} {t.length} B from {t.notary_role} → {t.role}{note}")
        for c in plan.conflicts:
            lines.append(f"  CONFLICT {c.tag}: dct gives {_answer(c.dct)}, notary gives {_answer(c.notary)}")
        lines.extend(f"  skipped {s}" for s in plan.skipped)
        lines.extend(f"  warning: {w}" for w in plan.warnings)
        lines.extend(f"  EXPIRED (allowed): {e}" for e in plan.expired)
        diff = result.diffs[plan.gun]
        since = "first import" if diff.first else "since the last import"
        lines.append(f"  {since}: {len(diff.added)} added, {len(diff.changed)} changed, {len(diff.removed)} removed, "
                     f"{diff.unchanged} unchanged; {len(diff.delegations)} delegation(s) to stage")
        lines.extend(f"  {what} {name}" for what, names in (("added", diff.added), ("changed", diff.changed),
                                                            ("removed", diff.removed)) for name in names)
        for p in for_delegates(plan, diff):
            lines.append(f"  for the delegates of {p['role']} (threshold {p['threshold']} of {len(p['keyids'])} "
                         f"key(s)): {len(p['tags'])} tag(s) to propose")
    for published in result.published:
        roles = ", ".join(f"{role} v{version}" for role, version in published["published"].items()) or "nothing"
        lines.append(f"published {published['scope']}: {roles} ({len(published['changes'])} change(s))")
        for role, info in published["proposed"].items():
            lines.append(f"proposed {role} v{info['version']} to its delegates: each reviews it with 'tufoci status "
                         f"{published['scope']}' and signs with 'tufoci sign {published['scope']} {role} --expect "
                         f"FINGERPRINT'")
    return lines
