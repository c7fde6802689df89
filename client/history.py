"""The signed history of a scope, rebuilt from the versions its registry keeps (issue 15.5).

Consistent snapshots keep every version of every role under its own tag
(layout §3: ``root.<N>``, ``targets.<N>``, ``d.<enc(role)>.<N>``), so the
registry already holds a change log that nobody can rewrite without the keys:
this module reads it back and checks every version, needing nothing but the
store and the pinned root (a consumer or an auditor runs it; no maintainer
state, no server).

What is believed, and why:

* The root chain is verified from the pinned root: root N+1 must be signed by
  the threshold of root N and of itself (client workflow 5.3.4). A missing
  root version breaks the chain: every later root is shown UNVERIFIED.
* A ``targets`` version is checked against the root of its time, a delegated
  role's version against the delegating role's version of its time, with
  python-tuf's ``verify_delegate``. "Of its time" is monotonic: version N+1 is
  never checked against an older root (or delegator version) than version N
  was, so a key that a later root revoked cannot sign a later version.
* The kept snapshots are checked against the roots the same way; a version
  that a verified snapshot lists must be the bytes that snapshot recorded
  (its sha256). So whoever holds a key that a later root revoked cannot
  re-sign an old version into the history without the online key of its time.
* A version that does not verify, is malformed or lies about its role or
  version is shown ``UNVERIFIED`` with the reason and is never used to build
  a tag's history; a missing version is shown as a gap.

Expiry is not checked (this is history: every old version has expired), and
the moving ``timestamp`` is not read. Times are the signed
expiry minus the role's expiry period in the root of its time (tufoci sets
``expires`` to signing time + period), so they are marked as approximate.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from tuf.api.exceptions import RepositoryError, UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Metadata, Root, Targets
from tuf.ngclient import UpdaterConfig

from tufoci.client.genesis_root import bootstrap_root
from tufoci.client.refresh import metadata_store
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import MetadataRejectedError, NotFoundError, TufociError
from tufoci.expiry_periods import expiry_periods, parse_duration
from tufoci.keyids import require_own_keyids
from tufoci.layout_spec import (
    MAX_METADATA_MANIFEST_BYTES,
    encode_role,
    meta_role,
    metadata_tag,
    parse_metadata_manifest,
    parse_metadata_tag,
)
from tufoci.reference import Repository, parse_reference, parse_repository, target_name
from tufoci.registry_options import RegistryOptions
from tufoci.state import State
from tufoci.store.base import RepositoryStore

_LIMITS = UpdaterConfig()  # python-tuf's size limits per role: the same caps a verify applies


@dataclass
class SignedVersion:
    """One kept version of one role, and what checking it found."""

    role: str
    version: int
    tag: str
    verified: bool = False
    problem: str | None = None
    signed_by: list[str] = field(default_factory=list)  # key ids whose signatures count
    checked_against: str | None = None  # "root v2", "targets v3"
    root_version: int | None = None  # the root in force
    expires: datetime.datetime | None = None
    signed_about: datetime.datetime | None = None
    snapshot_version: int | None = None  # the first verified snapshot that lists this version
    digest: str | None = None  # sha256 of the kept bytes (what a snapshot records)
    metadata: Metadata | None = None
    delegator: Root | Targets | None = None  # the verified version it was checked against

    @property
    def md(self) -> Metadata:
        """The metadata of a version that was read: every verified version was (None only with a ``problem``)."""
        assert self.metadata is not None, f"{self.role} v{self.version} was not read"
        return self.metadata

    def to_dict(self, names: dict[str, str]) -> dict:
        return {
            "role": self.role, "version": self.version, "tag": self.tag, "verified": self.verified,
            "problem": self.problem, "signedBy": [{"keyid": k, "key": names.get(k)} for k in self.signed_by],
            "checkedAgainst": self.checked_against, "rootVersion": self.root_version,
            "expires": _iso(self.expires), "signedAbout": _iso(self.signed_about),
            "snapshotVersion": self.snapshot_version,
        }


@dataclass
class TagEntry:
    """One digest a target name pointed to in one role, from a version to the version that changed it."""

    target: str
    digest: str
    length: int
    role: str
    first: SignedVersion
    last: SignedVersion  # the last verified version still listing it with this digest
    ended_by: SignedVersion | None  # the verified version that changed or removed it; None: still signed
    unknown_between: list[int] = field(default_factory=list)  # missing or unverified versions inside the span

    def to_dict(self, names: dict[str, str]) -> dict:
        return {
            "target": self.target, "digest": self.digest, "length": self.length, "role": self.role,
            "fromVersion": self.first.version, "toVersion": self.last.version,
            "endedByVersion": self.ended_by.version if self.ended_by else None,
            "from": _iso(self.first.signed_about), "until": _iso(self.ended_by.signed_about) if self.ended_by else None,
            "inLatestVersion": self.ended_by is None,
            "signedBy": [{"keyid": k, "key": names.get(k)} for k in self.first.signed_by],
            "checkedAgainst": self.first.checked_against, "rootVersion": self.first.root_version,
            "unknownVersions": self.unknown_between,
        }


@dataclass
class History:
    scope: str
    metadata: str
    pinned_root: int
    versions: dict[str, list[SignedVersion]]  # role -> every kept version, in version order
    gaps: list[tuple[str, int]]  # (role, version) missing from the registry
    tags: dict[str, list[TagEntry]]  # target name -> entries in time order

    def to_dict(self, names: dict[str, str]) -> dict:
        return {
            "scope": self.scope, "metadata": self.metadata, "pinnedRootVersion": self.pinned_root,
            "versions": [v.to_dict(names) for role in self.versions.values() for v in role],
            "gaps": [{"role": role, "version": version} for role, version in self.gaps],
            "tags": [{"target": name, "history": [e.to_dict(names) for e in entries]}
                     for name, entries in self.tags.items()],
        }


def _iso(when: datetime.datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def scope_history(
    state: State,
    scope_text: str,
    references: list[str] | tuple[str, ...] = (),
    *,
    since: datetime.datetime | None = None,
    registry: RegistryOptions = RegistryOptions(),
) -> History:
    """The verified history of every tag (or of ``references``: target names or REGISTRY/SCOPE/REPO:TAG).

    ``since`` keeps the entries still signed at or after that time.

    Raises:
        NotTrustedError: no trust pin for the scope.
        UsageError: the pin reads a static HTTP mirror (it keeps no versions), or a reference is outside the scope.
        RegistryError: the metadata repository cannot be listed (unreadable versions are reported, not raised).
    """
    pin = pin_for_scope(state, scope_text)
    scope = parse_repository(pin.scope)
    wanted = [_target_name(text, scope) for text in references]
    store = metadata_store(pin, registry=registry)
    pinned = _anchor(pin.root_file, pin.scope, store)
    tags: dict[tuple[str, str], dict[int, str]] = {}  # (kind, role or encoded role) -> version -> tag
    for tag in store.list_tags():
        parsed = parse_metadata_tag(tag)
        if parsed and parsed.kind in ("top-level", "delegated") and parsed.version is not None:
            tags.setdefault((parsed.kind, parsed.role), {})[parsed.version] = tag
    checker = _Checker(_Reader(store))
    roots = _root_chain(checker.reader, pinned, tags.get(("top-level", "root"), {}), checker.gaps)
    versions = {"root": roots}
    # the snapshots first: each later version must also be the bytes every snapshot listing it recorded
    versions["snapshot"] = checker.check("snapshot", tags.get(("top-level", "snapshot"), {}), _delegators_root(roots))
    checker.record_snapshots(versions["snapshot"])
    versions["targets"] = checker.check("targets", tags.get(("top-level", "targets"), {}), _delegators_root(roots))
    _delegated(checker, tags, versions, roots)
    entries: dict[str, list[TagEntry]] = {}
    for role, kept in versions.items():
        if role not in ("root", "snapshot"):
            for entry in _entries(role, kept):
                if (not wanted or entry.target in wanted) and _still_signed_at(entry, since):
                    entries.setdefault(entry.target, []).append(entry)
    for name in entries:
        entries[name].sort(key=lambda e: (e.first.signed_about or datetime.datetime.min.replace(tzinfo=datetime.UTC),
                                          e.role != "targets", e.first.version))
    return History(pin.scope, pin.metadata, pinned.signed.version, versions, sorted(checker.gaps),
                   dict(sorted(entries.items())))


def _target_name(text: str, scope: Repository) -> str:
    """A target name as given, or the name of a full reference under the scope."""
    if not text.startswith(f"{scope}/"):
        return text
    return target_name(parse_reference(text), scope)


def _still_signed_at(entry: TagEntry, since: datetime.datetime | None) -> bool:
    return since is None or entry.ended_by is None or (entry.ended_by.signed_about or since) >= since


class _Reader:
    """Capped reads of one kept version: the manifest, then its blob by digest (hashed by the store)."""

    def __init__(self, store: RepositoryStore):
        self._store = store

    def read(self, tag: str, cap: int) -> tuple[Metadata, str]:
        """The metadata and the sha256 digest of its bytes.

        Raises:
            ValueError: (with the reason) for anything but metadata within ``cap`` bytes.
        """
        try:
            layer = parse_metadata_manifest(self._store.get_manifest(tag, max_bytes=MAX_METADATA_MANIFEST_BYTES).data).layer
            if layer.size > cap:
                raise ValueError(f"{layer.size} bytes, more than the {cap} a client reads")
            return Metadata.from_bytes(self._store.get_blob(layer.digest, max_bytes=layer.size)), layer.digest
        except TufociError as e:
            raise ValueError(str(e)) from e
        except (RepositoryError, TypeError, KeyError, AttributeError, RecursionError) as e:  # hostile JSON
            raise ValueError(f"not TUF metadata: {type(e).__name__}: {e}") from e


def _load(reader: _Reader, role: str, version: int, tag: str, cap: int, kind: str) -> SignedVersion:
    """Read one version and check it is what its tag says (role type and version)."""
    entry = SignedVersion(role, version, tag)
    try:
        md, entry.digest = reader.read(tag, cap)
    except ValueError as e:
        entry.problem = f"unreadable: {e}"
        return entry
    if md.signed.type != kind or md.signed.version != version:
        entry.problem = f"the tag holds {md.signed.type} version {md.signed.version}"
        return entry
    entry.metadata, entry.expires = md, md.signed.expires
    return entry


def _anchor(root_file: str, scope: str, store: RepositoryStore) -> Metadata[Root]:
    """The pinned root, as a refresh trusts it: a root v1 pinned while it awaited signatures is the registry's
    root v1 of the same signed part (client/genesis_root.py), and the anchor must meet its own threshold
    (client workflow 5.3.4: python-tuf checks the trusted root so), else nothing is verified under it.

    Raises:
        RegistryError: the pinned root v1 awaits signatures and the registry has no root v1.
        MetadataRejectedError: the registry's root v1 is another root, or the anchor is below its own threshold.
    """
    def fetch_root_1() -> bytes | None:
        try:
            manifest = store.get_manifest(metadata_tag("root", 1), max_bytes=MAX_METADATA_MANIFEST_BYTES)
            layer = parse_metadata_manifest(manifest.data).layer
        except NotFoundError:
            return None
        except ValueError as e:
            raise MetadataRejectedError(f"{scope}: the registry's root.1 is not metadata ({e})") from e
        return store.get_blob(layer.digest, max_bytes=min(layer.size, _LIMITS.root_max_length))

    with open(root_file, "rb") as f:
        pinned = Metadata[Root].from_bytes(bootstrap_root(f.read(), scope, fetch_root_1))
    try:
        pinned.signed.verify_delegate("root", pinned.signed_bytes, pinned.signatures)
    except UnsignedMetadataError as e:
        raise MetadataRejectedError(f"{scope}: the pinned root v{pinned.signed.version} is not signed by its own "
                                    f"threshold ({e}): nothing is verified under it") from e
    return pinned


def _root_chain(reader: _Reader, pinned: Metadata[Root], tags: dict[int, str], gaps: list) -> list[SignedVersion]:
    """Roots from the pinned one up (client workflow 5.3.4: N+1 signed by N's and its own threshold)."""
    require_own_keyids(pinned.signed.keys, f"pinned root v{pinned.signed.version}")
    first = pinned.signed.version
    chain = [SignedVersion("root", first, metadata_tag("root", first), True, None,
                           _signers(pinned.signed, "root", pinned), "pinned", first, pinned.signed.expires,
                           metadata=pinned)]
    chain[0].signed_about = _signed_about(chain[0], pinned.signed)
    trusted: Metadata[Root] | None = pinned
    for version in sorted(v for v in tags if v < first):
        chain.insert(len(chain) - 1, SignedVersion("root", version, tags[version],
                                                   problem=f"older than the pinned root v{first}: not checked"))
    for version in range(first + 1, max(tags, default=0) + 1):
        if version not in tags:
            gaps.append(("root", version))
            trusted = None  # the chain is broken: nothing after it can be verified from the pin
            continue
        entry = _load(reader, "root", version, tags[version], _LIMITS.root_max_length, "root")
        chain.append(entry)
        if entry.metadata is None:
            trusted = None
            continue
        if trusted is None:
            entry.problem = f"the root chain from the pinned root v{first} is broken before it"
            continue
        new: Metadata[Root] = entry.metadata
        try:
            trusted.signed.verify_delegate("root", new.signed_bytes, new.signatures)
            new.signed.verify_delegate("root", new.signed_bytes, new.signatures)
            require_own_keyids(new.signed.keys, f"root v{version}")
        except (UnsignedMetadataError, TufociError) as e:
            entry.problem = f"not signed by the threshold of root v{version - 1} and of itself: {e}"
            trusted = None
            continue
        entry.verified, entry.checked_against, entry.root_version = True, f"root v{version - 1}", version
        entry.signed_by = sorted(set(_signers(trusted.signed, "root", new)) | set(_signers(new.signed, "root", new)))
        entry.signed_about = _signed_about(entry, new.signed)
        trusted = new
    return chain


def _signers(delegator: Root | Targets, role: str, md: Metadata) -> list[str]:
    return sorted(delegator.get_verification_result(role, md.signed_bytes, md.signatures).signed)


def _signed_about(entry: SignedVersion, root: Root) -> datetime.datetime | None:
    """Signing time as tufoci wrote it: expires − the role's period (delegated roles use targets')."""
    periods = expiry_periods(root.unrecognized_fields)
    period = periods.get(entry.role if entry.role in ("root", "targets", "snapshot") else "targets")
    try:
        return entry.expires - parse_duration(str(period)) if entry.expires else None
    except TufociError:
        return None


@dataclass(frozen=True)
class _Delegator:
    """One verified version of a delegating role, as a candidate to check a delegated version against."""

    label: str  # "root v2", "targets v3"
    signed: Root | Targets
    root_version: int
    root: Root


def _delegators_root(roots: list[SignedVersion]) -> list[_Delegator]:
    return [_Delegator(f"root v{r.version}", r.md.signed, r.version, r.md.signed)
            for r in roots if r.verified]


class _Checker:
    """Checks the kept versions of one role after another, with what the verified snapshots recorded."""

    def __init__(self, reader: _Reader):
        self.reader = reader
        self.gaps: list[tuple[str, int]] = []
        self._recorded: dict[tuple[str, int], list[tuple[int, str | None]]] = {}  # (role, version) -> (snapshot, sha256)

    def record_snapshots(self, snapshots: list[SignedVersion]) -> None:
        """What each verified snapshot lists: role versions and, where it recorded them, their hashes."""
        for snapshot in (s for s in snapshots if s.verified):
            for filename, meta in snapshot.md.signed.meta.items():
                digest = (meta.hashes or {}).get("sha256")
                self._recorded.setdefault((meta_role(filename), meta.version), []).append(
                    (snapshot.version, f"sha256:{digest}" if digest else None))

    def check(self, role: str, tags: dict[int, str], delegators: list[_Delegator]) -> list[SignedVersion]:
        """Every kept version of ``role``, each checked against the earliest delegator version, not older than
        the previous version's, whose keys and threshold it meets (monotonic: see the module docstring)."""
        kind = "snapshot" if role == "snapshot" else "targets"
        cap = _LIMITS.snapshot_max_length if kind == "snapshot" else _LIMITS.targets_max_length
        kept, floor = [], 0
        for version in range(1, max(tags, default=0) + 1):
            if version not in tags:
                self.gaps.append((role, version))
                continue
            entry = _load(self.reader, role, version, tags[version], cap, kind)
            kept.append(entry)
            if entry.metadata is not None:
                floor = self._verify(entry, delegators, floor)
        return kept

    def _verify(self, entry: SignedVersion, delegators: list[_Delegator], floor: int) -> int:
        """Check one version's signatures and snapshot records; returns the new floor."""
        md, role, reasons = entry.md, entry.role, []
        for index in range(floor, len(delegators)):
            delegator = delegators[index]
            try:
                delegator.signed.verify_delegate(role, md.signed_bytes, md.signatures)
                if isinstance(md.signed, Targets) and md.signed.delegations is not None and md.signed.delegations.keys:
                    require_own_keyids(md.signed.delegations.keys, f"{role} v{entry.version}")
            except (UnsignedMetadataError, ValueError, TufociError) as e:
                reasons.append(f"{delegator.label}: {e}")
                continue
            recorded = self._recorded.get((role, entry.version), [])
            differs = [v for v, digest in recorded if digest is not None and digest != entry.digest]
            if differs:  # signed, but not the bytes that were published under this version
                entry.problem = (f"signed by {delegator.label}'s keys, but not the bytes snapshot v{differs[0]} "
                                 f"recorded for {role} v{entry.version}")
                return floor
            entry.verified, entry.checked_against, entry.root_version = True, delegator.label, delegator.root_version
            entry.delegator = delegator.signed
            entry.signed_by = _signers(delegator.signed, role, md)
            entry.signed_about = _signed_about(entry, delegator.root)
            entry.snapshot_version = min((v for v, _ in recorded), default=None)
            return index
        tried = "; ".join(reasons[-2:]) or "no verified delegator version to check it against"
        entry.problem = f"signatures do not verify: {tried}"
        return floor


def _delegated(checker: _Checker, tags: dict[tuple[str, str], dict[int, str]],
               versions: dict[str, list[SignedVersion]], roots: list[SignedVersion]) -> None:
    """Delegated roles, breadth first from ``targets``: each against its delegator's verified versions."""
    kept = {role for kind, role in tags if kind == "delegated"}
    queue = ["targets"]
    while queue:
        parent = queue.pop(0)
        for child, delegators in _children(parent, versions[parent], roots, kept).items():
            encoded = ("delegated", encode_role(child))
            if child in versions or encoded not in tags:
                continue
            versions[child] = checker.check(child, tags[encoded], delegators)
            queue.append(child)


def _children(parent: str, kept: list[SignedVersion], roots: list[SignedVersion],
              encoded: set[str]) -> dict[str, list[_Delegator]]:
    """Role name -> the verified versions of ``parent`` that delegate it, in version order.

    Hashed bins are looked up by the tags the registry has (``encoded`` role names), never enumerated:
    a signed ``bit_length`` of 32 names four billion bins.
    """
    children: dict[str, list[_Delegator]] = {}
    for entry in kept:
        delegations = entry.md.signed.delegations if entry.verified else None
        if delegations is None:
            continue
        assert entry.root_version is not None  # set with verified
        root = next(r.md.signed for r in roots if r.version == entry.root_version)
        delegator = _Delegator(f"{parent} v{entry.version}", entry.md.signed, entry.root_version, root)
        bins = delegations.succinct_roles
        names = list(delegations.roles or {}) if bins is None else sorted(
            n for n in encoded if encode_role(n) == n and bins.is_delegated_role(n))
        for name in names:
            children.setdefault(name, []).append(delegator)
    return children


def _entries(role: str, kept: list[SignedVersion]) -> list[TagEntry]:
    """Walk a role's verified versions in order: each (name, digest) run becomes one entry."""
    entries: list[TagEntry] = []
    open_entries: dict[str, TagEntry] = {}
    unknown = [v.version for v in kept if not v.verified]
    present = {v.version for v in kept}
    unknown += [v for v in range(1, max(present, default=0) + 1) if v not in present]
    for entry in (v for v in kept if v.verified):
        listed = {}
        for name, info in entry.md.signed.targets.items():
            if _covers(role, entry, name):
                listed[name] = ("sha256:" + str(info.hashes.get("sha256", "")), info.length)
        for name, current in list(open_entries.items()):
            if listed.get(name) != (current.digest, current.length):
                current.ended_by = entry
                del open_entries[name]
            else:
                current.last = entry
        for name, (digest, length) in listed.items():
            if name not in open_entries:
                open_entries[name] = TagEntry(name, digest, length, role, entry, entry, None)
                entries.append(open_entries[name])
    for e in entries:
        end = e.ended_by.version if e.ended_by else float("inf")
        e.unknown_between = sorted(v for v in unknown if e.first.version < v < end)
    return entries


def _covers(role: str, entry: SignedVersion, name: str) -> bool:
    """Whether the delegation this version was checked against lets it sign ``name`` (client workflow 5.6.7.2)."""
    if role == "targets":
        return True
    delegator = entry.delegator  # a delegated role's is a targets role that delegates it
    assert isinstance(delegator, Targets) and delegator.delegations is not None
    delegations = delegator.delegations
    if delegations.succinct_roles is not None:
        return delegations.succinct_roles.get_role_for_target(name) == role
    delegated: DelegatedRole = (delegations.roles or {})[role]
    return delegated.is_delegated_path(name)
