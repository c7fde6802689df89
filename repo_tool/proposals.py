"""Threshold signing through the registry: proposals and detached signatures.

When one maintainer cannot meet a role's threshold alone, the new version is
pushed as a *proposal* (``staged.<enc(role)>.<N>``, the metadata without
signatures), and every maintainer adds their signature as a separate artifact
(``sig.<enc(role)>.<N>.<key>``). No two signers ever write the same tag, so
concurrent signers never lose each other's work, and nothing but the registry
is shared. ``publish`` merges the valid signatures once the threshold holds.
Clients never read these tags (layout §9).

A signature counts only if its key is one of the role's keys, it is the first
for that key, it is over exactly the proposal's canonical bytes, and it
verifies; ``status`` says which signatures did not count and why. A new root
counts against both the current root's threshold and its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import Signature, Signer
from tuf.api.metadata import Metadata, Root, Targets

from tufoci.errors import ConcurrentPublishError, MetadataRejectedError, NotFoundError, PublishError, SigningKeyError
from tufoci.keyids import require_own_keyids
from tufoci.layout_spec import (
    ANNOTATION_DISCARDED,
    ANNOTATION_KEYID,
    ANNOTATION_PROPOSER,
    ANNOTATION_PROPOSER_MACHINE,
    ANNOTATION_ROLE,
    ANNOTATION_VERSION,
    EMPTY_CONFIG,
    MANIFEST_MEDIA_TYPE,
    MAX_METADATA_BYTES,
    METADATA_MEDIA_TYPE,
    ONLINE_ROLES,
    PROPOSAL_CONFIG_MEDIA_TYPE,
    PROPOSAL_TAG_PREFIX,
    SIGNATURE_CONFIG_MEDIA_TYPE,
    SIGNATURE_MEDIA_TYPE,
    build_artifact_manifest,
    encode_role,
    parse_artifact_manifest,
    parse_metadata_tag,
    proposal_tag,
    signature_tag,
)
from tufoci.repo_tool.versions import to_bytes
from tufoci.store.base import RepositoryStore

MAX_SIGNATURE_BYTES = 64 * 1024


class ProposalState(enum.Enum):
    """Where an open proposal stands (tuf-on-ci's signing-session states): what happens to it next."""

    SHORT = "short"  # a threshold is not met: it needs signatures
    COMPLETE = "complete"  # every threshold met: the next publish with the online key makes it live
    HELD = "held"  # every threshold met, but it waits for another version (plan.Plan.held says why)
    AWAITING_ONLINE_KEY = "awaiting-online-key"  # every threshold met; this machine cannot sign snapshot/timestamp

    @classmethod
    def of(cls, complete: bool, held: str | None, *, online_key_missing: bool = False) -> ProposalState:
        """The state of a proposal that meets every threshold (``complete``) or not, held back or not, when
        this publish had the online key or not."""
        if not complete:
            return cls.SHORT
        if held is None:
            return cls.COMPLETE
        return cls.AWAITING_ONLINE_KEY if online_key_missing else cls.HELD


@dataclass(frozen=True)
class SignatureCheck:
    """One detached signature and whether it counts."""

    keyid: str
    counted: bool
    reason: str  # "valid" or why it does not count


@dataclass(frozen=True)
class ThresholdState:
    label: str  # "targets", or "root v3" / "root v4" for the two root checks
    have: int
    need: int
    missing_keyids: tuple[str, ...]


@dataclass(frozen=True)
class DetachedSignature:
    """A signature artifact as read from the registry (untrusted until evaluated)."""

    keyid: str
    signature: Signature | None
    signed_digest: str
    problem: str | None


@dataclass
class Proposal:
    """A proposed version of a role and the signatures collected for it so far."""

    role: str
    version: int
    metadata: Metadata
    proposer: str
    machine: str | None = None  # the proposing machine's random id (identity.machine_id), when recorded
    collected: list[DetachedSignature] = field(default_factory=list)
    checks: list[SignatureCheck] = field(default_factory=list)
    thresholds: list[ThresholdState] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return thresholds_met(self.thresholds)

    @property
    def signed_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.metadata.signed_bytes).hexdigest()


def _signature_payload(signature: Signature, signed_digest: str) -> bytes:
    """The TUF signature object (every field: sigstore bundles ride along) plus what it signed."""
    return json.dumps({**signature.to_dict(), "signed": signed_digest}, sort_keys=True).encode()


