"""The applier against an in-memory cluster: writes only what differs, honours selfHeal, backs off
fights, removes stale marks, and prunes only what is still stamped as the Application's."""

from __future__ import annotations

from typing import Any, cast

import pytest
from support.fake_cluster import TYPES, FakeCluster
from support.reconciler_builders import MARKS, NOW, REV1, REV2, cm, desired, sealed

from driftguard.core.changes import Action
from driftguard.core.contract import (
    ANN_ADOPT,
    ANN_APPLICATION,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_DRIFT,
    BreakGlass,
    DriftMark,
)
from driftguard.core.inventory import Entry
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.apply import Applier, Mode
from reconciler.desired import Desired
from reconciler.fights import FightDetector

HEAL = Mode(apply=True, self_heal=True)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def applier(cluster: FakeCluster) -> Applier:
    return Applier(cast(Cluster, cluster), fights=FightDetector(limit=2, window=60), concurrency=2, clock=lambda: NOW,
                   marks=MARKS)


def many(count: int, revision: Any = REV1, value: str = "v") -> list[Desired]:
    return [desired(cm(f"cm-{i:02d}", {"k": value}), revision=revision) for i in range(count)]


def actions(outcomes: list[Any]) -> list[Action]:
    return sorted({o.change.action for o in outcomes})


def test_first_sync_creates_then_a_resync_writes_nothing(cluster: FakeCluster, applier: Applier) -> None:
    objects = many(12)
    assert actions(applier.sync_all(objects, HEAL)) == [Action.CREATED]
    versions = {k: o["metadata"]["resourceVersion"] for k, o in cluster.objects.items()}
    cluster.calls.clear()

    outcomes = applier.sync_all(many(12, revision=REV2), HEAL)  # a commit that touched none of them

    assert actions(outcomes) == [Action.UNCHANGED]
    assert cluster.writes() == 0 and cluster.calls["apply-dry-run"] == 0
    assert cluster.calls["list"] == 1, "one list for twelve objects of one kind in one namespace"
    assert {k: o["metadata"]["resourceVersion"] for k, o in cluster.objects.items()} == versions


def test_a_change_dry_runs_and_applies_only_that_object(cluster: FakeCluster, applier: Applier) -> None:
    applier.sync_all(many(3), HEAL)
    cluster.calls.clear()
    changed = many(3, revision=REV2)
    changed[1] = desired(cm("cm-01", {"k": "new"}), revision=REV2)
    outcomes = {o.ref.name: o.change.action for o in applier.sync_all(changed, HEAL)}
    assert outcomes == {"cm-00": Action.UNCHANGED, "cm-01": Action.CONFIGURED, "cm-02": Action.UNCHANGED}
    assert (cluster.calls["apply-dry-run"], cluster.calls["apply"]) == (1, 1)


def test_drift_is_reverted_and_recorded(cluster: FakeCluster, applier: Applier) -> None:
    d = desired()
    applier.sync(d, None, HEAL)
    live = cluster.objects[("ConfigMap", "prod", "web")]
    live["data"] = {"color": "red"}
    live["metadata"]["annotations"][ANN_DRIFT] = sealed(DriftMark("bob@org", "t", ("data.color",)).encode(),
                                                        uid=live["metadata"]["uid"])
    live["metadata"]["managedFields"] = [
        {"manager": "kubectl-edit", "operation": "Update", "time": "t", "fieldsV1": {"f:data": {"f:color": {}}}},
        {"manager": "bystander", "operation": "Update", "time": "u", "fieldsV1": {"f:metadata": {"f:labels": {}}}}]

    outcome = applier.sync(d, None, HEAL, refetch=True)

    assert outcome.change.action is Action.CONFIGURED
    assert outcome.change.message == "reverted drift: data.color (changed by bob@org)"
    assert outcome.drift is not None and (outcome.drift.state, outcome.drift.by, outcome.drift.manager) == (
        "Reverted", "bob@org", "kubectl-edit")
    stored = cluster.objects[("ConfigMap", "prod", "web")]
    assert stored["data"] == {"color": "blue"} and ANN_DRIFT not in stored["metadata"]["annotations"]


