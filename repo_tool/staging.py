"""Staging target changes in local state until the next publish.

``target add`` resolves each tag to its manifest digest and size by hashing the
bytes it downloaded (the ``Docker-Content-Digest`` header is never used), a
repository's tags in one batch and repositories in parallel, and records the
change in ``state.db`` in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from tufoci import budget
from tufoci.client.trust_pins import pin_for_reference, pin_for_scope
from tufoci.errors import UsageError
from tufoci.layout_spec import (
    DOCKER_LIST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    image_media_type,
    index_platforms,
    target_custom,
)
from tufoci.reference import Reference, Repository, parse_reference, target_name
from tufoci.registry_options import RegistryOptions
from tufoci.state import AuditEntry, Pin, StagedRow, State
from tufoci.store import Manifest, open_repository

RESOLVE_WORKERS = 16


@dataclass(frozen=True)
class TargetAdd:
    """``role`` signs ``name`` as the manifest ``digest`` of ``length`` bytes (``custom``: the target's
    custom field, layout_spec.target_custom)."""

    scope: str
    role: str
    name: str
    length: int
    digest: str
    custom: dict | None = None
    action: ClassVar[str] = "add"


@dataclass(frozen=True)
class TargetRemove:
    """``role`` no longer signs ``name``."""

    scope: str
    role: str
    name: str
    action: ClassVar[str] = "remove"


@dataclass(frozen=True)
class DelegationAdd:
    """``role`` delegates ``paths`` to the role ``name``: its keys (keyid -> public key dict) and threshold."""

    scope: str
    role: str
    name: str
    keys: dict[str, dict]
    threshold: int
    paths: list[str]
    terminating: bool = False
    action: ClassVar[str] = "delegate"


@dataclass(frozen=True)
class BinsDelegation:
    """``targets`` delegates every target to 2**``bit_length`` hashed bins named ``name``-<hex> (TAP 15)."""

    scope: str
    role: str
    name: str
    keys: dict[str, dict]
    threshold: int
    bit_length: int
    action: ClassVar[str] = "delegate-bins"


@dataclass(frozen=True)
class Undelegation:
    """``role`` no longer delegates to ``name``."""

    scope: str
    role: str
    name: str
    action: ClassVar[str] = "undelegate"


@dataclass(frozen=True)
class KeyChange:
    """The delegator ``role`` changes the keys and/or threshold it gives ``name`` (rotation, revocation):
    ``add`` keyid -> public key dict, ``remove`` key ids (or unique prefixes)."""

    scope: str
    role: str
    name: str
    add: dict[str, dict]
    remove: list[str]
    threshold: int | None = None
    action: ClassVar[str] = "rotate"


@dataclass(frozen=True)
class Renewal:
    """The next version of ``role`` (``name`` is the role too) with the same content and a fresh expiry,
    ``expires`` from now instead of the role's period when given."""

    scope: str
    role: str
    name: str
    expires: str | None = None
    action: ClassVar[str] = "renew"


# One type per kind of change; ``action`` is the kind's name in state.db and in JSON output.
StagedChange = TargetAdd | TargetRemove | DelegationAdd | BinsDelegation | Undelegation | KeyChange | Renewal
TargetsChange = TargetAdd | TargetRemove | DelegationAdd | BinsDelegation | Undelegation  # a targets role's content


def to_row(change: StagedChange) -> StagedRow:
    """The row of ``staged`` that stores ``change`` (``from_row`` reads it back)."""
    head = (change.scope, change.role, change.name, change.action)
    match change:
        case TargetAdd():
            return StagedRow(*head, change.length, change.digest, change.custom)
        case DelegationAdd():
            return StagedRow(*head, custom={"keys": change.keys, "threshold": change.threshold,
                                            "paths": list(change.paths), "terminating": change.terminating})
        case BinsDelegation():
            return StagedRow(*head, custom={"keys": change.keys, "threshold": change.threshold,
                                            "bit_length": change.bit_length})
        case KeyChange():
            return StagedRow(*head, custom={"add": change.add, "remove": list(change.remove),
                                            "threshold": change.threshold})
        case Renewal():
            return StagedRow(*head, custom={"expires": change.expires} if change.expires else None)
    return StagedRow(*head)