def _upload_artifact(store: RepositoryStore, config_media_type: str, layer_media_type: str, data: bytes,
                     annotations: dict[str, str]) -> bytes:
    """Upload an artifact's blobs; returns the manifest bytes to tag."""
    store.put_blob(EMPTY_CONFIG)
    store.put_blob(data)
    return build_artifact_manifest(config_media_type, layer_media_type, data, annotations)


def push_proposal(store: RepositoryStore, role: str, metadata: Metadata, proposer: str,
                  machine: str | None = None, *, replace: Proposal | None = None) -> Proposal:
    """Push ``metadata`` without its signatures as the proposal of its version,
    then each of its signatures as a detached signature artifact.

    ``replace`` is the open proposal of the same version that this one folds in
    (``publish --fold``): its tag is swapped only if it is still that proposal,
    and signatures collected for it stop counting (they signed other bytes).

    Raises:
        PublishError: a proposal for this version is open (and is not ``replace``).
        ConcurrentPublishError: someone else wrote the proposal's tag meanwhile.
    """
    unsigned = Metadata.from_bytes(to_bytes(metadata))
    unsigned.signatures.clear()
    data = to_bytes(unsigned)
    version = unsigned.signed.version
    notes = {ANNOTATION_ROLE: role, ANNOTATION_VERSION: str(version), ANNOTATION_PROPOSER: proposer}
    if machine:
        notes[ANNOTATION_PROPOSER_MACHINE] = machine
    manifest = _upload_artifact(store, PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, data, notes)
    tag = proposal_tag(role, version)
    try:
        existing = store.get_manifest(tag)
    except NotFoundError:
        existing = None
    open_now = _read_proposal(store, tag, lambda *_: True) if existing is not None else None
    if replace is not None and not (isinstance(open_now, Proposal) and open_now.signed_digest == replace.signed_digest):
        raise ConcurrentPublishError(f"the open proposal for {role} v{version} changed while folding into it; "
                                     "your staged changes are kept: review it again with 'tufoci status'")
    if replace is None and isinstance(open_now, Proposal):
        raise PublishError(f"a proposal for {role} v{version} is already open: sign it or discard it first")
    # compare-and-swap: two maintainers proposing at once must not overwrite each other
    if store.replace_manifest(tag, manifest, MANIFEST_MEDIA_TYPE, existing.digest if existing else None) is None:
        raise ConcurrentPublishError(
            f"another maintainer proposed {role} v{version} at the same time; your staged changes are kept"
        )
    proposal = Proposal(role, version, unsigned, proposer)
    push_signatures(store, proposal, dict(metadata.signatures))
    return proposal


def sign_proposal(proposal: Proposal, signers: dict[str, Signer]) -> dict[str, Signature]:
    """Signatures over the proposal's canonical bytes, one per signer."""
    signatures = {}
    for keyid, signer in signers.items():
        try:
            signatures[keyid] = signer.sign(proposal.metadata.signed_bytes)
        except SigningKeyError:
            raise  # names the key already (keys.VerifyingSigner)
        except Exception as e:  # signer backends raise their own errors (HSM, KMS, files)
            raise SigningKeyError(f"signing {proposal.role} v{proposal.version} failed: {e}") from e
    return signatures


def push_signatures(store: RepositoryStore, proposal: Proposal, signatures: dict[str, Signature]) -> list[str]:
    """Push each signature as its own artifact (its own tag: concurrent signers never collide)."""
    tags = []
    for keyid, signature in signatures.items():
        manifest = _upload_artifact(
            store, SIGNATURE_CONFIG_MEDIA_TYPE, SIGNATURE_MEDIA_TYPE, _signature_payload(signature, proposal.signed_digest),
            {ANNOTATION_ROLE: proposal.role, ANNOTATION_VERSION: str(proposal.version), ANNOTATION_KEYID: keyid},
        )
        tag = signature_tag(proposal.role, proposal.version, keyid)
        store.put_manifest(tag, manifest, MANIFEST_MEDIA_TYPE)
        tags.append(tag)
    return tags


def discard_proposal(store: RepositoryStore, role: str, version: int, by: str) -> str:
    """Replace a proposal with a tombstone: nothing live changes, signing it becomes impossible."""
    manifest = _upload_artifact(store, PROPOSAL_CONFIG_MEDIA_TYPE, METADATA_MEDIA_TYPE, b"{}",
                                {ANNOTATION_ROLE: role, ANNOTATION_VERSION: str(version), ANNOTATION_DISCARDED: by})
    tag = proposal_tag(role, version)
    store.put_manifest(tag, manifest, MANIFEST_MEDIA_TYPE)
    return tag


