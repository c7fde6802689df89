"""Publishing: staged changes and complete proposals become the next live versions.

The maintainer's starting point is the registry's current state, refreshed
through the same verified TUF workflow consumers use (from the root this
machine pinned), so a hostile registry cannot make a maintainer sign on top of
metadata nobody published.

For every role with staged changes, tufoci builds the next version and signs it
with the keys this machine holds. If that meets the role's threshold the
version is published; otherwise it is pushed as a proposal for other
maintainers to sign (``tufoci sign``). Complete proposals found in the registry
are published too. Publishing needs the online key (snapshot and timestamp);
without it, ready versions wait as complete proposals that the online service
(``tufoci online-service``, repo_tool/online_service.py) promotes with this same
function (``promote_only``): the same plan, the same compare-and-swap on
``timestamp``, plus its high-water marks.

A change staged for a role whose next version is an open proposal is queued
behind it (it stays staged) or, with ``fold``, folded into a new proposal of
that version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from securesystemslib.signer import SecretsHandler

from tufoci.errors import InterruptedPublishError, NothingStagedError, TufociError
from tufoci.identity import actor_name, machine_id
from tufoci.repo_tool.current import load_current
from tufoci.repo_tool.high_water import check_not_older, check_revival, observed
from tufoci.repo_tool.maintainer import MaintainerSession
from tufoci.repo_tool.plan import Plan
from tufoci.repo_tool.proposals import (
    IgnoredProposal,
    ProposalState,
    ThresholdState,
    push_proposal,
    thresholds_met,
)
from tufoci.repo_tool.push import MetadataFile, push_metadata
from tufoci.repo_tool.signing import sign_with, would_sign
from tufoci.repo_tool.staging import StagedChange, clear_staged, staged_changes, to_row
from tufoci.repo_tool.versions import next_snapshot, next_timestamp, to_bytes
from tufoci.state import State, now_utc

SERVICE_FIELD = "x-tufoci-online-service"  # snapshot field: the publishing service's machine id
ONLINE_SETTLE = 1.0  # seconds an online service waits to see that its timestamp stayed (push_metadata)


@dataclass(frozen=True)
class ProposedVersion:
    """A version this publish leaves (or would leave) as a proposal, and why."""

    version: int
    thresholds: list[ThresholdState]
    held: str | None  # why a version that meets its thresholds waits (plan.Plan.held)
    state: ProposalState

    def to_dict(self) -> dict:
        return {"version": self.version, "held": self.held,
                "thresholds": [{"label": s.label, "have": s.have, "need": s.need} for s in self.thresholds]}


@dataclass
class PublishResult:
    scope: str
    published: dict[str, int] = field(default_factory=dict)  # role -> new live version
    proposed: dict[str, ProposedVersion] = field(default_factory=dict)  # role -> what waits for signatures
    applied: list[StagedChange] = field(default_factory=list)
    dry_run: bool = False
    waiting_for_online_key: bool = False
    awaiting_first_version: list[str] = field(default_factory=list)
    would_sign: dict[str, dict] = field(default_factory=dict)  # dry run: role -> {"version", "keyids"}
    ignored: list[IgnoredProposal] = field(default_factory=list)  # proposal tags nobody can publish, and why
    queued: dict[str, int] = field(default_factory=dict)  # role -> open proposal version its changes wait behind
    folded: dict[str, int] = field(default_factory=dict)  # role -> proposal version replaced (signatures asked again)

    def to_dict(self) -> dict:
        return {
            "scope": self.scope,
            "published": self.published,
            "proposed": {role: p.to_dict() for role, p in self.proposed.items()},
            "dryRun": self.dry_run,
            "waitingForOnlineKey": self.waiting_for_online_key,
            "awaitingFirstVersion": self.awaiting_first_version,
            "wouldSign": self.would_sign,
            "ignoredProposals": [i.to_dict() for i in self.ignored],
            "queued": self.queued,
            "folded": self.folded,
            "changes": [{"action": r.action, "role": r.role, "target": r.name, "digest": r.digest}
                        for r in map(to_row, self.applied)],
        }


def publish(
    session: MaintainerSession,
    *,
    secrets: SecretsHandler | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
    fold: bool = False,
    promote_only: bool = False,
) -> PublishResult:
    """Sign staged changes; publish every version that meets its threshold, propose the rest.

    A dry run decides exactly the same, but loads no key (no passphrase is asked),
    signs nothing and pushes nothing: ``would_sign`` says which roles and versions
    this machine's keys would sign, ``published``/``proposed`` what would be pushed.
    ``promote_only`` is the online service's publish: this machine's staged changes
    are left alone, only complete proposals go live, and never on top of a state
    older than the high-water marks (then raised to what it published).
    ``progress`` is told each slow step (the CLI shows them once a publish takes over a second).

    Raises:
        NothingStagedError: nothing staged and no complete proposal.
        ConcurrentPublishError: another publisher moved ``timestamp`` meanwhile (nothing lost).
        MetadataRejectedError: (``promote_only``) the registry's state is older than the marks.
        InterruptedPublishError: Ctrl-C; its message says whether the new state went live.
        TufociError: signing, the registry or the trust repository failed (nothing went live).
    """
    state, pin = session.state, session.pin
    changes = [] if promote_only else staged_changes(state, pin.scope)
    store = session.store
    progress(f"reading {pin.scope} through a verified refresh")
    with session.view() as live:
        current, genesis = live.current, live.genesis  # genesis, issue 15.1: version 1 is still being signed
        # the online service never signs over a state older than one it saw
        if promote_only and live.refresh is not None:  # not genesis
            marks = state.marks(pin.scope)
            check_not_older(pin.scope, marks, observed(live.refresh, current))
            check_revival(pin.scope, current, now_utc(), have_marks=bool(marks), revive_expired=False)
        plan = session.plan(live, signing=True, secrets=secrets, dry_run=dry_run)
        applied = plan.build_from_changes(changes, fold=fold)
        plan.add_first_versions()
        plan.cascade()
        plan.hold_incomplete_sets()
    ignored = "".join(f"; ignored {i.tag}: {i.reason}" for i in plan.ignored)
    if not plan.ready and not plan.short and not plan.queued:
        raise NothingStagedError(
            f"nothing staged for {pin.scope} and no complete proposal: stage changes with 'tufoci target add' "
            f"first{ignored}"
        )
    if not changes and not plan.ready:
        # a held proposal says why (it waits for another version, it expired, or it is refused whatever its
        # signatures: only a complete one is called complete)
        waiting = ""
        for role, why in plan.held.items():
            md = plan.short[role]
            complete = thresholds_met(plan.thresholds(role, md))
            waiting += f"; {role} v{md.signed.version} is {'complete but ' if complete else ''}{why}"
        raise NothingStagedError(
            f"nothing staged for {pin.scope}, and no open proposal can go live"
            f"{waiting or ' (none has all its signatures yet)'}: see 'tufoci status'{ignored}"
        )

    result = PublishResult(pin.scope, applied=applied, dry_run=dry_run,
                           awaiting_first_version=plan.awaiting_first_version, ignored=plan.ignored,
                           queued=plan.queued, folded={r: p.version for r, p in plan.folded.items()})
    root = plan.next_root()
    online = plan.online_signers() if plan.ready else None
    if plan.ready and online is None:
        # fully signed, but snapshot/timestamp cannot be: hand the versions over
        # as complete proposals to whoever holds the online key
        result.waiting_for_online_key = True
        plan.hold_for_online_key()

    files = [MetadataFile(role, md.signed.version, to_bytes(md)) for role, md in plan.ready.items()]
    timestamp = None
    if plan.ready and online is not None:
        periods = current.expiry_periods
        listed = {f.role: (f.version, f.data) for f in files if f.role != "root"}
        bins = plan.bins()
        snapshot = next_snapshot(current.snapshot, listed, periods, plan.now,
                                 without_hashes=bins.is_delegated_role if bins is not None else lambda role: False)
        # two online services never write the same bytes, so the settle check of push_metadata
        # tells their publishes apart (identical bytes would let both believe they won)
        snapshot.signed.unrecognized_fields.pop(SERVICE_FIELD, None)
        if promote_only:
            snapshot.signed.unrecognized_fields[SERVICE_FIELD] = machine_id(state)
        if genesis:  # the first complete set: root v1 (pinned, or its completed proposal), snapshot v1, timestamp v1
            snapshot.signed.version = 1
            if "root" not in plan.ready:
                files.insert(0, MetadataFile("root", 1, to_bytes(current.root)))
        sign_with(snapshot, online["snapshot"])
        snapshot_bytes = to_bytes(snapshot)
        files.append(MetadataFile("snapshot", snapshot.signed.version, snapshot_bytes))
        timestamp = next_timestamp(current.timestamp, snapshot.signed.version, snapshot_bytes, periods, plan.now)
        if genesis:
            timestamp.signed.version = 1
        sign_with(timestamp, online["timestamp"])
        result.published = {f.role: f.version for f in files} | {"timestamp": timestamp.signed.version}
    for role, md in plan.short.items():
        states = plan.thresholds(role, md)
        held = plan.held.get(role)
        result.proposed[role] = ProposedVersion(md.signed.version, states, held, ProposalState.of(
            thresholds_met(states), held, online_key_missing=result.waiting_for_online_key))
    if dry_run:
        signed = {**plan.ready, **plan.short}
        if timestamp is not None:
            signed |= {"snapshot": snapshot, "timestamp": timestamp}
        result.would_sign = {role: {"version": md.signed.version, "keyids": would_sign(md)}
                             for role, md in signed.items() if would_sign(md)}
        return result

    recorded = False
    try:
        if timestamp is not None:
            progress(f"pushing {len(files) + 1} metadata files to {pin.metadata}; the timestamp moves last")
            push_metadata(
                store,
                files,
                MetadataFile("timestamp", timestamp.signed.version, to_bytes(timestamp)),
                root_version=root.version,
                expected_timestamp=current.timestamp_manifest_digest,
                settle=ONLINE_SETTLE if promote_only else 0.0,
            )
        for role, md in plan.short.items():
            if role not in plan.from_registry:  # open proposals are already there
                push_proposal(store, role, md, actor_name(state, md.signatures), machine_id(state),
                              replace=plan.folded.get(role))
        _record(state, pin.scope, applied, result, plan)
        recorded = True
        if timestamp is not None:
            # read back what went live through the client workflow: proves it verifies,
            # and leaves this machine's cache at the new state
            progress(f"reading back {pin.scope} as clients will")
            with session.read_back() as refreshed:
                if promote_only:
                    state.raise_marks(pin.scope, observed(refreshed, load_current(refreshed)))
    except KeyboardInterrupt as e:
        raise _interrupted(state, store, pin.scope, applied, result, plan, recorded,
                           current.timestamp_manifest_digest if timestamp is not None else None) from e
    return _then_queued(result, lambda: publish(session, secrets=secrets, progress=progress))


def _then_queued(result: PublishResult, again: Callable[[], PublishResult]) -> PublishResult:
    """When this publish made live the very proposal that this machine's staged changes were queued
    behind, publish ``again``: they are proposed now, no flag needed (issue 15).

    The queue is this machine's (its ``state.db``), so nobody else can propose it: when the online
    service or another maintainer makes the open proposal live, this machine's next ``publish``
    proposes the queued changes, and ``status`` says so meanwhile. If that second publish fails, what
    went live stays reported and the changes stay queued (and staged).
    """
    if not any(result.published.get(role) == version for role, version in result.queued.items()):
        return result
    try:
        following = again()
    except TufociError:
        return result
    result.proposed |= following.proposed
    result.published |= following.published
    result.applied += following.applied
    result.queued = following.queued
    return result


def _interrupted(state: State, store, scope: str, changes: list[StagedChange], result: PublishResult, plan: Plan,
                 recorded: bool, started_from: str | None) -> InterruptedPublishError:
    """issue 18: after Ctrl-C, say exactly what happened. The timestamp move is one request: whether it
    happened is read from the registry; if it did, the publish is recorded as any other."""
    from tufoci.repo_tool.push import current_timestamp_digest

    live = recorded and bool(result.published)
    if not recorded and result.published:
        try:
            live = current_timestamp_digest(store) != started_from
        except TufociError as e:
            return InterruptedPublishError(
                f"interrupted while moving the timestamp of {scope}; whether targets went live is unknown "
                f"({e}): the staged changes are kept, run 'tufoci status {scope}' before publishing again")
        if live:
            _record(state, scope, changes, result, plan)
    if live:
        versions = ", ".join(f"{role} v{v}" for role, v in result.published.items())
        return InterruptedPublishError(f"interrupted: published {versions} to {scope} before the interrupt "
                                       "(it is live; the staged changes it applied are cleared)")
    return InterruptedPublishError(f"interrupted: nothing went live in {scope}; staged changes kept "
                                   f"(run 'tufoci publish {scope}' again)")


def _record(state: State, scope: str, changes: list[StagedChange], result: PublishResult, plan: Plan) -> None:
    """Clear what a publish applied from the staged changes and write its audit records, in one transaction."""
    promoted = [f"{role} v{p.version}" for role, p in plan.from_registry.items() if role in plan.ready]
    with state.transaction():
        clear_staged(state, scope, changes)
        if result.published:
            state.record_audit("publish", scope=scope, role=",".join(sorted(result.published)),
                               versions=result.published,
                               changes=result.to_dict()["changes"], promoted=promoted)
        for role, proposed in result.proposed.items():
            if role not in plan.from_registry:
                state.record_audit("propose", scope=scope, role=role, version=proposed.version,
                                   thresholds=proposed.to_dict()["thresholds"])
        for role, version in result.queued.items():  # inspect.queued_behind: what 'status' says of them
            state.record_audit("queue", scope=scope, role=role, version=version)