def from_row(row: StagedRow) -> StagedChange:
    """The typed change a ``staged`` row stores.

    Raises:
        UsageError: an action this version of tufoci does not know (a newer tufoci staged it).
    """
    spec = row.custom or {}
    head = (row.scope, row.role, row.name)
    if row.action == TargetAdd.action:
        return TargetAdd(*head, row.length or 0, row.digest or "", row.custom)
    if row.action == TargetRemove.action:
        return TargetRemove(*head)
    if row.action == DelegationAdd.action:
        return DelegationAdd(*head, dict(spec["keys"]), int(spec["threshold"]), list(spec["paths"]),
                             bool(spec["terminating"]))
    if row.action == BinsDelegation.action:
        return BinsDelegation(*head, dict(spec["keys"]), int(spec["threshold"]), int(spec["bit_length"]))
    if row.action == Undelegation.action:
        return Undelegation(*head)
    if row.action == KeyChange.action:
        return KeyChange(*head, dict(spec.get("add", {})), list(spec.get("remove", [])), spec.get("threshold"))
    if row.action == Renewal.action:
        return Renewal(*head, spec.get("expires"))
    raise UsageError(f"{row.scope}: a staged change of unknown kind {row.action!r} for {row.name} "
                     "(staged by a newer tufoci?)")


def resolve_image(reference: Reference, *, registry: RegistryOptions = RegistryOptions()) -> tuple[str, int, dict]:
    """(digest, length, custom) of the manifest a reference points at, from its bytes."""
    return resolve_images([reference], registry=registry)[0]


def resolve_images(references: list[Reference], *, registry: RegistryOptions = RegistryOptions()) -> list[tuple[str, int, dict]]:
    """``resolve_image`` of each reference, in order; the first failure raises.

    References are grouped by repository, so a repository's many tags come through
    ``RepositoryStore.get_manifests`` (the registry's batch transport); repositories
    resolve in parallel.
    """
    groups: dict[Repository, list[int]] = {}
    for index, reference in enumerate(references):
        groups.setdefault(reference.repository, []).append(index)
    manifests: list[Manifest | None] = [None] * len(references)

    def resolve_group(repository: Repository, indices: list[int]) -> None:
        store = open_repository(repository, registry=registry)
        wanted = [references[i].digest or references[i].tag or "latest" for i in indices]
        for index, manifest in zip(indices, store.get_manifests(wanted), strict=True):
            manifests[index] = manifest

    with ThreadPoolExecutor(max_workers=RESOLVE_WORKERS) as pool:
        resolve = budget.carry(resolve_group)  # the workers keep the command's --timeout budget
        for future in [pool.submit(resolve, repository, indices) for repository, indices in groups.items()]:
            future.result()
    resolved = [manifest for manifest in manifests if manifest is not None]
    assert len(resolved) == len(manifests), "every reference resolved or the first failure raised"
    return [_described(manifest) for manifest in resolved]


def _described(manifest: Manifest) -> tuple[str, int, dict]:
    media_type = image_media_type(manifest.data, manifest.content_type)
    is_index = media_type in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
    custom = target_custom(media_type, index_platforms(manifest.data) if is_index else None)
    return manifest.digest, len(manifest.data), custom


def stage_targets(
    state: State,
    references: list[str],
    *,
    role: str = "targets",
    allow_tag_mismatch: bool = False,
    warn: Callable[[str], None] = lambda line: None,
    registry: RegistryOptions = RegistryOptions(),
) -> list[TargetAdd]:
    """Resolve and stage every reference; nothing is staged unless all resolve.

    A ``REPO:TAG@DIGEST`` whose tag serves another digest is refused unless ``allow_tag_mismatch``
    (then ``warn`` is told, naming both digests).

    Raises:
        UsageError: a malformed reference, a role that does not fit, or a tag serving another digest.
        TufociError: the registry or the trust repository could not be read.
    """
    if not references:
        raise UsageError("no reference given")
    locate = _locator(state.pins())
    planned = [locate(text) for text in references]
    _check_roles(state, role, [(scope, name) for _, scope, name in planned], registry)
    resolved = resolve_images([reference for reference, _, _ in planned], registry=registry)
    for message in _tag_mismatches([reference for reference, _, _ in planned], registry):
        if not allow_tag_mismatch:
            raise UsageError(f"{message}: add --allow-tag-mismatch to sign the digest given")
        warn(message)
    changes = [
        TargetAdd(scope, role, name, length, digest, custom)
        for (_, scope, name), (digest, length, custom) in zip(planned, resolved, strict=True)
    ]
    record_changes(state, changes)
    return changes


def _tag_mismatches(references: list[Reference], registry: RegistryOptions) -> list[str]:
    """issue 18: for each ``REPO:TAG@DIGEST``, what the registry serves for the tag when it is not DIGEST."""
    from tufoci.errors import NotFoundError

    messages = []
    for reference in references:
        if not (reference.tag and reference.digest):
            continue
        tagged = Reference(reference.repository, reference.tag)
        try:
            served = resolve_image(tagged, registry=registry)[0]
        except NotFoundError:
            messages.append(f"{tagged} does not exist in the registry (signing {reference.digest} for it)")
            continue
        if served != reference.digest:
            messages.append(f"{tagged} serves {served}, not {reference.digest}")
    return messages