@dataclass(frozen=True)
class IgnoredProposal:
    """A ``staged.*`` tag that is not an open proposal, for a reason maintainers should see (layout §9.4).

    Tombstones and stale proposals (a version that went live or was overtaken) are
    history, not listed; everything else a push can leave there is.
    """

    tag: str
    reason: str
    role: str | None = None
    version: int | None = None

    def to_dict(self) -> dict:
        return {"tag": self.tag, "role": self.role, "version": self.version, "reason": self.reason}


def read_proposals(
    store: RepositoryStore,
    is_open: Callable[[str, int], bool] = lambda role, version: True,
) -> list[Proposal]:
    """The proposals ``is_open(role, version)`` asks for, not discarded, with their signatures."""
    return scan_proposals(store, is_open)[0]


def scan_proposals(
    store: RepositoryStore,
    is_open: Callable[[str, int], bool] = lambda role, version: True,
) -> tuple[list[Proposal], list[IgnoredProposal]]:
    """(open proposals with their signatures, proposal tags ignored and why).

    Only small manifests are read to decide; blobs are fetched for open
    proposals only, and an unreadable artifact is ignored (a proposal) or
    reported (a signature), never fatal: one bad artifact must not stop
    anyone from signing.
    """
    tags = store.list_tags()
    proposals, ignored = [], []
    parsed = {t: parse_metadata_tag(t) for t in sorted(tags)}
    for tag in sorted(t for t in tags if t.startswith(PROPOSAL_TAG_PREFIX)):
        proposal = _read_proposal(store, tag, is_open)
        if isinstance(proposal, IgnoredProposal):
            ignored.append(proposal)
        if not isinstance(proposal, Proposal):
            continue
        key = (encode_role(proposal.role), proposal.version)
        proposal.collected = [_read_signature(store, t, proposal) for t, p in parsed.items()
                              if p and p.kind == "signature" and (p.role, p.version) == key]
        proposals.append(proposal)
    return proposals, ignored


def _read_proposal(store: RepositoryStore, tag: str,
                   is_open: Callable[[str, int], bool]) -> Proposal | IgnoredProposal | None:
    """The open proposal under ``tag``, why it is ignored, or None for a tombstone or a stale proposal."""
    try:
        artifact = parse_artifact_manifest(store.get_manifest(tag).data, PROPOSAL_CONFIG_MEDIA_TYPE)
        notes = artifact.annotations
        role, version = notes[ANNOTATION_ROLE], int(notes[ANNOTATION_VERSION])
    except Exception as e:  # noqa: BLE001 - any unreadable proposal is ignored, see scan_proposals
        return IgnoredProposal(tag, f"malformed proposal artifact ({type(e).__name__})")
    if ANNOTATION_DISCARDED in notes:
        return None
    if tag != proposal_tag(role, version):  # a proposal must sit under its own tag
        return IgnoredProposal(tag, f"misplaced: it names {role} v{version}, whose tag is {proposal_tag(role, version)}",
                               role, version)
    if role in ONLINE_ROLES:
        return IgnoredProposal(tag, "snapshot and timestamp are never proposed", role, version)
    if not is_open(role, version):
        return None  # stale
    try:
        if artifact.layer.media_type != METADATA_MEDIA_TYPE:
            raise ValueError(f"layer media type {artifact.layer.media_type}")
        data = store.get_blob(artifact.layer.digest, max_bytes=min(artifact.layer.size, MAX_METADATA_BYTES))
        metadata = Metadata.from_bytes(data)
        metadata.signed_bytes  # noqa: B018 - TUF signs canonical JSON: a float, for one, has none
    except Exception as e:  # noqa: BLE001 - see scan_proposals
        text = (str(e) or str(e.__cause__ or "")).strip().splitlines()
        return IgnoredProposal(tag, f"not TUF metadata that can be signed ({type(e).__name__}"
                               f"{': ' + text[0][:120] if text else ''})", role, version)
    expected_type = "root" if role == "root" else "targets"
    if metadata.signed.type != expected_type:
        return IgnoredProposal(tag, f"{metadata.signed.type} metadata, but {role} is a {expected_type} role", role, version)
    if type(metadata.signed.version) is not int or metadata.signed.version != version:
        return IgnoredProposal(tag, f"its metadata says version {metadata.signed.version!r}, its tag {version}",
                               role, version)
    listed = metadata.signed.keys if isinstance(metadata.signed, Root) else \
        (metadata.signed.delegations.keys if metadata.signed.delegations else None)
    try:
        require_own_keyids(listed or {}, f"proposal {tag}")
    except MetadataRejectedError as e:  # issue 20.3: nobody may sign or publish it
        return IgnoredProposal(tag, str(e), role, version)
    return Proposal(role, version, metadata, notes.get(ANNOTATION_PROPOSER, "unknown"),
                    notes.get(ANNOTATION_PROPOSER_MACHINE))


