"""Verify a whole Notary collection in Notary's own format before anything is translated.

The order is Notary's client update (and TUF's client workflow): the root chain from the root the user pins
to the newest, then timestamp → snapshot → targets → delegations breadth-first, each file checked against the
length and hashes its parent signed, each signature threshold over the keys its delegator listed, every
expiry. The result is a :class:`Collection`: only verified content, with what was odd about it reported.

Pure: the bytes come from a :class:`~tufoci.repo_tool.notary_source.NotarySource`; nothing here does I/O.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.x509.oid import NameOID

from tufoci.errors import UsageError
from tufoci.layout_spec import TOP_LEVEL_ROLES
from tufoci.repo_tool.notary_format import (
    NotaryKey,
    check_file_meta,
    load_envelope,
    parse_date,
    parse_key,
    reject,
    sha256_hex_of_b64,
    verify_signatures,
)
from tufoci.repo_tool.notary_source import MAX_ROOT_VERSIONS, NotarySource

MAX_ROLES = 1000
MAX_DEPTH = 16


@dataclass(frozen=True)
class RootPin:
    """What the user trusts: a root file's sha256, a root certificate's sha256 fingerprint, or (asked) TOFU."""

    sha256: str | None = None
    cert_fingerprint: str | None = None
    tofu: bool = False

    def __post_init__(self) -> None:
        if sum((self.sha256 is not None, self.cert_fingerprint is not None, self.tofu)) != 1:
            raise UsageError("pin the Notary root: give one of --root-sha256, --root-cert-fingerprint or --tofu")


@dataclass(frozen=True)
class NotaryTarget:
    name: str
    sha256: str  # hex
    length: int


@dataclass
class NotaryRole:
    """A targets role as verified: its keys, threshold, effective path prefixes and its targets."""

    name: str
    parent: str | None
    keys: dict[str, NotaryKey]
    threshold: int
    paths: list[str] | None  # effective prefixes (restricted by the parent's); None: top-level targets
    published: bool = False
    version: int | None = None
    expires: datetime.datetime | None = None
    targets: dict[str, NotaryTarget] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)

    def covers(self, name: str) -> bool:
        """Notary's path check: a delegation may answer for a name only under one of its path prefixes."""
        return self.paths is None or any(name.startswith(p) for p in self.paths)


@dataclass
class Collection:
    """A verified collection: the root in force, every targets role in breadth-first order, and a report."""

    gun: str
    root_version: int
    root_sha256: str
    root_keys: list[NotaryKey]
    root_threshold: int
    roles: dict[str, NotaryRole]
    versions: dict[str, int]
    expired: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _signed_role(signed: dict, role: str, where: str) -> tuple[list[str], Any]:
    """The role's key ids and its threshold as the document states it (verify_signatures checks it)."""
    entry = (signed.get("roles") or {}).get(role)
    if not isinstance(entry, dict) or not isinstance(entry.get("keyids"), list):
        raise reject(where, f"the root does not define the {role} role")
    return entry["keyids"], entry.get("threshold")


def _root_keys(signed: dict, where: str) -> dict[str, NotaryKey]:
    keys = signed.get("keys")
    if not isinstance(keys, dict):
        raise reject(where, "root has no keys")
    return {keyid: parse_key(keyid, key, where) for keyid, key in keys.items()}


