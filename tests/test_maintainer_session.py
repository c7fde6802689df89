"""Issue 12 §3: the maintainer session, proposal states, typed staged changes and text out of the library.

Table-driven and in memory (no registry), except the session test at the end, which counts the
opening sequence of real commands against a real registry.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import needs_registry, publish_web
from tufoci import render
from tufoci.repo_tool.next_steps import proposal_step
from tufoci.repo_tool.proposals import ProposalState, ThresholdState
from tufoci.repo_tool.publish import ProposedVersion, PublishResult
from tufoci.repo_tool.staging import (
    BinsDelegation,
    DelegationAdd,
    KeyChange,
    Renewal,
    StagedRow,
    TargetAdd,
    TargetRemove,
    Undelegation,
    from_row,
    to_row,
)

KEY = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "ab" * 32}}

# (change, the row state.db has always stored for it: action, length, digest, custom)
STAGED = [
    (TargetAdd("r/acme", "targets", "web:1.0", 525, "sha256:" + "a" * 64, {"mediaType": "x"}),
     ("add", 525, "sha256:" + "a" * 64, {"mediaType": "x"})),
    (TargetRemove("r/acme", "web", "web:0.9"), ("remove", None, None, None)),
    (DelegationAdd("r/acme", "targets", "web", {"k1": KEY}, 1, ["web/*"], True),
     ("delegate", None, None, {"keys": {"k1": KEY}, "threshold": 1, "paths": ["web/*"], "terminating": True})),
    (BinsDelegation("r/acme", "targets", "bin", {"k1": KEY}, 1, 4),
     ("delegate-bins", None, None, {"keys": {"k1": KEY}, "threshold": 1, "bit_length": 4})),
    (Undelegation("r/acme", "targets", "web"), ("undelegate", None, None, None)),
    (KeyChange("r/acme", "root", "targets", {"k1": KEY}, ["deadbeef"], 2),
     ("rotate", None, None, {"add": {"k1": KEY}, "remove": ["deadbeef"], "threshold": 2})),
    (KeyChange("r/acme", "targets", "web", {}, ["deadbeef"]),
     ("rotate", None, None, {"add": {}, "remove": ["deadbeef"], "threshold": None})),
    (Renewal("r/acme", "targets", "targets", "120d"), ("renew", None, None, {"expires": "120d"})),
    (Renewal("r/acme", "web", "web"), ("renew", None, None, None)),
]


@pytest.mark.parametrize(("change", "row"), STAGED, ids=[type(c).__name__ for c, _ in STAGED])
def test_each_kind_of_staged_change_is_its_own_type_stored_as_before(change, row):
    stored = to_row(change)
    assert (stored.action, stored.length, stored.digest, stored.custom) == row  # the state.db schema holds
    assert (stored.scope, stored.role, stored.name) == (change.scope, change.role, change.name)
    # read back through JSON, as state.db stores custom
    custom = json.loads(json.dumps(stored.custom)) if stored.custom is not None else None
    assert from_row(StagedRow(stored.scope, stored.role, stored.name, stored.action, stored.length, stored.digest,
                              custom)) == change


def test_a_staged_row_of_an_unknown_kind_is_a_usage_error():
    from tufoci.errors import UsageError

    with pytest.raises(UsageError, match="unknown kind 'frobnicate'"):
        from_row(StagedRow("r/acme", "targets", "web:1.0", "frobnicate"))


# (complete, held, the online key missing, state)
STATES = [
    (False, None, False, ProposalState.SHORT),
    (False, "refused: lists x:1 outside its delegated paths", False, ProposalState.SHORT),
    (True, None, False, ProposalState.COMPLETE),
    (True, None, True, ProposalState.COMPLETE),
    (True, "waits for targets v3", False, ProposalState.HELD),
    (True, "waits for the online key (snapshot/timestamp)", True, ProposalState.AWAITING_ONLINE_KEY),
]


@pytest.mark.parametrize(("complete", "held", "offline", "state"), STATES)
def test_proposal_states(complete, held, offline, state):
    assert ProposalState.of(complete, held, online_key_missing=offline) is state


def _proposal(role: str, *, complete: bool, held: str | None) -> dict:
    return {"role": role, "fingerprint": "f" * 64, "complete": complete, "held": held,
            "thresholds": [{"label": role, "have": 1, "need": 1 if complete else 2,
                            "missing": [] if complete else [{"keyid": "c" * 64, "key": "carol"}]}]}


def test_the_next_step_follows_the_state_not_the_words_of_the_hold():
    """A held proposal waits, whatever its reason says: a role named 'online key' (its delegator chose the
    name) once turned "waits for online key v2" into "publish it"."""
    held = _proposal("web", complete=True, held="waits for online key v2")
    assert proposal_step("r/acme", held, ProposalState.HELD) == {
        "action": "wait", "who": [], "command": None, "why": "waits for online key v2"}
    short = _proposal("web", complete=False, held=None)
    assert proposal_step("r/acme", short, ProposalState.SHORT) == {
        "action": "sign", "who": ["carol"], "command": f"tufoci sign r/acme web --expect {'f' * 64}"}
    assert proposal_step("r/acme", _proposal("web", complete=True, held=None), ProposalState.COMPLETE)["action"] \
        == "publish"


def test_publish_text_is_worded_in_render_from_the_typed_result():
    met, short = ThresholdState("targets", 2, 2, ()), ThresholdState("web", 1, 2, ("c" * 64,))
    result = PublishResult("r/acme", published={"web": 4, "snapshot": 9, "timestamp": 9}, waiting_for_online_key=True,
                           queued={"db": 3}, folded={"web": 5})
    result.proposed = {
        "targets": ProposedVersion(7, [met], "waits for the online key (snapshot/timestamp)",
                                   ProposalState.AWAITING_ONLINE_KEY),
        "web": ProposedVersion(5, [short], None, ProposalState.SHORT),
    }
    result.would_sign = {"web": {"version": 5, "keyids": ["a" * 64]}}
    assert [(line.text, line.err) for line in render.publish_lines(result, dry_run=False, poll=45,
                                                                    names={"a" * 64: "alice"})] == [
        ("would sign web v5 with alice", False),
        ("published to r/acme: web v4, snapshot v9, timestamp v9", False),
        ("targets v7 complete; goes live within 45 s (online service)", False),
        ("proposed web v5: 1 of 2 signatures (web) (replaces the open v5: its signers must sign again)", False),
        ("  other maintainers: tufoci sign r/acme web", True),
        ("queued: your changes to db stay staged until the open proposal db v3 goes live; then this machine's "
         "next 'tufoci publish r/acme' proposes them ('tufoci status' says when); 'tufoci publish --fold' puts "
         "them into it now", True),
        ("this machine does not hold the online key: the online service ('tufoci online-service') publishes it",
         True),
    ]
    assert result.to_dict()["proposed"]["targets"] == {  # -o json: the shape docs/cli.md documents
        "version": 7, "held": "waits for the online key (snapshot/timestamp)",
        "thresholds": [{"label": "targets", "have": 2, "need": 2}]}


def test_staging_text_is_worded_in_render():
    assert render.delegation_line(STAGED[2][0]) == "staged: targets delegates web/* to web (1 of 1 keys, terminating)"
    assert render.bins_line(STAGED[3][0]) == "staged: targets delegates every target to 16 hashed bins bin-*"
    assert render.undelegation_line(STAGED[4][0]) == "staged: targets no longer delegates to web"
    assert render.rotation_line(STAGED[5][0], "acme") == \
        "staged in root: targets +1 key(s), -1 key(s), threshold 2; run 'tufoci publish acme'"
    assert render.renewal_line(STAGED[7][0]) == "staged: renew targets in r/acme (expires in 120d); run 'tufoci publish r/acme'"
    assert [render.staged_line(to_dict) for to_dict in (
        {"action": "delegate", "target": "web", "digest": None},
        {"action": "rotate", "target": "web", "digest": None},
        {"action": "add", "target": "web:1.0", "digest": "sha256:aa"},
    )] == ["+ delegation web", "~ keys of web", "+ web:1.0  sha256:aa"]


@needs_registry
def test_each_maintainer_command_runs_the_opening_sequence_once(registry, tmp_path, home, monkeypatch):
    """pin → trusted session → state → keys, once per command: one verified refresh each, every registry
    option passed on in one place (MaintainerSession._with_registry)."""
    from tufoci.repo_tool import maintainer

    scope, machine, _ = publish_web(registry.host, tmp_path, monkeypatch)
    calls: list[str] = []
    real = maintainer.MaintainerSession._with_registry

    def counting(self, call, *args, **kwargs):
        calls.append(call.__name__)
        assert self.registry.clients is not None  # the CLI's registry options (and its pool) reached the session
        return real(self, call, *args, **kwargs)

    monkeypatch.setattr(maintainer.MaintainerSession, "_with_registry", counting)
    for command, expected in (
        (("status", scope), ["metadata_store", "trusted_session"]),
        (("target", "list", scope), ["trusted_session"]),
        (("rotate", scope, "targets", "--threshold", "1"), []),  # a top-level role: no refresh needed
        (("publish", scope, "--dry-run"), ["metadata_store", "trusted_session"]),
        (("timestamp", scope), ["trusted_session", "metadata_store"]),
        (("export-metadata", scope, str(tmp_path / "export")), ["trusted_session"]),
    ):
        calls.clear()
        assert machine(*command).exit_code == 0, command
        assert calls == expected, command


def test_expiry_warnings_are_worded_once_for_status_and_timestamp():
    import datetime

    from tufoci.repo_tool.freshness import ExpiryWarning, Refreshed

    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    advice = "renew it: 'tufoci renew r/acme targets', signed by 1 of targets"
    result = Refreshed("r/acme", 8, expires, 5, True, (ExpiryWarning("targets", 3, "expires soon", expires, advice),))
    expected = f"tufoci: warning: targets v3 expires soon (2030-01-02T03:04:05Z): {advice}"
    assert [(line.text, line.err) for line in render.refreshed_lines(result)] == [
        ("timestamp v8 expires 2030-01-02T03:04:05Z; snapshot v5", False), (expected, True)]
    status = {"roles": [{"role": "targets", "version": 3, "warning": "expires soon", "expires": "2030-01-02T03:04:05Z",
                         "advice": advice}, {"role": "root", "version": 1, "warning": None}]}
    assert [line.text for line in render.expiry_warnings(status)] == [expected]
