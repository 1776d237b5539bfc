"""Folding results into an Application's record returns the Events to write (the Reporter writes them):
reverts, fights and untrusted marks from outcomes; a cycle's writes, prunes and Ready transitions; a
delete pass's failures reported once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from support.reconciler_builders import REV1

from driftguard.core.changes import Action, Change, ChangeSet
from driftguard.core.objects import ObjectRef
from reconciler.apply import DriftRecord, Outcome
from reconciler.health import Health
from reconciler.reconcile import Result
from reconciler.record import AppState, Event, sync_events
from reconciler.settings import Settings
from reconciler.status import Problem, SyncReport

APP = {"metadata": {"name": "svc", "namespace": "driftguard-system"},
       "spec": {"source": {"repoURL": "https://git.example/org/repo", "path": "app"},
                "destination": {"namespace": "prod"}}}
WEB = ObjectRef("", "ConfigMap", "prod", "web")
WALL = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings(fight_limit=5, fight_window=60)


def drift(state: Any) -> DriftRecord:
    return DriftRecord(WEB, ("data.color",), "bob", "kubectl", "2026-03-01T11:59:00Z", state)


@pytest.mark.parametrize(("outcome", "events"), [
    pytest.param(Outcome(Change(WEB, Action.UNCHANGED)), [], id="unchanged"),
    pytest.param(Outcome(Change(WEB, Action.CONFIGURED, "reverted data.color"), drift=drift("Reverted")),
                 [Event("Normal", "DriftReverted", "reverted data.color", about=WEB)], id="reverted"),
    pytest.param(Outcome(Change(WEB, Action.SKIPPED), drift=drift("BreakGlass")), [], id="break-glass"),
    pytest.param(Outcome(Change(WEB, Action.CONFIGURED, "x"), fight=True),
                 [Event("Warning", "FightDetected", f"{WEB} was changed back 5+ times in 60s; self-heal backs off",
                        about=WEB),
                  Event("Warning", "FightDetected", f"{WEB} was changed back 5+ times in 60s; self-heal backs off")],
                 id="fight-on-the-object-and-the-application"),
    pytest.param(Outcome(Change(WEB, Action.CONFIGURED, "adopted"), untrusted=("driftguard.io/x",)),
                 [Event("Warning", "UntrustedMetadataRemoved", str(Change(WEB, Action.CONFIGURED, "adopted")))],
                 id="untrusted-metadata"),
])
def test_an_outcome_noted_returns_its_events(outcome: Outcome, events: list[Event]) -> None:
    assert AppState.new(APP).note(outcome, SETTINGS) == events


def test_a_revert_leaves_the_drift_list_and_joins_the_recent_reverts() -> None:
    state = AppState.new(APP)
    state.note(Outcome(Change(WEB, Action.SKIPPED), drift=drift("Unresolved")), SETTINGS)
    assert list(state.drift) == [WEB]

    state.note(Outcome(Change(WEB, Action.CONFIGURED), drift=drift("Reverted")), SETTINGS)
    assert state.drift == {} and [d.state for d in state.reverted] == ["Reverted"]


def test_a_quiet_self_heal_outcome_tells_nothing() -> None:
    state = AppState.new(APP)
    assert state.heard(Outcome(Change(WEB, Action.UNCHANGED)), SETTINGS, now=0.0, wall=WALL) is None
    assert not state.status_dirty
    degraded = Outcome(Change(WEB, Action.UNCHANGED), health=(Health.DEGRADED, "crash loop"))
    assert state.heard(degraded, SETTINGS, now=0.0, wall=WALL) == []
    assert state.status_dirty and state.health == {WEB: (Health.DEGRADED, "crash loop")}


def test_a_break_glass_grant_brings_the_next_full_sync_to_its_expiry() -> None:
    state = AppState.new(APP)
    state.next_full = 500.0
    grant = Outcome(Change(WEB, Action.SKIPPED), drift=drift("BreakGlass"), expires_at=WALL + dt.timedelta(seconds=30))
    state.heard(grant, SETTINGS, now=100.0, wall=WALL)
    assert state.next_full == pytest.approx(130.1)


def test_a_failed_cycle_keeps_what_was_known() -> None:
    state = AppState.new(APP)
    state.synced = (REV1.sha, (), 1)
    report = SyncReport("main", WALL, 0.1, problem=Problem("SourceReady", "FetchFailed", "down"))
    assert state.absorb(Result(report), SETTINGS, now=0.0, wall=WALL) == []
    assert state.report is report and state.synced == (REV1.sha, (), 1)


def ready(status: str, reason: str = "Synced", message: str = "m") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("applied", "pruned", "before", "after", "reasons"), [
    pytest.param([], [], {}, ready("True"), [], id="first-sync-nothing-written"),
    pytest.param([Action.CREATED], [], {}, ready("True"), ["Synced"], id="writes"),
    pytest.param([Action.UNCHANGED], [Action.DELETED], ready("True"), ready("True"), ["Pruned"], id="prunes"),
    pytest.param([], [], ready("True"), ready("False", "FetchFailed"), ["FetchFailed"], id="ready-turns-false"),
    pytest.param([], [], ready("False", "FetchFailed"), ready("False", "FetchFailed"), [], id="still-false"),
    pytest.param([], [], ready("False", "FetchFailed"), ready("True"), ["Recovered"], id="recovered"),
])
def test_a_cycle_s_events(applied: list[Action], pruned: list[Action], before: dict[str, Any],
                          after: dict[str, Any], reasons: list[str]) -> None:
    report = SyncReport("main", WALL, 0.1, revision=REV1, applied=ChangeSet([Change(WEB, a) for a in applied]),
                        pruned=ChangeSet([Change(WEB, a) for a in pruned]))
    assert [e.reason for e in sync_events(report, before, after)] == reasons


def test_a_delete_pass_reports_a_repeated_failure_once() -> None:
    state = AppState.new(APP)
    failing = ChangeSet([Change(WEB, Action.FAILED, "etcd timeout")])
    assert [e.reason for e in state.deleted(failing, ("driftguard.io/prune-on-delete",))] == ["DeleteFailed"]
    assert state.deleted(failing, ("driftguard.io/prune-on-delete",)) == []
    done = state.deleted(ChangeSet([Change(WEB, Action.DELETED)]), ("driftguard.io/prune-on-delete",))
    assert [(e.reason, e.message) for e in done] == [("PrunedOnDelete", f"deleted {WEB}")]


def test_a_cycle_s_events_name_its_project() -> None:
    report = SyncReport("main", WALL, 0.1, revision=REV1, applied=ChangeSet([Change(WEB, Action.CREATED)]),
                        pruned=ChangeSet([Change(WEB, Action.DELETED)]), project="team-a")
    messages = [e.message for e in sync_events(report, {}, ready("True"))]
    assert messages == [f"{REV1.short} (Project team-a): {report.applied.summary()}",
                        f"{REV1.short} (Project team-a): deleted {WEB}"]


def test_an_audit_record_names_the_user_of_a_drift_no_mark_named() -> None:
    from driftguard.core.objects import ObjectRef
    from reconciler.apply import DriftRecord
    from reconciler.record import AppState

    ref = ObjectRef("apps", "Deployment", "prod", "web")
    state = AppState.new({"metadata": {"name": "svc", "namespace": "driftguard-system"}, "spec": {}})
    scale = DriftRecord(ref, ("spec.replicas",), "", "kubectl (scale)", "2026-03-01T12:00:00Z", "Unresolved")
    marked = DriftRecord(ref, ("spec.replicas",), "bob", "", "2026-03-01T12:00:00Z", "Reverted")
    old = DriftRecord(ref, ("spec.replicas",), "", "", "2026-03-01T11:00:00Z", "Reverted")
    state.drift[ref] = scale
    state.reverted.extend([marked, old])
    obj = "Deployment prod/web"
    assert not state.attribute(obj, ("data.x",), "alice", "2026-03-01T12:00:01Z")  # another field
    assert not state.attribute("Deployment prod/other", ("spec.replicas",), "alice", "2026-03-01T12:00:01Z")
    assert not state.attribute(obj, ("spec.replicas",), "", "2026-03-01T12:00:01Z")  # no user
    assert state.attribute(obj, ("spec.replicas",), "alice", "2026-03-01T12:00:01Z")
    assert state.drift[ref].by == "alice"
    assert [d.by for d in state.reverted] == ["bob", ""]  # a mark's user stays; an hour-old drift is another's
    assert not state.attribute(obj, ("spec.replicas",), "carol", "not a time")
