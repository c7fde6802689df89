"""What a publish decides (repo_tool/plan.py), table-driven on the in-memory simulator.

Every case builds a world (live metadata, open proposals, the keys this machine
holds) and the staged changes, runs the plan exactly as ``publish`` runs it, and
states what must be ready (goes live), short (stays or becomes a proposal), held
(complete, but waits for another version) — and why. No registry, no state, no
file: the whole table runs in well under a second.

Keys are numbers (tests/support/simulator.py): by default root is key 0, targets
key 1 and snapshot/timestamp (the online key) key 2.

The threshold, cascade and hold cases the CLI tests cover, and the case here that
decides the same:

| case here                                  | CLI test (tests/…)                                                                     |
|--------------------------------------------|----------------------------------------------------------------------------------------|
| one-maintainer-publishes                   | test_publish_dry_run::test_a_dry_run_loads_no_key_and_shows_what_would_be_signed_and_pushed |
| 1-of-2-proposes                            | test_threshold_release::test_a_release_needs_two_of_three_maintainers (alice)          |
| 2-of-3-complete-goes-live                  | test_threshold_release::test_a_release_needs_two_of_three_maintainers (bob)            |
| every-valid-signature-counts               | test_threshold_release::test_concurrent_signers_both_count                             |
| signatures-that-do-not-count               | test_threshold_release::test_signatures_that_do_not_count_and_why                      |
| rotated-targets-holds-root                 | test_threshold_release::release (fixture, first publish); test_publish_dry_run::…threshold_release… |
| rotated-targets-signed-releases-root       | test_threshold_release::release (fixture, second publish)                              |
| new-root-needs-old-and-new-threshold       | test_threshold_release::test_a_new_root_needs_the_old_and_the_new_root_threshold       |
| new-root-signed-by-old-and-new             | test_threshold_release::test_a_new_root_needs_the_old_and_the_new_root_threshold       |
| teams-await-their-first-version            | test_teams::acme (fixture)                                                             |
| team-signs-without-root-or-targets-keys    | test_teams::test_a_team_signs_its_own_tags_without_root_or_targets_keys                |
| team-2-of-2-proposes / …-complete          | test_teams::test_db_release_needs_both_db_maintainers                                  |
| nested-sub-team-first-versions             | test_teams::test_nested_delegation_to_a_sub_team                                       |
| team-outside-its-paths                     | test_teams::test_a_team_cannot_sign_outside_its_paths (the CLI refuses it when staged) |
| complete-proposal-outside-its-paths        | test_teams::test_publish_refuses_a_complete_proposal_outside_its_paths                 |
| another-teams-role-judged-by-live-graph    | test_comaintainer_keys::test_a_team_cannot_get_another_teams_role_published            |
| proposal-nobody-delegates                  | test_comaintainer_keys::test_one_garbage_proposal_tag_never_blocks_a_maintainer[undelegated-role] |
| revoked-targets-key-cascades               | test_key_lifecycle::test_revoked_key_is_rejected_and_earlier_tags_keep_verifying[targets] |
| revoked-team-key-cascades                  | test_key_lifecycle::test_revoked_key_is_rejected_and_earlier_tags_keep_verifying[team] |
| root-key-rotation                          | test_key_lifecycle::test_root_rotation_clients_walk_the_chain                          |
| online-key-rotation                        | test_key_lifecycle::test_fast_forward_attack_recovered_by_rotating_the_online_key      |
| complete-without-online-key                | test_trust_operations::test_online_services_promote_a_complete_proposal_exactly_once   |
| queued-behind-open-proposal                | test_trust_operations::test_a_change_staged_behind_an_open_proposal_is_queued_or_folded |
| folded-into-open-proposal                  | test_trust_operations::test_a_change_staged_behind_an_open_proposal_is_queued_or_folded |
| threshold-renewal-proposes                 | test_renew::test_a_threshold_renewal_is_a_proposal_that_changes_only_version_and_expires |
| team-renews                                | test_renew::test_a_team_renews_its_delegated_role                                      |
| expired-complete-proposal-is-held / renewal-folded-into-an-expired-… | test_renew::test_a_proposal_that_expired_before_it_went_live_is_held_and_proposed_again |
| genesis-targets-v1-proposes / …-complete   | test_trust_operations::test_init_with_a_threshold_this_machine_cannot_meet_is_an_initial_signing_session |
| genesis-expired-pinned-root-holds-targets-v1 | test_trust_operations::test_a_pinned_root_v1_that_expired_during_the_signing_session_never_goes_live |
| bins-delegated / targets-go-to-their-bins  | test_bins::test_targets_spread_over_bins_and_one_tag_re_signs_one_bin                  |

Cases the CLI tests are too slow for: a three-level cascade (and a short leaf
holding the whole chain up to root), a child waiting for its short parent, two
proposals for one role, 3-of-5 with a revoked key (as a signer of a proposal and
as a key this machine holds), a held set released when the blocking version goes
live, expired live roles with ``allow_expired`` on and off, orphaned and cyclic
proposals (also orphaned by an undelegation), a raised threshold that re-signs the role,
and a first version this machine can sign at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from tuf.api.exceptions import ExpiredMetadataError

from tests.support.simulator import NOW, Simulator, adds, delegates, keyid, rotates, undelegates
from tufoci.errors import PublishError
from tufoci.repo_tool.plan import Plan
from tufoci.repo_tool.proposals import DetachedSignature
from tufoci.repo_tool.staging import StagedChange

World = Callable[[], tuple[Simulator, list[StagedChange]]]


@dataclass
class Case:
    name: str
    world: World
    ready: set[str] | None = field(default_factory=set)  # None: ``check`` says
    short: set[str] = field(default_factory=set)
    held: dict[str, str] = field(default_factory=dict)  # role -> how the reason starts
    have: dict[str, list[int]] = field(default_factory=dict)  # short role -> signatures counted, per delegator
    awaiting: list[str] = field(default_factory=list)  # delegated now, first version by its own team
    queued: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)  # tag -> how the reason starts
    fold: bool = False
    allow_expired: bool = True  # the maintainer view waives expiry (genesis.maintainer_view)
    raises: tuple[type[Exception], str] | None = None
    check: Callable[[Plan, Simulator], object] | None = None  # anything else: raises or returns False if wrong

    def __str__(self) -> str:
        return self.name


def team_of_three() -> Simulator:
    """targets held by three maintainers (keys 3, 4, 5), 2 of 3; root 0, online 2."""
    return Simulator(targets=(3, 4, 5), targets_threshold=2)


def with_web(*, published: bool = True) -> Simulator:
    """targets delegates web/* to the web team (key 3)."""
    return Simulator().delegate("targets", "web", [3], paths=("web/*",), published=published)


def genesis() -> Simulator:
    """``init`` with targets 2 of 3 (keys 3, 4, 5): only root v1 is pinned, targets v1 is being signed."""
    return Simulator(targets=(3, 4, 5), targets_threshold=2, genesis=True)


def with_db() -> Simulator:
    """targets delegates db/* to two db maintainers (keys 6, 7), 2 of 2; db never published."""
    return Simulator().delegate("targets", "db", [6, 7], threshold=2, paths=("db/*",), published=False)


def signed_by(role: str, *numbers: int) -> Callable[[Plan, Simulator], None]:
    """Assert which keys signed the plan's version of ``role``."""
    def check(plan: Plan, sim: Simulator) -> None:
        md = plan.pending(role)
        assert md is not None and set(md.signatures) == {keyid(n) for n in numbers}
    return check


def both(*checks: Callable[[Plan, Simulator], None]) -> Callable[[Plan, Simulator], None]:
    def check(plan: Plan, sim: Simulator) -> None:
        for one in checks:
            one(plan, sim)
    return check


# -- worlds that need more than one line ------------------------------------------------------------

def uncounted_signatures() -> tuple[Simulator, list[StagedChange]]:
    """One valid signature and three that must not count: a key that is not a targets key, a second
    signature by the same key, a signature over other bytes."""
    sim = team_of_three().propose("targets", adds("web:other"), signed_by=[4])
    other = sim.proposals[-1].collected[0]
    proposal = sim.propose("targets", adds("web:3.0"), signed_by=[3, 0]).proposals[-1]
    proposal.collected += [proposal.collected[0], DetachedSignature(other.keyid, other.signature, other.signed_digest, None)]
    return sim.hold(2), []


def check_uncounted(plan: Plan, sim: Simulator) -> None:
    reasons = sorted(c.reason for c in plan.from_registry["targets"].checks if not c.counted)
    assert reasons == ["duplicate signature by the same key", "key is not a targets key",
                       "signed different bytes (an older or another proposal)"]


def rotated_targets_proposals(*targets_signers: int) -> World:
    """Root v2 gives targets to keys 3, 4, 5 (2 of 3), signed by root; targets v2 signed by ``targets_signers``."""
    def world() -> tuple[Simulator, list[StagedChange]]:
        sim = Simulator().propose("root", rotates("targets", add=[3, 4, 5], remove=[1], threshold=2), signed_by=[0])
        return sim.propose("targets", signed_by=targets_signers).hold(2), []
    return world


def three_levels(*held: int) -> World:
    """targets → a (key 3) → b (key 4) → c (key 5), all live; new keys 6, 7, 8 for targets, a and b."""
    def world() -> tuple[Simulator, list[StagedChange]]:
        sim = Simulator().delegate("targets", "a", [3]).delegate("a", "b", [4]).delegate("b", "c", [5]).hold(*held)
        return sim, [sim.rotate("targets", add=[6], remove=[1]), sim.rotate("a", add=[7], remove=[3]),
                     sim.rotate("b", add=[8], remove=[4])]
    return world


def three_of_five(*targets_signers: int) -> World:
    """targets 3 of 5 (keys 3-7); root v2 (complete) revokes key 7; targets v2 signed by ``targets_signers``."""
    def world() -> tuple[Simulator, list[StagedChange]]:
        sim = Simulator(targets=(3, 4, 5, 6, 7), targets_threshold=3)
        sim.propose("root", rotates("targets", remove=[7]), signed_by=[0])
        return sim.propose("targets", adds("web:2.0"), signed_by=targets_signers).hold(2), []
    return world


def sub_team_waits(parent_live: bool) -> World:
    """db (keys 6, 7: 2 of 2) proposes v2 delegating db-sub to key 8, signed by 6 only; db-sub's v1
    proposal is complete. With ``parent_live``, db v2 went live meanwhile (7 signed, someone published)."""
    def world() -> tuple[Simulator, list[StagedChange]]:
        sim = Simulator().delegate("targets", "db", [6, 7], threshold=2, paths=("db/*",))
        sim.propose("db", delegates("db-sub", [8], paths=("db/sub/*",)), signed_by=[6, 7] if parent_live else [6])
        if parent_live:
            sim.go_live("db")
        return sim.propose("db-sub", adds("db/sub/x:1"), signed_by=[8]).hold(2), []
    return world


def expires_fresh(role: str, days: int) -> Callable[[Plan, Simulator], None]:
    def check(plan: Plan, sim: Simulator) -> None:
        md = plan.pending(role)
        assert md is not None and (md.signed.expires - NOW).days == days
    return check


AN_HOUR_AGO = NOW - datetime.timedelta(hours=1)


def queued_world() -> tuple[Simulator, list[StagedChange]]:
    sim = team_of_three().propose("targets", adds("web:1.1"), signed_by=[3])  # alice proposed, 1 of 2
    return sim.hold(2, 4), [sim.add("api:1.0")]  # bob staged another change


def check_folded(plan: Plan, sim: Simulator) -> None:
    md = plan.short["targets"]
    assert {"web:1.1", "api:1.0"} <= set(md.signed.targets) and md.signed.version == 2
    assert set(md.signatures) == {keyid(4)}  # alice signed the earlier bytes: asked again
    assert plan.folded["targets"].version == 2 and "targets" not in plan.from_registry


def check_renewal(plan: Plan, sim: Simulator) -> None:
    md, live = plan.short["targets"], sim.roles["targets"]
    assert md.signed.version == live.signed.version + 1 and md.signed.targets == live.signed.targets
    assert (md.signed.expires - NOW).days == 100


def bins_world() -> tuple[Simulator, list[StagedChange]]:
    return Simulator().delegate_bins("bins", [13], 4).hold(2, 13), [Simulator.add(f"app:{i}") for i in range(20)]


def check_bins(plan: Plan, sim: Simulator) -> None:
    delegations = sim.roles["targets"].signed.delegations
    assert delegations is not None and delegations.succinct_roles is not None
    assert set(plan.ready) == {delegations.succinct_roles.get_role_for_target(f"app:{i}") for i in range(20)}


def another_teams_role() -> tuple[Simulator, list[StagedChange]]:
    """db's complete proposal re-delegates a role named web to db's key 4, and web v2 is signed by key 4."""
    sim = Simulator().delegate("targets", "web", [3], paths=("web/*",)).delegate("targets", "db", [4], paths=("db/*",))
    sim.propose("db", delegates("web", [4], paths=("web/*",)), signed_by=[4])
    return sim.propose("web", adds("web/app:evil"), signed_by=[4]).hold(2), []


def orphans_and_cycles() -> tuple[Simulator, list[StagedChange]]:
    """x is delegated only by y's proposal, y by nobody; p and q delegate only each other."""
    sim = Simulator().propose("y", delegates("x", [3]), signed_by=[3]).propose("x", signed_by=[3])
    sim.propose("p", delegates("q", [3]), signed_by=[3]).propose("q", delegates("p", [3]), signed_by=[3])
    return sim.hold(0, 1, 2), []


def orphaned_by_an_undelegation() -> tuple[Simulator, list[StagedChange]]:
    """targets v2 (complete) undelegates y; y's proposal delegates x; x's proposal is read first."""
    sim = Simulator().delegate("targets", "y", [3]).propose("x", signed_by=[4])
    sim.propose("y", delegates("x", [4]), signed_by=[3])
    sim.propose("targets", undelegates("y"), signed_by=[1])
    return sim.hold(2), []


def two_proposals_for_targets() -> tuple[Simulator, list[StagedChange]]:
    """targets v2 is short; a complete v3 beside it must not jump the queue."""
    sim = team_of_three().propose("targets", adds("web:1.1"), signed_by=[3])
    return sim.propose("targets", adds("web:1.2"), signed_by=[3, 4], version=3).hold(2), []


def expired_team_rotated() -> tuple[Simulator, list[StagedChange]]:
    sim = Simulator().delegate("targets", "team", [3]).expire("team").hold(1, 2, 10)
    return sim, [sim.rotate("team", add=[10], remove=[3])]


CASES = [
    # -- thresholds ------------------------------------------------------------------------------
    Case("one-maintainer-publishes", lambda: (Simulator().hold(0, 1, 2), [Simulator.add("web:1.0")]),
         ready={"targets"}),
    Case("1-of-2-proposes", lambda: (team_of_three().hold(2, 3), [Simulator.add("web:1.1")]),
         short={"targets"}, have={"targets": [1]}),
    Case("2-of-3-complete-goes-live",
         lambda: (team_of_three().propose("targets", adds("web:1.1"), signed_by=[3, 4]).hold(2), []),
         ready={"targets"}),
    Case("every-valid-signature-counts",
         lambda: (team_of_three().propose("targets", signed_by=[3, 4, 5]).hold(2), []),
         ready={"targets"},
         check=lambda plan, sim: [(t.have, t.need) for t in plan.from_registry["targets"].thresholds] == [(3, 2)]),
    Case("signatures-that-do-not-count", uncounted_signatures, short={"targets"}, have={"targets": [1]},
         check=check_uncounted),
    Case("new-root-needs-old-and-new-threshold",
         lambda: ((sim := Simulator().hold(0, 1, 2)), [sim.rotate("root", add=[6], remove=[0])]),
         short={"root"}, have={"root": [1, 0]}),
    Case("new-root-signed-by-old-and-new",
         lambda: (Simulator().propose("root", rotates("root", add=[6], remove=[0]), signed_by=[0, 6]).hold(2), []),
         ready={"root"}),
    Case("team-2-of-2-proposes",
         lambda: (with_db().hold(2, 6), [Simulator.add("db/postgres:15", "db")]),
         short={"db"}, have={"db": [1]}),
    Case("team-2-of-2-complete",
         lambda: (with_db().propose("db", adds("db/postgres:15"), signed_by=[6, 7]).hold(2), []),
         ready={"db"}),
    Case("three-of-five-revoked-key-does-not-count", three_of_five(3, 4, 7), short={"root", "targets"},
         held={"root": "waits for targets v2, re-signed by its new keys"}, have={"targets": [2]},
         check=lambda plan, sim: "key is not a targets key" in
         {c.reason for c in plan.from_registry["targets"].checks}),
    Case("three-of-five-after-revocation", three_of_five(3, 4, 5), ready={"root", "targets"}),
    Case("three-of-five-revoked-key-held",
         lambda: ((sim := Simulator(targets=(3, 4, 5, 6, 7), targets_threshold=3).hold(0, 2, 3, 4, 7)),
                  [sim.rotate("targets", remove=[7])]),
         short={"root", "targets"}, held={"root": "waits for targets v2"}, have={"targets": [2]},
         check=signed_by("targets", 3, 4)),
    Case("two-proposals-for-one-role", two_proposals_for_targets, short={"targets"}, have={"targets": [1]},
         check=lambda plan, sim: plan.short["targets"].signed.version == 2),

    # -- cascades: a delegator that changes a child's keys re-signs the child ---------------------
    Case("rotated-targets-holds-root",
         lambda: ((sim := Simulator().hold(0, 1, 2)), [sim.rotate("targets", add=[3, 4, 5], remove=[1], threshold=2)]),
         short={"root", "targets"}, held={"root": "waits for targets v2, re-signed by its new keys"},
         have={"targets": [0]}),
    Case("rotated-targets-signed-releases-root", rotated_targets_proposals(3, 4), ready={"root", "targets"}),
    Case("rotated-targets-one-signature-holds-root", rotated_targets_proposals(3), short={"root", "targets"},
         held={"root": "waits for targets v2"}, have={"targets": [1]}),
    Case("raised-threshold-cascades",
         lambda: ((sim := Simulator(targets=(3, 4)).hold(0, 2, 3)), [sim.rotate("targets", threshold=2)]),
         short={"root", "targets"}, held={"root": "waits for targets v2, re-signed by its new keys"},
         have={"targets": [1]}),
    Case("revoked-targets-key-cascades",
         lambda: ((sim := Simulator().hold(0, 1, 2, 9)), [sim.rotate("targets", add=[9], remove=[1])]),
         ready={"root", "targets"}, check=signed_by("targets", 9)),
    Case("revoked-team-key-cascades",
         lambda: ((sim := Simulator().delegate("targets", "team", [3]).hold(1, 2, 10)),
                  [sim.rotate("team", add=[10], remove=[3])]),
         ready={"targets", "team"}, check=signed_by("team", 10)),
    Case("root-key-rotation",
         lambda: ((sim := Simulator().hold(0, 1, 2, 11)), [sim.rotate("root", add=[11], remove=[0])]),
         ready={"root"}, check=signed_by("root", 0, 11)),
    Case("online-key-rotation",
         lambda: ((sim := Simulator().hold(0, 1, 2, 12)),
                  [sim.rotate("snapshot", add=[12], remove=[2]), sim.rotate("timestamp", add=[12], remove=[2])]),
         ready={"root"},  # snapshot and timestamp are re-signed by every publish, never cascaded
         check=lambda plan, sim: set((plan.online_signers() or {})["timestamp"]) == {keyid(12)}),
    Case("three-level-cascade", three_levels(0, 1, 2, 6, 7, 8), ready={"root", "targets", "a", "b"},
         check=both(signed_by("targets", 6), signed_by("a", 7), signed_by("b", 8))),
    Case("three-level-cascade-short-leaf-holds-the-chain", three_levels(0, 1, 2, 6, 7),
         short={"root", "targets", "a", "b"}, have={"b": [0]},
         held={"a": "waits for b v3, re-signed", "targets": "waits for a v3, re-signed",
               "root": "waits for targets v3, re-signed"}),
    Case("expired-child-cascaded-gets-a-fresh-expiry", expired_team_rotated, ready={"targets", "team"},
         check=expires_fresh("team", 90)),

    # -- held sets ------------------------------------------------------------------------------
    Case("child-waits-for-its-short-parent",
         lambda: ((sim := team_of_three().hold(2, 3, 9)),
                  [sim.delegation("targets", "web", [9], paths=("web/*",)), sim.add("web/x:1", "web")]),
         short={"targets", "web"}, held={"web": "waits for targets v2"}, have={"targets": [1]}),
    Case("held-until-the-parent-goes-live", sub_team_waits(parent_live=False), short={"db", "db-sub"},
         held={"db-sub": "waits for db v2"}, have={"db": [1]}),
    Case("released-when-the-parent-went-live", sub_team_waits(parent_live=True), ready={"db-sub"}),
    Case("complete-proposal-outside-its-paths",
         lambda: (with_web().propose("web", adds("db/postgres:16"), signed_by=[3]).hold(0, 1, 2),
                  [Simulator.add("web/api:2.0")]),
         ready={"targets"}, short={"web"}, held={"web": "refused: lists db/postgres:16 outside its delegated paths"}),
    Case("another-teams-role-judged-by-live-graph", another_teams_role, ready={"db"}, short={"web"},
         have={"web": [0]}),
    Case("complete-without-online-key",
         lambda: (team_of_three().propose("targets", signed_by=[3, 4]).hold(4), []),
         short={"targets"}, held={"targets": "waits for the online key"}),
    Case("queued-behind-open-proposal", queued_world, short={"targets"}, queued={"targets": 2},
         check=lambda plan, sim: sim.applied == []),
    Case("folded-into-open-proposal", queued_world, short={"targets"}, fold=True, have={"targets": [1]},
         check=check_folded),
    Case("expired-complete-proposal-is-held",
         lambda: (team_of_three().propose("targets", adds("web:1.1"), signed_by=[3, 4], expires=AN_HOUR_AGO).hold(2),
                  []),
         short={"targets"}, held={"targets": "expired at"}),
    Case("expired-parent-holds-its-complete-child",
         lambda: (with_web().propose("targets", rotates("web", add=[4], remove=[3]), signed_by=[1],
                                     expires=AN_HOUR_AGO).hold(2, 4), []),
         short={"targets", "web"}, held={"targets": "expired at", "web": "waits for targets"}),
    Case("renewal-folded-into-an-expired-proposal-re-proposes-it",
         lambda: (team_of_three().propose("targets", adds("web:1.1"), signed_by=[3, 4], expires=AN_HOUR_AGO)
                  .hold(2, 4), [Simulator.renew("targets")]),
         short={"targets"}, fold=True, have={"targets": [1]}, check=expires_fresh("targets", 90)),

    # -- delegations and first versions -----------------------------------------------------------
    Case("teams-await-their-first-version",
         lambda: ((sim := Simulator().hold(0, 1, 2)),
                  [sim.delegation("targets", "web", [3, 4, 5], paths=("web/*",)),
                   sim.delegation("targets", "db", [6, 7], threshold=2, paths=("db/*",))]),
         ready={"targets"}, awaiting=["web", "db"]),
    Case("first-version-this-machine-can-sign",
         lambda: ((sim := Simulator().hold(0, 1, 2, 3)), [sim.delegation("targets", "web", [3], paths=("web/*",))]),
         ready={"targets", "web"}),
    Case("team-signs-without-root-or-targets-keys",
         lambda: (with_web(published=False).hold(2, 3), [Simulator.add("web/frontend:1.4", "web")]),
         ready={"web"}),
    Case("nested-sub-team-first-versions",
         lambda: ((sim := with_web(published=False).hold(2, 3, 8)),
                  [sim.delegation("web", "web-frontend", [8], paths=("web/frontend:*",)),
                   sim.add("web/frontend:1.4", "web-frontend")]),
         ready={"web", "web-frontend"}),
    Case("team-outside-its-paths", lambda: (with_web().hold(2, 3), [Simulator.add("db/postgres:16", "web")]),
         raises=(PublishError, "role 'web' may only sign web/*: db/postgres:16 is outside its delegation")),
    Case("proposal-nobody-delegates",
         lambda: (Simulator().propose("nobody", signed_by=[3]).hold(0, 1, 2), []),
         ignored={"staged.nobody.1": "no role delegates nobody"}),
    Case("orphaned-and-cyclic-proposals-are-ignored", orphans_and_cycles,
         ignored={"staged.y.1": "no role delegates y", "staged.x.1": "no role delegates x",
                  "staged.p.1": "no role delegates p", "staged.q.1": "no role delegates q"}),
    Case("orphaned-by-an-undelegation", orphaned_by_an_undelegation, ready={"targets"},
         ignored={"staged.y.2": "no role delegates y", "staged.x.1": "no role delegates x"}),
    Case("genesis-targets-v1-proposes",
         lambda: (genesis().propose("targets", adds("web:1.0"), signed_by=[3]).hold(0, 2), []),
         short={"targets"}, have={"targets": [1]}, check=lambda plan, sim: plan.short["targets"].signed.version == 1),
    Case("genesis-targets-v1-complete",
         lambda: (genesis().propose("targets", adds("web:1.0"), signed_by=[3, 4]).hold(0, 2), []),
         ready={"targets"}, check=lambda plan, sim: plan.ready["targets"].signed.version == 1),
    Case("genesis-expired-pinned-root-holds-targets-v1",
         lambda: (genesis().expire("root").propose("targets", adds("web:1.0"), signed_by=[3, 4]).hold(0, 2), []),
         short={"targets"}, held={"targets": "waits for root v1, which expired at"}),
    Case("bins-delegated", lambda: ((sim := Simulator().hold(0, 1, 2)), [sim.bins("bins", [13], 4)]),
         ready={"targets"}),
    Case("targets-go-to-their-bins", bins_world, ready=None, check=check_bins),

    # -- expiry and renewal --------------------------------------------------------------------------
    Case("expired-live-role-is-replaced-with-allow-expired",
         lambda: (Simulator().expire("targets").hold(0, 1, 2), [Simulator.add("web:1.0")]),
         ready={"targets"}, check=expires_fresh("targets", 90)),
    Case("expired-live-role-is-refused-without-allow-expired",
         lambda: (Simulator().expire("targets").hold(0, 1, 2), [Simulator.add("web:1.0")]),
         allow_expired=False, raises=(ExpiredMetadataError, "targets.json is expired")),
    Case("threshold-renewal-proposes",
         lambda: (team_of_three().hold(2, 3), [Simulator.renew("targets", "100d")]),
         short={"targets"}, have={"targets": [1]}, check=check_renewal),
    Case("team-renews", lambda: (with_web().hold(2, 3), [Simulator.renew("web")]),
         ready={"web"}, check=expires_fresh("web", 90)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_plan(case: Case) -> None:
    sim, changes = case.world()
    if case.raises is not None:
        error, message = case.raises
        with pytest.raises(error, match=message.replace("*", r"\*")):
            sim.plan(changes, fold=case.fold, allow_expired=case.allow_expired)
        return
    plan = sim.plan(changes, fold=case.fold, allow_expired=case.allow_expired)
    if case.ready is not None:
        assert set(plan.ready) == case.ready
    assert set(plan.short) == case.short
    assert set(plan.held) == set(case.held), plan.held
    for role, reason in case.held.items():
        assert plan.held[role].startswith(reason), plan.held[role]
    for role, have in case.have.items():
        md = plan.short[role]
        assert [s.have for s in plan.thresholds(role, md)] == have
    assert plan.awaiting_first_version == case.awaiting
    assert plan.queued == case.queued
    assert {i.tag for i in plan.ignored} == set(case.ignored)
    for ignored in plan.ignored:
        assert ignored.reason.startswith(case.ignored[ignored.tag]), ignored.reason
    if case.check is not None:
        assert case.check(plan, sim) is not False