def test_drift_without_a_mark_names_no_user_and_only_the_fields_owner(cluster: FakeCluster, applier: Applier) -> None:
    d = desired()
    applier.sync(d, None, HEAL)
    live = cluster.objects[("ConfigMap", "prod", "web")]
    live["data"] = {"color": "red"}
    live["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update", "time": "t", "fieldsV1": {"f:data": {"f:color": {}}}},
        {"manager": "bystander", "operation": "Update", "time": "u", "fieldsV1": {"f:metadata": {"f:labels": {}}}}]

    outcome = applier.sync(d, None, HEAL, refetch=True)

    assert outcome.change.message == "reverted drift: data.color (changed by an unknown user, field manager kubectl)"
    assert outcome.drift is not None and (outcome.drift.by, outcome.drift.manager) == ("", "kubectl")


def test_self_heal_off_reports_without_writing(cluster: FakeCluster, applier: Applier) -> None:
    d = desired()
    applier.sync(d, None, HEAL)
    cluster.objects[("ConfigMap", "prod", "web")]["data"] = {"color": "red"}
    cluster.calls.clear()
    outcome = applier.sync(d, None, Mode(apply=True, self_heal=False), refetch=True)
    assert outcome.change.action is Action.SKIPPED and cluster.writes() == 0
    assert outcome.drift is not None and outcome.drift.state == "Unresolved"


def test_without_automated_nothing_is_written(cluster: FakeCluster, applier: Applier) -> None:
    outcomes = applier.sync_all(many(2), Mode(apply=False, self_heal=False))
    assert actions(outcomes) == [Action.SKIPPED] and cluster.writes() == 0


def test_a_fight_backs_off(cluster: FakeCluster, applier: Applier) -> None:
    d = desired()
    applier.sync(d, None, HEAL)
    fights = []
    for _ in range(3):
        cluster.objects[("ConfigMap", "prod", "web")]["data"] = {"color": "red"}
        fights.append(applier.sync(d, None, HEAL, refetch=True).fight)
    assert fights == [False, False, True]
    cluster.objects[("ConfigMap", "prod", "web")]["data"] = {"color": "red"}
    outcome = applier.sync(d, None, HEAL, refetch=True)
    assert outcome.change.action is Action.SKIPPED and outcome.drift.state == "BackedOff"  # type: ignore[union-attr]
    assert cluster.objects[("ConfigMap", "prod", "web")]["data"] == {"color": "red"}


