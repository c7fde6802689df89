"""Creating a trust repository: root, targets, snapshot, timestamp, published once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from securesystemslib.signer import SecretsHandler
from tuf.api.metadata import Metadata, Role, Root, Snapshot, Targets, Timestamp

from tufoci.atomic_file import atomic_write
from tufoci.client.genesis_root import signed_digest
from tufoci.client.trust_pins import add_pin, default_metadata_repository
from tufoci.errors import PublishError, UsageError
from tufoci.identity import actor_name, machine_id
from tufoci.keys import KeyRef, require_distinct, resolve_key
from tufoci.reference import parse_repository
from tufoci.registry_options import RegistryOptions
from tufoci.repo_tool.expiry import EXPIRY_FIELD, expiry_for, parse_expiry_options
from tufoci.repo_tool.proposals import push_proposal
from tufoci.repo_tool.push import MetadataFile, current_timestamp_digest, push_metadata
from tufoci.repo_tool.review import fingerprint
from tufoci.repo_tool.signing import available_signers, require_threshold, sign_with, threshold_status
from tufoci.repo_tool.versions import meta_file, to_bytes
from tufoci.state import State, now_utc
from tufoci.store import open_repository


@dataclass(frozen=True)
class InitResult:
    scope: str
    metadata_repository: str
    root_file: str
    root_sha256: str
    root_out: str | None
    awaiting: dict[str, dict] | None = None  # role -> {"version", "have", "need"} when v1 awaits signatures
    root_fingerprint: str = ""  # sha256 of root v1's signed part: what its key holders compare before signing


def _role(keys: list[KeyRef], threshold: int, name: str) -> Role:
    require_distinct(keys)
    if threshold < 1 or threshold > len(keys):
        raise UsageError(f"{name} threshold {threshold} is impossible with {len(keys)} key(s)")
    return Role([k.keyid for k in keys], threshold)


def init_scope(
    state: State,
    scope_text: str,
    *,
    root_keys: list[str],
    root_threshold: int = 1,
    targets_keys: list[str],
    targets_threshold: int = 1,
    online_key: str,
    expires: list[str] | tuple[str, ...] = (),
    root_out: str | None = None,
    metadata: str | None = None,
    secrets: SecretsHandler | None = None,
    registry: RegistryOptions = RegistryOptions(),
) -> InitResult:
    """Create and publish version 1 of every top-level role, and pin the new root locally.

    Refuses to touch a metadata repository that already has a timestamp. When this
    machine holds too few root or targets keys, root v1 and targets v1 become
    proposals instead and nothing is published (``awaiting``; see genesis.py).

    Raises:
        UsageError: no keys, or an impossible threshold.
        PublishError: the metadata repository already holds a trust repository, or proposals of version 1.
    """
    scope = parse_repository(scope_text)
    metadata_repo = parse_repository(metadata) if metadata else default_metadata_repository(scope)
    if not root_keys or not targets_keys:
        raise UsageError("init needs at least one --root-key and one --targets-key")
    periods = parse_expiry_options(list(expires))
    roots = [resolve_key(state, k) for k in root_keys]
    targets_refs = [resolve_key(state, k) for k in targets_keys]
    online = resolve_key(state, online_key)

    store = open_repository(metadata_repo, registry=registry)
    if current_timestamp_digest(store) is not None:
        raise PublishError(f"{metadata_repo} already holds a trust repository (it has a timestamp)")

    now = now_utc()
    root = Root(expires=expiry_for(periods, "root", now), consistent_snapshot=True)
    root.unrecognized_fields[EXPIRY_FIELD] = periods
    for key in {k.keyid: k for k in [*roots, *targets_refs, online]}.values():
        root.keys[key.keyid] = key.public
    root.roles["root"] = _role(roots, root_threshold, "root")
    root.roles["targets"] = _role(targets_refs, targets_threshold, "targets")
    root.roles["snapshot"] = Role([online.keyid], 1)
    root.roles["timestamp"] = Role([online.keyid], 1)

    root_md = Metadata(root)
    sign_with(root_md, available_signers(state, root.roles["root"].keyids, secrets))
    targets_md = Metadata(Targets(expires=expiry_for(periods, "targets", now)))
    sign_with(targets_md, available_signers(state, root.roles["targets"].keyids, secrets))
    awaiting = _awaiting(root, {"root": root_md, "targets": targets_md})
    if awaiting:
        # issue 15.1: an initial signing session. Nothing goes live (no timestamp) until the other
        # key holders, who pin the same root file, sign root v1 and targets v1 (genesis.py); then
        # 'publish' or the online service makes root v1, targets v1, snapshot v1 and timestamp v1
        # live together. Targets v1 is proposed even when complete: it goes live with root v1.
        proposed: dict[str, Metadata] = {"targets": targets_md}
        if "root" in awaiting:
            proposed = {"root": root_md, **proposed}
        for role, md in proposed.items():
            push_proposal(store, role, md, actor_name(state, md.signatures), machine_id(state))
        return _pin_and_record(state, scope, metadata_repo, to_bytes(root_md), root_out, roots, targets_refs, online,
                               awaiting=awaiting)
    targets_bytes = to_bytes(targets_md)

    online_signers = available_signers(state, [online.keyid], secrets)
    snapshot_md = Metadata(Snapshot(expires=expiry_for(periods, "snapshot", now)))
    snapshot_md.signed.meta["targets.json"] = meta_file(1, targets_bytes)
    sign_with(snapshot_md, online_signers)
    require_threshold(root, "snapshot", snapshot_md)
    snapshot_bytes = to_bytes(snapshot_md)

    timestamp_md = Metadata(Timestamp(expires=expiry_for(periods, "timestamp", now)))
    timestamp_md.signed.snapshot_meta = meta_file(1, snapshot_bytes)
    sign_with(timestamp_md, online_signers)
    require_threshold(root, "timestamp", timestamp_md)

    root_bytes = to_bytes(root_md)
    push_metadata(
        store,
        [MetadataFile("root", 1, root_bytes), MetadataFile("targets", 1, targets_bytes), MetadataFile("snapshot", 1, snapshot_bytes)],
        MetadataFile("timestamp", 1, to_bytes(timestamp_md)),
        root_version=1,
        expected_timestamp=None,
    )
    return _pin_and_record(state, scope, metadata_repo, root_bytes, root_out, roots, targets_refs, online)


def _awaiting(root: Root, versions: dict[str, Metadata]) -> dict[str, dict]:
    """role -> {"version", "have", "need"} for each version 1 short of its threshold."""
    awaiting = {}
    for role, md in versions.items():
        have, need = threshold_status(root, role, md)
        if have < need:
            awaiting[role] = {"version": 1, "have": have, "need": need}
    return awaiting


def _pin_and_record(state: State, scope, metadata_repo, root_bytes: bytes, root_out: str | None,
                    roots: list[KeyRef], targets_refs: list[KeyRef], online: KeyRef,
                    awaiting: dict[str, dict] | None = None) -> InitResult:
    """Pin root v1 here, write it for consumers, and audit the init."""
    pin = add_pin(state, str(scope), root_data=root_bytes, metadata=str(metadata_repo), replace=True)
    if root_out:
        atomic_write(os.path.abspath(root_out), root_bytes)
    state.record_audit(
        "init",
        scope=str(scope),
        role="root",
        version=1,
        root_sha256=hashlib.sha256(root_bytes).hexdigest(),
        root_keys=[k.keyid for k in roots],
        targets_keys=[k.keyid for k in targets_refs],
        online_key=online.keyid,
        awaiting=awaiting,
    )
    return InitResult(str(scope), str(metadata_repo), pin.root_file, pin.root_sha256, root_out, awaiting,
                      fingerprint(signed_digest(Metadata.from_bytes(root_bytes))))