def _read_signature(store: RepositoryStore, tag: str, proposal: Proposal) -> DetachedSignature:
    try:
        artifact = parse_artifact_manifest(store.get_manifest(tag).data, SIGNATURE_CONFIG_MEDIA_TYPE)
        data = store.get_blob(artifact.layer.digest, max_bytes=min(artifact.layer.size, MAX_SIGNATURE_BYTES))
        payload = json.loads(data)
        signed = str(payload.pop("signed"))
        signature = Signature.from_dict(payload)
        if not isinstance(signature.keyid, str) or not isinstance(signature.signature, str):
            raise TypeError("keyid and sig must be strings")  # from_dict does not check types
    except Exception as e:  # noqa: BLE001 - reported as a signature that does not count
        return DetachedSignature(tag, None, "", f"unreadable signature artifact {tag}: {type(e).__name__}")
    if tag != signature_tag(proposal.role, proposal.version, signature.keyid):
        # a signature must sit under its key's own tag, so nobody can shadow another signer
        return DetachedSignature(signature.keyid, None, signed, f"misplaced signature artifact {tag}")
    return DetachedSignature(signature.keyid, signature, signed, None)


def evaluate(proposal: Proposal, delegators: list[tuple[str, Root | Targets]]) -> Metadata:
    """Decide which signatures count; returns the proposal with those signatures merged.

    ``delegators`` are the (label, metadata) pairs whose keys and threshold the
    role must satisfy: the delegating role, or for root the current root and
    the proposed root itself.
    """
    checks: list[SignatureCheck] = []
    merged: dict[str, Signature] = {}
    payload = proposal.metadata.signed_bytes
    role_keys = [(label, delegator.get_delegated_role(proposal.role).keyids, delegator) for label, delegator in delegators]
    seen: set[str] = set()
    for item in proposal.collected:
        if item.signature is None:
            checks.append(SignatureCheck(item.keyid, False, item.problem or "malformed"))
            continue
        if item.keyid in seen:
            checks.append(SignatureCheck(item.keyid, False, "duplicate signature by the same key"))
            continue
        if item.signed_digest != proposal.signed_digest:
            checks.append(SignatureCheck(item.keyid, False, "signed different bytes (an older or another proposal)"))
            continue
        holders = [delegator for _, keyids, delegator in role_keys if item.keyid in keyids]
        if not holders:
            checks.append(SignatureCheck(item.keyid, False, f"key is not a {proposal.role} key"))
            continue
        key = holders[0].get_key(item.keyid)
        try:
            key.verify_signature(item.signature, payload)
        except (UnverifiedSignatureError, VerificationError):  # VerificationError: e.g. a sig that is not hex
            checks.append(SignatureCheck(item.keyid, False, "bad signature"))
            continue
        seen.add(item.keyid)  # only a valid signature can make a later one a duplicate
        checks.append(SignatureCheck(item.keyid, True, "valid"))
        merged[item.keyid] = item.signature
    proposal.checks = checks
    proposal.thresholds = threshold_states(set(merged), delegators, proposal.role)
    signed = Metadata.from_bytes(to_bytes(proposal.metadata))
    signed.signatures.clear()
    signed.signatures.update(merged)
    return signed


def thresholds_met(thresholds: list[ThresholdState]) -> bool:
    """Whether every threshold a version must meet is met (and there is one to meet)."""
    return bool(thresholds) and all(t.have >= t.need for t in thresholds)


def threshold_states(valid_keyids: set[str], delegators: list[tuple[str, Root | Targets]], role: str) -> list[ThresholdState]:
    """Per delegator: how many of the role's keys have signed, of how many needed, and who is missing."""
    states = []
    for label, delegator in delegators:
        delegated = delegator.get_delegated_role(role)
        states.append(ThresholdState(
            label,
            sum(1 for k in delegated.keyids if k in valid_keyids),
            delegated.threshold,
            tuple(k for k in delegated.keyids if k not in valid_keyids),
        ))
    return states