def test_failures_are_per_object_and_name_it(cluster: FakeCluster, applier: Applier) -> None:
    cluster.fail["apply"] = ResourceError("ConfigMap prod/web", 422, "Invalid", "data.k: must be a string")
    outcome = applier.sync(desired(), None, HEAL)
    assert (outcome.change.action, str(outcome.change)) == (
        Action.FAILED, "ConfigMap prod/web failed: data.k: must be a string")
    unknown = desired({"apiVersion": "y.io/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    (failed,) = applier.sync_all([unknown], HEAL)
    assert failed.change.action is Action.FAILED and "does not serve" in failed.change.message


def forged_grant(commit: str) -> str:
    return BreakGlass("mallory", "2026-03-01T11:00:00Z", "hotfix", commit, "2099-01-01T00:00:00Z").encode()


def test_adoption_removes_untrusted_marks_before_applying_gits_state(cluster: FakeCluster, applier: Applier) -> None:
    d = desired(revision=REV1)
    cluster.put(cm(data={"color": "red"}, namespace="prod", labels={"driftguard.io/extra": "x"}, annotations={
        ANN_BREAK_GLASS: "hotfix", ANN_BREAK_GLASS_GRANTED: forged_grant(REV1.sha), "note": "kept",
        ANN_ADOPT: "driftguard-system/svc"}))

    outcome = applier.sync(d, None, HEAL, refetch=True)

    assert outcome.change.action is Action.CONFIGURED, outcome.change
    assert outcome.change.message == (
        "adopted (driftguard.io/adopt on it); removed driftguard.io/break-glass, driftguard.io/break-glass-granted, "
        "label driftguard.io/extra "
        "found on an object driftguard did not manage (not trusted)")
    assert outcome.untrusted and outcome.expires_at is None
    stored = cluster.objects[("ConfigMap", "prod", "web")]
    assert stored["data"] == {"color": "blue"}
    assert stored["metadata"]["labels"] == {"driftguard.io/managed": "true"}
    assert {k for k in stored["metadata"]["annotations"] if k.startswith("driftguard.io/")} == set(
        d.obj["metadata"]["annotations"]) - {"note"}
    assert stored["metadata"]["annotations"]["note"] == "kept"
    assert cluster.log == [("patch", "web"), ("apply", "web")], "never managed while a forged mark is on it"

    again = applier.sync(d, None, HEAL, refetch=True)
    assert again.change.action is Action.UNCHANGED and not again.untrusted


def test_adoption_applies_nothing_when_the_object_changed_meanwhile(cluster: FakeCluster, applier: Applier) -> None:
    d = desired(revision=REV1)
    forged = {ANN_BREAK_GLASS_GRANTED: forged_grant(REV1.sha), ANN_ADOPT: "driftguard-system/svc"}
    cluster.put(cm(data={"color": "red"}, namespace="prod", annotations=forged))
    stale = cluster.get(TYPES["ConfigMap"], "prod", "web")
    cluster.put(cluster.objects[("ConfigMap", "prod", "web")])  # someone writes: a new resourceVersion

    outcome = applier.sync(d, stale, HEAL)

    assert outcome.change.action is Action.FAILED and outcome.change.message.startswith("not adopted:")
    assert "apply" not in {verb for verb, _ in cluster.log}
    assert cluster.objects[("ConfigMap", "prod", "web")]["data"] == {"color": "red"}


def test_an_object_driftguard_did_not_create_is_left_alone_without_its_owners_opt_in(
        cluster: FakeCluster, applier: Applier) -> None:
    cluster.put(cm(data={"token": "team b's"}, namespace="prod"))

    outcome = applier.sync(desired(revision=REV1), None, HEAL, refetch=True)

    assert outcome.change.action is Action.FAILED
    assert outcome.change.message.startswith("exists and driftguard did not create it: not taken over, not pruned")
    assert cluster.log == [] and cluster.objects[("ConfigMap", "prod", "web")]["data"] == {"token": "team b's"}


def entry(name: str) -> Entry:
    return desired(cm(name)).entry


def test_prune_deletes_only_objects_still_stamped_as_ours(cluster: FakeCluster, applier: Applier) -> None:
    applier.sync_all(many(3), HEAL)
    theirs = cluster.objects[("ConfigMap", "prod", "cm-01")]
    theirs["metadata"]["annotations"][ANN_APPLICATION] = "other/app"
    del cluster.objects[("ConfigMap", "prod", "cm-02")]
    cluster.put(cm("plain", namespace="prod"))

    outcomes, keep = applier.prune([entry("cm-00"), entry("cm-01"), entry("cm-02"), entry("plain")],
                                   "driftguard-system/svc")

    messages = {o.ref.name: (o.change.action, o.change.message) for o in outcomes}
    assert messages == {
        "cm-00": (Action.DELETED, "pruned: no longer declared in git"),
        "cm-01": (Action.SKIPPED, "not pruned: stamped by Application other/app"),
        "cm-02": (Action.SKIPPED, "already gone"),
        "plain": (Action.SKIPPED, "not pruned: no longer stamped by driftguard"),
    }
    assert keep == [] and set(cluster.objects) == {("ConfigMap", "prod", n) for n in ("cm-01", "plain")}


def test_failed_deletes_stay_in_the_inventory(cluster: FakeCluster, applier: Applier) -> None:
    applier.sync_all(many(1), HEAL)
    cluster.fail["delete"] = ResourceError("ConfigMap prod/cm-00", 500, "InternalError", "etcd timeout")
    outcomes, keep = applier.prune([entry("cm-00")], "driftguard-system/svc")
    assert outcomes[0].change.action is Action.FAILED and keep == [entry("cm-00")]


def test_prune_runs_in_reverse_apply_order(cluster: FakeCluster, applier: Applier) -> None:
    namespace = desired({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    applier.sync_all([namespace, *many(1)], HEAL)
    outcomes, _ = applier.prune([namespace.entry, entry("cm-00")], "driftguard-system/svc")
    assert [o.ref.kind for o in outcomes] == ["ConfigMap", "Namespace"]


def test_prune_says_why(cluster: FakeCluster, applier: Applier) -> None:
    applier.sync_all(many(1), HEAL)
    outcomes, _ = applier.prune([entry("cm-00")], "driftguard-system/svc", why="its Application is being deleted")
    assert str(outcomes[0].change.message) == "pruned: its Application is being deleted"


def test_sync_if_does_nothing_once_the_object_is_no_longer_wanted(cluster: FakeCluster, applier: Applier) -> None:
    d = desired()
    asked: list[bool] = []

    def still() -> bool:
        asked.append(applier.lock(d.ref).locked())  # asked under the object's lock, as prune deletes under it
        return False

    assert applier.sync_if(still, d, None, HEAL, refetch=True) is None
    assert asked == [True] and cluster.objects == {} and cluster.writes() == 0
    outcome = applier.sync_if(lambda: True, d, None, HEAL, refetch=True)
    assert outcome is not None and outcome.change.action is Action.CREATED
