"""Publishing staged changes: next targets → snapshot → timestamp, pushed atomically.

The maintainer's starting point is the registry's current state, refreshed
through the same verified TUF workflow consumers use (from the root this
machine pinned), so a hostile registry cannot make a maintainer sign on top of
metadata nobody published.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from securesystemslib.signer import SecretsHandler
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from tufoci.client.refresh import TrustedSession, metadata_store, trusted_session
from tufoci.client.trust_pins import pin_for_scope
from tufoci.errors import NothingStagedError, PublishError
from tufoci.repo_tool.expiry import DEFAULT_EXPIRY, EXPIRY_FIELD
from tufoci.repo_tool.push import MetadataFile, push_metadata
from tufoci.repo_tool.signing import available_signers, require_threshold, sign_with
from tufoci.repo_tool.staging import StagedChange, clear_staged, staged_changes
from tufoci.repo_tool.versions import bump, next_snapshot, next_timestamp, to_bytes
from tufoci.state import State, now_utc


@dataclass
class CurrentState:
    """The verified, current top-level metadata of a trust repository."""

    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    timestamp_manifest_digest: str | None

    @property
    def expiry_periods(self) -> dict[str, str]:
        periods = self.root.signed.unrecognized_fields.get(EXPIRY_FIELD)
        return {**DEFAULT_EXPIRY, **periods} if isinstance(periods, dict) else dict(DEFAULT_EXPIRY)


def load_current(session: TrustedSession) -> CurrentState:
    """Read what the session's refresh verified (ngclient keeps it in its metadata dir)."""

    def read(role: str) -> Metadata:
        with open(os.path.join(session.metadata_dir, f"{role}.json"), "rb") as f:
            return Metadata.from_bytes(f.read())

    return CurrentState(
        read("root"), read("timestamp"), read("snapshot"), read("targets"), session.fetcher.timestamp_manifest_digest
    )


@dataclass
class PublishResult:
    scope: str
    versions: dict[str, int]
    applied: list[StagedChange] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "versions": self.versions,
            "dryRun": self.dry_run,
            "changes": [{"action": c.action, "role": c.role, "target": c.name, "digest": c.digest} for c in self.applied],
        }


def apply_changes(targets: Targets, changes: list[StagedChange]) -> None:
    for change in changes:
        if change.action == "add":
            targets.targets[change.name] = TargetFile(
                length=change.length or 0,
                hashes={"sha256": (change.digest or "").removeprefix("sha256:")},
                path=change.name,
                unrecognized_fields={"custom": change.custom or {}},
            )
        elif change.action == "remove":
            targets.targets.pop(change.name, None)


def publish(
    state: State,
    scope_text: str,
    *,
    secrets: SecretsHandler | None = None,
    dry_run: bool = False,
    **registry_options: object,
) -> PublishResult:
    """Sign and push everything staged for a scope; returns the new versions."""
    pin = pin_for_scope(state, scope_text)
    changes = staged_changes(state, pin.scope)
    if not changes:
        raise NothingStagedError(f"nothing staged for {pin.scope}: stage changes with 'tufoci target add' first")
    unsupported = sorted({c.role for c in changes if c.role != "targets"})
    if unsupported:
        raise PublishError(f"staged changes for delegated role(s) {', '.join(unsupported)} need delegations")

    with trusted_session(state.home, pin, **registry_options) as session:
        current = load_current(session)
    root = current.root.signed
    periods = current.expiry_periods
    now = now_utc()

    targets = current.targets
    apply_changes(targets.signed, changes)
    bump(targets, periods, now)
    sign_with(targets, available_signers(state, root.roles["targets"].keyids, secrets))
    require_threshold(root, "targets", targets)
    targets_bytes = to_bytes(targets)

    online = available_signers(state, root.roles["snapshot"].keyids + root.roles["timestamp"].keyids, secrets)
    snapshot = next_snapshot(current.snapshot, {"targets": (targets.signed.version, targets_bytes)}, periods, now)
    sign_with(snapshot, {k: s for k, s in online.items() if k in root.roles["snapshot"].keyids})
    require_threshold(root, "snapshot", snapshot)
    snapshot_bytes = to_bytes(snapshot)

    timestamp = next_timestamp(current.timestamp, snapshot.signed.version, snapshot_bytes, periods, now)
    sign_with(timestamp, {k: s for k, s in online.items() if k in root.roles["timestamp"].keyids})
    require_threshold(root, "timestamp", timestamp)

    versions = {"root": root.version, "targets": targets.signed.version, "snapshot": snapshot.signed.version,
                "timestamp": timestamp.signed.version}
    result = PublishResult(pin.scope, versions, changes, dry_run)
    if dry_run:
        return result
    push_metadata(
        metadata_store(pin, **registry_options),
        [MetadataFile("targets", targets.signed.version, targets_bytes), MetadataFile("snapshot", snapshot.signed.version, snapshot_bytes)],
        MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
        root_version=root.version,
        expected_timestamp=current.timestamp_manifest_digest,
    )
    with state.transaction() as conn:
        clear_staged(conn, pin.scope, changes)
        state.audit(
            conn,
            "publish",
            scope=pin.scope,
            role="targets",
            version=targets.signed.version,
            versions=versions,
            changes=result.to_dict()["changes"],
        )
    return result