class _Verifier:
    def __init__(
        self, source: NotarySource, pin: RootPin, *, allow_expired: bool, now: datetime.datetime,
        known_versions: dict[str, int] | None,
    ) -> None:
        self.source, self.pin, self.allow_expired, self.now = source, pin, allow_expired, now
        self.known = known_versions or {}
        self.gun = source.gun
        self.expired: list[str] = []
        self.warnings: list[str] = []
        self.versions: dict[str, int] = {}
        self.root_keys: dict[str, NotaryKey] = {}  # of the newest root, once verified

    def where(self, role: str) -> str:
        return self.source.describe(role)

    def check_expiry(self, signed: dict, where: str) -> datetime.datetime:
        expires = parse_date(signed.get("expires"), where)
        if expires <= self.now:
            if not self.allow_expired:
                raise reject(where, f"expired at {expires:%Y-%m-%dT%H:%M:%SZ} (import it anyway with --allow-expired)")
            self.expired.append(f"{where}: expired at {expires:%Y-%m-%dT%H:%M:%SZ}")
        return expires

    def check_rollback(self, role: str, version: int, where: str) -> None:
        # client workflow 5.4.3 / 5.5.5: a version lower than one seen before is a rollback
        seen = self.known.get(role)
        if seen is not None and version < seen:
            raise reject(where, f"rollback: version {version} is lower than version {seen} seen before")
        self.versions[role] = version

    # -- root ------------------------------------------------------------------------------------------
    def root_chain(self) -> list[bytes]:
        chain: list[bytes] = []
        for version in range(1, MAX_ROOT_VERSIONS + 1):
            data = self.source.root_version(version)
            if data is None:
                break
            chain.append(data)
        current = self.source.current("root")
        if not chain:
            if current is None:
                raise reject(self.where("root"), "no root.json")
            return [current]
        if current is not None and current != chain[-1]:
            raise reject(self.where("root"), f"root.json is not the newest versioned root ({len(chain)}.root.json)")
        return chain

    def pinned_index(self, chain: list[bytes]) -> int:
        where = self.where("root")
        if self.pin.tofu:
            self.warnings.append(
                f"{where}: root trusted on first use (sha256 {hashlib.sha256(chain[0]).hexdigest()})"
            )
            return 0
        for index, data in enumerate(chain):
            if self.pin.sha256 is not None and hashlib.sha256(data).hexdigest() == self.pin.sha256.lower():
                return index
            if self.pin.cert_fingerprint is not None:
                signed = load_envelope(data, where, "Root")["signed"]
                keyids, _ = _signed_role(signed, "root", where)
                keys = _root_keys(signed, where)
                wanted = self.pin.cert_fingerprint.lower().replace(":", "")
                if any(keys[k].certificate_fingerprint() == wanted for k in keyids if k in keys):
                    return index
        what = f"sha256 {self.pin.sha256}" if self.pin.sha256 else f"certificate fingerprint {self.pin.cert_fingerprint}"
        raise reject(where, f"no root version matches the pinned {what}")

    def check_root_certificates(self, keys: dict[str, NotaryKey], keyids: list[str], where: str, *, final: bool) -> None:
        # notary trustpinning: root keys are x509 certificates whose CN is the GUN, valid now
        for keyid in keyids:
            key = keys.get(keyid)
            if key is None:
                raise reject(where, f"root role lists key {keyid} that the root does not define")
            if key.certificate is None:
                raise reject(where, f"root key {keyid} is not an x509 certificate ({key.keytype})")
            cns = [a.value for a in key.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            if cns != [self.gun]:
                raise reject(where, f"root certificate {keyid} has CN {cns!r}, expected the GUN {self.gun!r}")
            if final:
                start = key.certificate.not_valid_before_utc
                end = key.certificate.not_valid_after_utc
                if not start <= self.now <= end:
                    message = f"root certificate {keyid} is valid {start:%Y-%m-%d} to {end:%Y-%m-%d}, not now"
                    if not self.allow_expired:
                        raise reject(where, message + " (import it anyway with --allow-expired)")
                    self.expired.append(f"{where}: {message}")

    def verify_root(self) -> tuple[dict, bytes]:
        chain = self.root_chain()
        start = self.pinned_index(chain)
        previous: dict | None = None
        for index in range(start, len(chain)):
            where = self.where("root") if len(chain) == 1 else f"{self.gun}/{index + 1}.root.json"
            envelope = load_envelope(chain[index], where, "Root")
            signed = envelope["signed"]
            keys = _root_keys(signed, where)
            keyids, threshold = _signed_role(signed, "root", where)
            for role in TOP_LEVEL_ROLES:
                _signed_role(signed, role, where)
            if previous is not None:
                # client workflow 5.3.4-5.3.5: the new root is signed by the old root's keys, and its own
                old_ids, old_threshold = _signed_role(previous, "root", where)
                verify_signatures(envelope, self.root_keys, old_ids, old_threshold, where + " (by the previous root)")
                if signed["version"] != previous["version"] + 1:
                    raise reject(where, f"root version {signed['version']} does not follow {previous['version']}")
            verify_signatures(envelope, keys, keyids, threshold, where)
            self.check_root_certificates(keys, keyids, where, final=index == len(chain) - 1)
            previous, self.root_keys = signed, keys
        assert previous is not None
        self.check_expiry(previous, self.where("root"))  # client workflow 5.3.10
        self.check_rollback("root", previous["version"], self.where("root"))
        return previous, chain[-1]

    # -- timestamp, snapshot, targets --------------------------------------------------------------------
    def role_file(self, role: str, meta: object, where_from: str) -> bytes:
        where = self.where(role)
        if not isinstance(meta, dict) or not isinstance(meta.get("hashes"), dict):
            raise reject(where_from, f"no signed hashes for {role}")
        digest = sha256_hex_of_b64(meta["hashes"].get("sha256"), where_from)
        data = self.source.by_hash(role, digest)
        if data is None:
            raise reject(where, f"missing, though {where_from} lists it")
        check_file_meta(meta, data, where)
        return data

    def verify_top(self, root: dict, role: str, data: bytes, role_type: str) -> dict:
        where = self.where(role)
        envelope = load_envelope(data, where, role_type)
        keyids, threshold = _signed_role(root, role, self.where("root"))
        verify_signatures(envelope, self.root_keys, keyids, threshold, where)
        self.check_rollback(role, envelope["signed"]["version"], where)
        self.check_expiry(envelope["signed"], where)
        return envelope["signed"]

    def run(self) -> Collection:
        root, root_bytes = self.verify_root()
        timestamp_bytes = self.source.current("timestamp")
        if timestamp_bytes is None:
            raise reject(self.where("timestamp"), "missing (nothing published?)")
        timestamp = self.verify_top(root, "timestamp", timestamp_bytes, "Timestamp")
        snapshot_meta = (timestamp.get("meta") or {}).get("snapshot")
        snapshot = self.verify_top(
            root, "snapshot", self.role_file("snapshot", snapshot_meta, self.where("timestamp")), "Snapshot"
        )
        meta = snapshot.get("meta")
        if not isinstance(meta, dict):
            raise reject(self.where("snapshot"), "no meta")
        if "root" in meta:
            check_file_meta(meta["root"], root_bytes, self.where("root") + " (against the snapshot)")
        targets_bytes = self.role_file("targets", meta.get("targets"), self.where("snapshot"))
        top = NotaryRole("targets", None, {}, 1, None, published=True)
        targets = self.verify_top(root, "targets", targets_bytes, "Targets")
        roles = {"targets": top}
        self.fill(top, targets)
        self.delegations(roles, meta, targets)
        listed = set(meta) - set(roles) - {"root", "targets"}
        for extra in sorted(listed):
            self.warnings.append(f"{self.where('snapshot')}: lists {extra!r}, which no role delegates (ignored)")
        keyids, threshold = _signed_role(root, "root", self.where("root"))
        return Collection(
            self.gun, root["version"], hashlib.sha256(root_bytes).hexdigest(), [self.root_keys[k] for k in keyids],
            threshold, roles, self.versions, self.expired, self.warnings,
        )

    def fill(self, role: NotaryRole, signed: dict) -> None:
        where = self.where(role.name)
        role.version, role.expires = signed["version"], parse_date(signed.get("expires"), where)
        entries = signed.get("targets")
        if not isinstance(entries, dict):
            raise reject(where, "targets is not an object")
        for name, info in entries.items():
            if not isinstance(info, dict) or not isinstance(info.get("hashes"), dict):
                raise reject(where, f"target {name!r} has no hashes")
            length = info.get("length")
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise reject(where, f"target {name!r} has length {length!r}")
            role.targets[name] = NotaryTarget(name, sha256_hex_of_b64(info["hashes"].get("sha256"), where), length)
            if not role.covers(name):
                self.warnings.append(f"{where}: target {name!r} is outside the role's paths (Notary ignores it)")

    # -- delegations -------------------------------------------------------------------------------------
    def delegations(self, roles: dict[str, NotaryRole], meta: dict, targets: dict) -> None:
        # breadth-first, as Notary walks them; only published roles delegate further
        queue = ["targets"]
        signed_by_role = {"targets": targets}
        while queue:
            parent = roles[queue.pop(0)]
            signed = signed_by_role.pop(parent.name)
            where = self.where(parent.name)
            delegations = signed.get("delegations") or {}
            if not isinstance(delegations, dict):
                raise reject(where, "delegations is not an object")
            keys = {k: parse_key(k, v, where) for k, v in (delegations.get("keys") or {}).items()}
            for entry in delegations.get("roles") or []:
                child = self.delegated_role(parent, entry, keys, where, roles)
                roles[child.name] = child
                parent.children.append(child.name)
                if len(roles) > MAX_ROLES or child.name.count("/") > MAX_DEPTH:
                    raise reject(where, f"more than {MAX_ROLES} roles or deeper than {MAX_DEPTH} levels")
                if child.name not in meta:
                    self.warnings.append(f"{where}: delegates {child.name!r}, which was never published")
                    continue
                data = self.role_file(child.name, meta[child.name], self.where("snapshot"))
                envelope = load_envelope(data, self.where(child.name), "Targets")
                verify_signatures(envelope, child.keys, list(child.keys), child.threshold, self.where(child.name))
                self.check_rollback(child.name, envelope["signed"]["version"], self.where(child.name))
                self.check_expiry(envelope["signed"], self.where(child.name))
                child.published = True
                self.fill(child, envelope["signed"])
                signed_by_role[child.name] = envelope["signed"]
                queue.append(child.name)

    def delegated_role(
        self, parent: NotaryRole, entry: object, keys: dict[str, NotaryKey], where: str, roles: dict
    ) -> NotaryRole:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise reject(where, "a delegation has no name")
        name = entry["name"]
        if name.rpartition("/")[0] != parent.name or name in roles:
            raise reject(where, f"delegation {name!r} is not a new direct child of {parent.name!r}")
        if entry.get("path_hash_prefixes"):
            raise reject(where, f"delegation {name!r} uses path_hash_prefixes, which tufoci does not translate")
        keyids, paths = entry.get("keyids"), entry.get("paths")
        if not isinstance(keyids, list) or not all(k in keys for k in keyids):
            raise reject(where, f"delegation {name!r} lists a key id the delegations do not define")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise reject(where, f"delegation {name!r} has no list of paths")
        threshold = entry.get("threshold")
        if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= len(set(keyids)):
            raise reject(where, f"delegation {name!r} has threshold {threshold!r} for {len(set(keyids))} key(s)")
        if parent.paths is not None:
            # notary tuf/data/roles.go Restrict: a child keeps only the paths inside one of its parent's
            paths = [p for p in paths if any(p.startswith(q) for q in parent.paths)]
        return NotaryRole(name, parent.name, {k: keys[k] for k in keyids}, threshold, sorted(set(paths)))


def verify_collection(
    source: NotarySource,
    pin: RootPin,
    *,
    allow_expired: bool = False,
    now: datetime.datetime | None = None,
    known_versions: dict[str, int] | None = None,
) -> Collection:
    """Verify ``source``'s collection against ``pin``; only a fully verified collection comes back.

    ``known_versions`` (role → version seen by an earlier import) turns a lower version into a rollback.

    Raises:
        NotaryRejectedError: any check failed (exit 12), naming the file and the check.
        RegistryError: the source could not be read.
    """
    verifier = _Verifier(
        source, pin, allow_expired=allow_expired,
        now=now or datetime.datetime.now(datetime.UTC), known_versions=known_versions,
    )
    return verifier.run()