def _check_roles(state: State, role: str, targets: list[tuple[str, str]], registry: RegistryOptions) -> None:
    """issue 18: a role that does not exist, or a name outside its paths, is refused now, not at publish.
    Staging for ``targets`` needs no check (and no registry request)."""
    if role == "targets":
        return
    from tufoci.repo_tool.staging_checks import check_staging

    by_scope: dict[str, list[str]] = {}
    for scope, name in targets:
        by_scope.setdefault(scope, []).append(name)
    for scope, names in by_scope.items():
        check_staging(state, pin_for_scope(state, scope), role=role, adds=names, registry=registry)


def _locator(pins: list[Pin]) -> Callable[[str], tuple[Reference, str, str]]:
    """``locate(text)``: (reference, scope, target name) of a reference to stage, or a usage error.

    A repository's pin is looked up once: a build names one repository a thousand times.
    """
    pin_of: dict[Repository, tuple[Pin, Repository]] = {}

    def locate(text: str) -> tuple[Reference, str, str]:
        reference = parse_reference(text)
        if not reference.tag:
            raise UsageError(f"{text}: a target is named by its tag; give REPO:TAG or REPO:TAG@DIGEST")
        if reference.repository not in pin_of:
            pin_of[reference.repository] = pin_for_reference(pins, reference)
        pin, scope = pin_of[reference.repository]
        if str(reference.repository) == pin.metadata:
            raise UsageError(f"{text} is in the metadata repository of {pin.scope}: it cannot be a target")
        return reference, pin.scope, target_name(reference, scope)

    return locate


def stage_built_targets(
    state: State, records: list[tuple[str, str, int, str]], *, role: str = "targets", registry: RegistryOptions = RegistryOptions()
) -> list[TargetAdd]:
    """Stage digests the build already knows (no registry request): ``(ref, digest, size, media type)``.

    The registry check of ``verify`` still compares them with what the registry serves.
    """
    if not records:
        raise UsageError("no build record given")
    locate = _locator(state.pins())
    changes = []
    for text, digest, size, media_type in records:
        _, scope, name = locate(text)
        changes.append(TargetAdd(scope, role, name, size, digest, target_custom(media_type)))
    _check_roles(state, role, [(c.scope, c.name) for c in changes], registry)
    record_changes(state, changes)
    return changes


def stage_digest_file(
    state: State,
    text: str,
    references: list[str],
    *,
    fmt: str = "auto",
    source: str = "digest file",
    role: str = "targets",
    allow_tag_mismatch: bool = False,
    warn: Callable[[str], None] = lambda line: None,
    registry: RegistryOptions = RegistryOptions(),
) -> list[TargetAdd]:
    """Stage what a build or copy tool says it pushed (repo_tool/build_records.py): complete records
    without a registry request, a bare digest resolved by digest (its tag checked as in ``stage_targets``).

    Raises:
        UsageError: the file or the references do not fit its format, or as ``stage_targets``.
        TufociError: as ``stage_targets``.
    """
    from tufoci.repo_tool.build_records import read_digest_file

    targets = read_digest_file(text, references, fmt, source=source)
    if targets.records:
        return stage_built_targets(state, targets.records, role=role, registry=registry)
    return stage_targets(state, targets.pinned, role=role, allow_tag_mismatch=allow_tag_mismatch, warn=warn,
                         registry=registry)


def stage_removals(
    state: State, scope_text: str, names: list[str], *, role: str = "targets", registry: RegistryOptions = RegistryOptions()
) -> list[StagedChange]:
    """Stage removals of targets ``role`` signs (issue 18: a revocation typo must never look like success).

    Raises:
        UsageError: the role does not exist or signs no such target (nothing is staged).
        TufociError: the live trust repository could not be read.
    """
    from tufoci.repo_tool.staging_checks import check_staging

    pin = pin_for_scope(state, scope_text)
    check_staging(state, pin, role=role, removes=names, registry=registry)
    changes: list[StagedChange] = [TargetRemove(pin.scope, role, name) for name in names]
    record_changes(state, changes)
    return changes


def record_changes(state: State, changes: Sequence[StagedChange]) -> None:
    """Stage changes in one transaction (a later change to the same name replaces an earlier one)."""
    rows = [to_row(c) for c in changes]
    with state.transaction():
        state.stage(rows)
        state.record_audits(AuditEntry(f"stage-{r.action}", r.scope, r.role, None, {"target": r.name, "digest": r.digest})
                            for r in rows)


def staged_changes(state: State, scope: str) -> list[StagedChange]:
    # staging order matters: delegations are searched in the order they were added
    return [from_row(row) for row in state.staged(scope)]


def clear_staged(state: State, scope: str, changes: Sequence[StagedChange]) -> None:
    """Drop the staged rows a publish applied (inside the caller's transaction, if any)."""
    state.unstage(scope, (to_row(c) for c in changes))
