"""Status: sync state, conditions (with stable transition times), drift list, health, and the patch."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from support.reconciler_builders import APP, NOW, REV1, REV2

from driftguard.core.changes import Action, Change, ChangeSet
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.objects import ObjectRef
from reconciler.apply import DriftRecord
from reconciler.fights import Fight
from reconciler.health import Health
from reconciler.status import (
    DeletionReport,
    Problem,
    Snapshot,
    SyncReport,
    compose,
    patch_for,
    record_history,
    sync_state,
)

A = ObjectRef("", "ConfigMap", "prod", "a")
B = ObjectRef("", "ConfigMap", "prod", "b")
INVENTORY = Inventory.of([Entry(A, "v1"), Entry(B, "v1")])


def report(**fields: Any) -> SyncReport:
    base: dict[str, Any] = {"target": "main", "started": NOW, "duration": 0.25, "revision": REV1, "rendered": 2}
    return SyncReport(**{**base, **fields})


def drift(ref: ObjectRef, state: str, at: str = "2026-03-01T11:00:00Z") -> DriftRecord:
    return DriftRecord(ref, ("data.color",), "bob@org", "kubectl-edit", at, state, "why")  # type: ignore[arg-type]


def snap(**fields: Any) -> Snapshot:
    return Snapshot(**{"spec": APP, "report": report(), "inventory": INVENTORY, **fields})


@pytest.mark.parametrize(("snapshot", "state"), [
    (snap(report=None), "Unknown"),
    (snap(), "Synced"),
    (snap(drift=[drift(A, "Reverted")]), "Synced"),
    (snap(drift=[drift(A, "Unresolved")]), "OutOfSync"),
    (snap(drift=[drift(A, "BreakGlass")]), "OutOfSync"),
    (snap(report=report(pending_prune=(B,))), "OutOfSync"),
    (snap(report=report(out_of_sync=("ConfigMap prod/a skipped: missing",))), "OutOfSync"),
    (snap(report=report(applied=ChangeSet([Change(A, Action.FAILED, "no")]))), "Error"),
    (snap(report=report(revision=None, problem=Problem("SourceReady", "FetchFailed", "down"))), "Error"),
])
def test_sync_state(snapshot: Snapshot, state: str) -> None:
    assert sync_state(snapshot) == state


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_good_sync() -> None:
    applied = ChangeSet([Change(A, Action.CREATED), Change(B, Action.UNCHANGED)])
    status = compose(snap(report=report(applied=applied)), {}, NOW)
    assert conditions(status) == {
        "Ready": ("True", "Synced"), "SpecValid": ("True", "Valid"), "SourceReady": ("True", "Fetched"),
        "RenderReady": ("True", "Rendered"), "Applied": ("True", "Applied"), "Pruned": ("True", "Pruned"),
        "Fighting": ("False", "NoFight"),
    }
    assert status["sync"] == {"status": "Synced", "targetRevision": "HEAD", "revision": REV1.sha,
                              "shortRevision": "1111111", "author": "alice@org",
                              "committedAt": "2026-03-01T10:00:00Z", "message": "first"}
    assert status["lastSyncResult"] == {"created": 1, "unchanged": 1, "summary": "1 created, 1 unchanged"}
    assert (status["inventoryCount"], status["lastSyncTime"], status["lastSyncDuration"]) == (
        2, "2026-03-01T12:00:00Z", "0.250s")
    assert status["health"] == {"status": "Healthy", "message": "2 objects healthy"}


def test_a_source_problem_stops_the_stage_list_there() -> None:
    problem = Problem("SourceReady", "FetchFailed", "cannot fetch x; nothing applied or pruned")
    status = compose(snap(report=report(revision=None, problem=problem)), {}, NOW)
    assert conditions(status) == {"Ready": ("False", "FetchFailed"), "SpecValid": ("True", "Valid"),
                                  "SourceReady": ("False", "FetchFailed"), "Fighting": ("False", "NoFight")}
    assert "revision" not in status["sync"]


def test_a_render_problem_reports_the_source_as_fine() -> None:
    problem = Problem("RenderReady", "InvalidManifest", "app/x.yaml:3: invalid YAML")
    found = conditions(compose(snap(report=report(problem=problem)), {}, NOW))
    assert found["SourceReady"] == ("True", "Fetched") and found["RenderReady"] == ("False", "InvalidManifest")
    assert "Applied" not in found


def test_failures_and_prune_states() -> None:
    failed = ChangeSet([Change(A, Action.FAILED, "forbidden")])
    status = compose(snap(report=report(applied=failed, pending_prune=(B,))), {}, NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Applied"]["message"] == "ConfigMap prod/a failed: forbidden"
    assert by_type["Pruned"]["reason"] == "PruneDisabled" and "ConfigMap prod/b" in by_type["Pruned"]["message"]
    pruned = compose(snap(report=report(pruned=ChangeSet([Change(B, Action.DELETED, "pruned")]))), {}, NOW)
    assert {c["type"]: c["message"] for c in pruned["conditions"]}["Pruned"] == "deleted ConfigMap prod/b"


def test_transition_times_survive_unchanged_conditions() -> None:
    first = compose(snap(), {}, NOW)
    later = compose(snap(), first, NOW + dt.timedelta(minutes=5))
    assert later["conditions"] == first["conditions"]
    broken = compose(snap(report=report(problem=Problem("RenderReady", "EmptyRender", "empty"))), later,
                     NOW + dt.timedelta(minutes=6))
    times = {c["type"]: c["lastTransitionTime"] for c in broken["conditions"]}
    assert times["Ready"] == "2026-03-01T12:06:00Z" and times["SourceReady"] == "2026-03-01T12:00:00Z"


def test_drift_list_current_first_then_recent_reverts() -> None:
    entries = [drift(B, "Reverted", "2026-03-01T11:00:00Z"), drift(A, "Unresolved"),
               drift(B, "Reverted", "2026-03-01T11:05:00Z")]
    listed = compose(snap(drift=entries), {}, NOW)["drift"]
    assert [(d["object"], d["state"], d["at"]) for d in listed] == [
        ("ConfigMap prod/a", "Unresolved", "2026-03-01T11:00:00Z"),
        ("ConfigMap prod/b", "Reverted", "2026-03-01T11:05:00Z"),
        ("ConfigMap prod/b", "Reverted", "2026-03-01T11:00:00Z"),
    ]
    assert listed[0] == {"object": "ConfigMap prod/a", "fields": ["data.color"], "state": "Unresolved",
                         "at": "2026-03-01T11:00:00Z", "by": "bob@org", "manager": "kubectl-edit"}


def test_health_worst_wins_and_names_objects() -> None:
    health = {A: (Health.PROGRESSING, "0/3 replicas"), B: (Health.DEGRADED, "job failed")}
    assert compose(snap(health=health), {}, NOW)["health"] == {"status": "Degraded",
                                                              "message": "ConfigMap prod/b: job failed"}


def test_fights_raise_a_condition() -> None:
    status = compose(snap(fights=[Fight(A, 29.5, 1)]), {}, NOW)
    fighting = next(c for c in status["conditions"] if c["type"] == "Fighting")
    assert (fighting["status"], fighting["reason"]) == ("True", "FightDetected")
    assert "ConfigMap prod/a (fight #1)" in fighting["message"]


def test_patch_holds_only_what_changed() -> None:
    assert patch_for({"a": 1, "b": [1], "gone": True}, {"a": 1, "b": [2], "new": "x"}) == {
        "b": [2], "new": "x", "gone": None}
    assert patch_for({"a": 1}, {"a": 1}) == {}


def test_a_cascading_delete_is_reported_as_not_ready() -> None:
    finalizers = ("resources-finalizer.argocd.argoproj.io",)
    failed = Change(B, Action.FAILED, "admission denied")
    deleting = compose(snap(deletion=DeletionReport(finalizers, ChangeSet([Change(A, Action.DELETED)]))), {}, NOW)
    retrying = compose(snap(deletion=DeletionReport(finalizers, ChangeSet([failed]))), {}, NOW)
    managing = compose(snap(), {}, NOW)

    def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
        return next((c for c in status["conditions"] if c["type"] == type_), {})

    def brief(status: dict[str, Any], type_: str) -> tuple[str, str]:
        return condition(status, type_)["status"], condition(status, type_)["reason"]

    assert brief(deleting, "Ready") == ("False", "Deleting") and brief(deleting, "Deleting") == ("True", "Deleting")
    assert "resources-finalizer.argocd.argoproj.io" in condition(deleting, "Deleting")["message"]
    assert condition(retrying, "Deleting")["reason"] == condition(retrying, "Ready")["reason"] == "DeleteFailed"
    assert "ConfigMap prod/b" in condition(retrying, "Deleting")["message"]
    assert "admission denied" in condition(retrying, "Deleting")["message"]
    assert condition(managing, "Deleting") == {} and condition(managing, "Ready")["status"] == "True"


def test_the_status_patch_removes_what_left_a_nested_map() -> None:
    """Status is merge-patched: a counter of the last sync that is gone now must be removed, not kept."""
    previous = {"lastSyncResult": {"created": 2, "configured": 2, "summary": "2 created, 2 configured"},
                "sync": {"status": "Synced", "renderedBy": "kustomize v5.8.1"}, "drift": [{"object": "a"}], "old": 1}
    current = {"lastSyncResult": {"unchanged": 2, "summary": "2 unchanged"}, "sync": {"status": "Synced"},
               "drift": []}
    assert patch_for(previous, current) == {
        "lastSyncResult": {"created": None, "configured": None, "unchanged": 2, "summary": "2 unchanged"},
        "sync": {"renderedBy": None}, "drift": [], "old": None}
    assert patch_for(current, current) == {}


def test_health_is_missing_not_healthy_when_a_failed_sync_applied_nothing() -> None:
    spec = APP
    report = SyncReport(target="main", started=NOW, duration=0.1, revision=REV1,
                        problem=Problem("RenderReady", "RenderFailed", "kustomize: no"))
    status = compose(Snapshot(spec, report, Inventory()), {}, NOW)
    assert status["health"] == {"status": "Missing", "message": "nothing applied: RenderFailed"}
    empty = compose(Snapshot(spec, SyncReport(target="main", started=NOW, duration=0.1, revision=REV1), Inventory()),
                    {}, NOW)
    assert empty["health"] == {"status": "Healthy", "message": "no objects"}


def test_a_cycle_that_could_not_resolve_keeps_the_last_compared_revision() -> None:
    synced = compose(Snapshot(APP, SyncReport(target="main", started=NOW, duration=0.1, revision=REV1,
                                              renderer="plain"), Inventory()), {}, NOW)
    failed = compose(Snapshot(APP, SyncReport(target="main", started=NOW, duration=0.1,
                                              problem=Problem("SourceReady", "FetchFailed", "no")), Inventory()),
                     synced, NOW)
    assert failed["sync"]["status"] == "Error"
    assert (failed["sync"]["revision"], failed["sync"]["renderedBy"]) == (REV1.sha, "plain")


C = ObjectRef("", "ConfigMap", "prod", "c")


@pytest.mark.parametrize(("snapshot", "health"), [
    # an invalid spec or an unreachable source that never applied anything is not "not synced yet"
    (Snapshot(dataclasses.replace(APP, problems=("bad",)), report(revision=None, problem=Problem(
        "SpecValid", "InvalidSpec", "bad")), Inventory()),
     ("Missing", "nothing applied: InvalidSpec")),
    (Snapshot(APP, report(revision=None, problem=Problem("SourceReady", "FetchFailed", "down")), Inventory()),
     ("Missing", "nothing applied: FetchFailed")),
    # a failed create is Missing, however healthy the objects that were created are
    (snap(report=report(applied=ChangeSet([Change(A, Action.UNCHANGED), Change(C, Action.FAILED, "forbidden")]))),
     ("Missing", "ConfigMap prod/c: not created: forbidden")),
    # ... but an object that exists from before and failed to update keeps its own health
    (snap(report=report(applied=ChangeSet([Change(A, Action.FAILED, "conflict")]))), ("Healthy", "2 objects healthy")),
    (Snapshot(APP, report(refused=((C, "kind ConfigMap is not permitted"),)), Inventory()),
     ("Missing", "ConfigMap prod/c: not created: kind ConfigMap is not permitted")),
    # the worst in Argo CD's order: Unknown is worse than Degraded, Suspended better than Progressing
    (snap(health={A: (Health.UNKNOWN, "?"), B: (Health.DEGRADED, "job failed")}), ("Unknown", "ConfigMap prod/a: ?")),
    (snap(health={A: (Health.SUSPENDED, "paused"), B: (Health.PROGRESSING, "0/1")}),
     ("Progressing", "ConfigMap prod/b: 0/1")),
    (snap(health={A: (Health.SUSPENDED, "paused")}), ("Suspended", "ConfigMap prod/a: paused")),
    (snap(report=None), ("Unknown", "not synced yet")),
])
def test_health_is_truthful(snapshot: Snapshot, health: tuple[str, str]) -> None:
    got = compose(snapshot, {}, NOW)["health"]
    assert (got["status"], got["message"]) == health


# ---------------------------------------------------------------- history

def test_history_records_each_deployment_once_and_is_bounded() -> None:
    ok1 = report(applied=ChangeSet([Change(A, Action.CREATED)]))
    history, key = record_history([], ok1, limit=3, last=None)
    assert history == [{"id": 0, "revision": REV1.sha, "author": "alice@org", "commitTime": "2026-03-01T10:00:00Z",
                        "startedAt": "2026-03-01T12:00:00Z", "finishedAt": "2026-03-01T12:00:00Z",
                        "result": "Succeeded", "initiator": "automated", "message": "1 created"}]
    same, key = record_history(history, report(), limit=3, last=key)  # a resync of the same revision
    assert same == history
    failed = report(revision=REV2, applied=ChangeSet([Change(B, Action.FAILED, "denied")]))
    history, key = record_history(history, failed, limit=3, last=key)
    assert [(h["id"], h["revision"][:1], h["result"]) for h in history] == [(0, "1", "Succeeded"), (1, "2", "Failed")]
    assert history[-1]["message"] == "ConfigMap prod/b failed: denied"
    retried, key = record_history(history, failed, limit=3, last=key)  # the same failure retried: no new entry
    assert retried == history
    asked = report(revision=REV2, initiator="carol")
    for _ in range(3):  # a sync someone asked for is always recorded
        history, key = record_history(history, asked, limit=3, last=key)
    assert [(h["id"], h["initiator"]) for h in history] == [(2, "carol"), (3, "carol"), (4, "carol")]
    assert record_history(history, ok1, limit=0, last=key)[0] == []


def test_history_after_a_restart_does_not_repeat_the_newest_entry() -> None:
    history, _ = record_history([], report(), limit=10, last=None)
    again, _ = record_history(history, report(), limit=10, last=None)  # a new process: last is taken from status
    assert again == history


def test_history_is_in_the_status() -> None:
    entry = {"id": 0, "revision": REV1.sha, "result": "Succeeded"}
    assert compose(snap(history=[entry]), {}, NOW)["history"] == [entry]


def test_drift_names_an_unknown_user_explicitly() -> None:
    record = DriftRecord(A, ("spec.replicas",), "", "kubectl (scale)", "t", "Reverted", "why")
    assert compose(snap(drift=[record]), {}, NOW)["drift"] == [
        {"object": "ConfigMap prod/a", "fields": ["spec.replicas"], "state": "Reverted", "at": "t", "by": "unknown",
         "manager": "kubectl (scale)"}]


def test_hooks_and_retry_in_status() -> None:
    from driftguard.core.phases import Phase
    from reconciler.application import Retry
    from reconciler.hooks import HookRun

    run = HookRun("Job", "prod", "migrate-x7", Phase.PRE_SYNC, -1, "Failed", "job failed", "2026-03-01T12:00:00Z",
                  "2026-03-01T12:00:05Z", "app/hooks.yaml:1")
    problem = Problem("Applied", "HookFailed", "PreSync wave -1: PreSync hook Job prod/migrate-x7 failed")
    failed = report(hooks=(run,), hooks_ran=True, attempt=2, problem=problem)
    spec = dataclasses.replace(APP, retry=Retry(limit=3, duration=5.0, factor=2.0, max_duration=180.0))
    status = compose(snap(spec=spec, report=failed), {}, NOW)
    assert status["hooks"] == [{"kind": "Job", "namespace": "prod", "name": "migrate-x7", "phase": "PreSync",
                                "wave": -1, "result": "Failed", "message": "job failed",
                                "startedAt": "2026-03-01T12:00:00Z", "finishedAt": "2026-03-01T12:00:05Z",
                                "path": "app/hooks.yaml:1"}]
    assert status["retry"] == {"attempt": 2, "limit": 3, "message": "attempt 2 failed; retrying in 10s"}
    spent = compose(snap(spec=spec, report=dataclasses.replace(failed, attempt=4)), {}, NOW)["retry"]
    assert spent["message"].startswith("attempt 4 failed; no retries left (limit 3)")
    assert "retry" not in compose(snap(spec=spec), {}, NOW), "a good sync shows no retry"
    assert "retry" not in compose(snap(report=failed), {}, NOW), "nor does a failed one without syncPolicy.retry"
    assert "hooks" not in compose(snap(), {}, NOW)
