"""Self-heal: drift by the laptop user (no webhook installed) is reverted through the watch and recorded;
selfHeal off reports it; break-glass is respected until git changes the object or its TTL passes;
a fight makes self-heal back off.

How fast a revert is (well under a second) is measured by ``bench/bench_reconciler_drift.py``, not
asserted here: these tests wait up to ``HEAL_BOUND``, generous under CPU load yet well inside the 60 s
resync, so a revert seen in time is the watch's doing, not the periodic full sync's."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard.core.clock import format_time
from driftguard.core.contract import ANN_BREAK_GLASS, ANN_BREAK_GLASS_GRANTED, ANN_DRIFT, BreakGlass, DriftMark
from driftguard.kube import Kube

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"
HEAL_BOUND = 20.0


@pytest.fixture
def synced(harness: Harness, repo: Repo, request: pytest.FixtureRequest) -> str:
    self_heal = getattr(request, "param", True)
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    repo.write("app/d.yaml", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    })
    sha = repo.commit("good")
    harness.make_app("svc", repo, self_heal=self_heal)
    harness.start()
    harness.wait_synced("svc", sha)
    wait_for(lambda: harness.status("svc")["health"]["status"] == "Progressing", what="health reported")
    return sha


def edit(kube: Kube, harness: Harness, patch: dict[str, Any], name: str = "alpha") -> dict[str, Any]:
    return kube.request("PATCH", f"/api/v1/namespaces/{harness.namespace}/configmaps/{name}", body=patch,
                        content_type=MERGE, query={"fieldManager": "kubectl-edit"})


def color(harness: Harness) -> str | None:
    cm = harness.cm("alpha")
    return cm["data"].get("color") if cm else None


def test_laptop_edit_is_reverted(harness: Harness, synced: str, laptop: Kube) -> None:
    edit(laptop, harness, {"data": {"color": "red"}})
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, interval=0.01, what="the edit reverted")

    entry = wait_for(lambda: next(iter(harness.status("svc")["drift"]), None), what="drift recorded")
    assert entry == entry | {"object": f"ConfigMap {harness.namespace}/alpha", "fields": ["data.color"],
                             "state": "Reverted", "manager": "kubectl-edit"}
    assert harness.status("svc")["sync"]["status"] == "Synced"
    events = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"]
    assert any(e["reason"] == "DriftReverted" and e["involvedObject"]["name"] == "alpha" for e in events)


def test_deleted_object_is_recreated(harness: Harness, synced: str, laptop: Kube) -> None:
    laptop.request("DELETE", f"/api/v1/namespaces/{harness.namespace}/configmaps/alpha")
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, interval=0.02, what="alpha re-created")


def test_removed_managed_label_is_restored(harness: Harness, synced: str, laptop: Kube) -> None:
    edit(laptop, harness, {"metadata": {"labels": {"driftguard.io/managed": None}}})
    wait_for(lambda: (harness.cm("alpha") or {})["metadata"].get("labels", {}).get("driftguard.io/managed") == "true",
             timeout=HEAL_BOUND, interval=0.02, what="label restored")


def test_scale_of_a_declared_replica_count_is_reverted(harness: Harness, synced: str, laptop: Kube) -> None:
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"
    laptop.request("PATCH", path + "/scale", body={"spec": {"replicas": 9}}, content_type=MERGE)
    wait_for(lambda: harness.get(path)["spec"]["replicas"] == 2, timeout=HEAL_BOUND, interval=0.02,  # type: ignore[index]
             what="replicas back to 2")


def test_a_privileged_sidecar_host_path_and_host_pid_added_around_the_webhook_are_removed(
    harness: Harness, synced: str, laptop: Kube,
) -> None:
    """Path 5, as a write the webhook never saw (here no webhook runs at all): what git does not list under
    the pod template is drift, and self-heal removes it even though the laptop's field manager owns it."""
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"
    laptop.request("PATCH", path, content_type="application/strategic-merge-patch+json",
                   query={"fieldManager": "kubectl-patch"}, body={"spec": {"template": {
        "spec": {"hostPID": True,
                 "containers": [{"name": "sidecar", "image": "busybox:1", "securityContext": {"privileged": True}}],
                 "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}})

    def clean() -> bool:
        spec = (harness.get(path) or {})["spec"]["template"]["spec"]
        return ([c["name"] for c in spec["containers"]] == ["web"] and not spec.get("volumes")
                and not spec.get("hostPID"))
    wait_for(clean, timeout=HEAL_BOUND, interval=0.02, what="sidecar, hostPath volume and hostPID removed")
    entry = wait_for(lambda: next((d for d in harness.status("svc")["drift"] if d["object"].endswith("/web")), None),
                     what="the revert recorded")
    assert entry["state"] == "Reverted" and entry["manager"] == "kubectl-patch"
    assert set(entry["fields"]) == {"spec.template.spec.containers[name=sidecar]",
                                    "spec.template.spec.volumes[name=root]", "spec.template.spec.hostPID"}


@pytest.mark.parametrize("synced", [False], indirect=True)
def test_self_heal_off_reports_drift(harness: Harness, synced: str, laptop: Kube) -> None:
    edit(laptop, harness, {"data": {"color": "red"}})
    entry = wait_for(lambda: next(iter(harness.status("svc")["drift"]), None), what="drift reported")
    assert entry == entry | {"fields": ["data.color"], "state": "Unresolved", "manager": "kubectl-edit"}
    status = harness.status("svc")
    assert status["sync"]["status"] == "OutOfSync"
    assert "selfHeal is off" in harness.condition("svc", "Ready")["message"]
    harness.refresh("svc")  # a full sync does not revert it either
    time.sleep(0.5)
    assert color(harness) == "red"

    edit(laptop, harness, {"data": {"color": "blue"}})  # put back by hand
    wait_for(lambda: harness.status("svc")["sync"]["status"] == "Synced", what="drift cleared")
    assert harness.status("svc")["drift"] == []


def test_warn_mode_drift_mark_names_the_user(harness: Harness, synced: str, admin: Kube) -> None:
    mark = harness.sealed(harness.cm("alpha"), DriftMark(user="bob@org", at="2026-01-01T00:00:00Z",
                                                         fields=("data.color",)).encode())
    edit(admin, harness, {"metadata": {"annotations": {ANN_DRIFT: mark}}, "data": {"color": "red"}})
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, interval=0.01, what="reverted")
    wait_for(lambda: ANN_DRIFT not in harness.cm("alpha")["metadata"]["annotations"],  # type: ignore[index]
             what="drift mark removed")
    entry = wait_for(lambda: next(iter(harness.status("svc")["drift"]), None), what="drift recorded")
    assert entry["by"] == "bob@org"


def grant(harness: Harness, commit: str, seconds: float) -> str:
    """A grant on ConfigMap alpha as the mutating webhook seals it (granted now, for ``seconds``)."""
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=seconds)
    return harness.sealed(harness.cm("alpha"), BreakGlass(
        user="oncall@org", at=format_time(now), reason="INC-42 hotfix", commit=commit,
        expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")).encode())


def test_break_glass_is_left_alone_until_git_changes_it(
    harness: Harness, repo: Repo, synced: str, admin: Kube
) -> None:
    annotations = {ANN_BREAK_GLASS: "INC-42 hotfix", ANN_BREAK_GLASS_GRANTED: grant(harness, synced, 3600)}
    edit(admin, harness, {"metadata": {"annotations": annotations}, "data": {"color": "red"}})
    entry = wait_for(lambda: next(iter(harness.status("svc")["drift"]), None), what="break-glass reported")
    assert entry["state"] == "BreakGlass"
    harness.refresh("svc")
    time.sleep(0.5)
    assert color(harness) == "red"
    assert "break-glass by oncall@org" in harness.condition("svc", "Ready")["message"]

    repo.write("app/a.yaml", configmap("alpha", {"color": "green"}))
    harness.commit_and_sync(repo, "svc", "the real fix, in git")
    live = harness.cm("alpha")
    assert live is not None and live["data"] == {"color": "green"}
    marks = {ANN_BREAK_GLASS, ANN_BREAK_GLASS_GRANTED}
    wait_for(lambda: not marks & set(harness.cm("alpha")["metadata"]["annotations"]),  # type: ignore[index]
             what="break-glass marks removed")


def test_break_glass_expires(harness: Harness, synced: str, admin: Kube) -> None:
    annotations = {ANN_BREAK_GLASS: "short", ANN_BREAK_GLASS_GRANTED: grant(harness, synced, 2)}
    edit(admin, harness, {"metadata": {"annotations": annotations}, "data": {"color": "red"}})
    time.sleep(0.5)
    assert color(harness) == "red"
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, what="reverted after the TTL")
    wait_for(lambda: ANN_BREAK_GLASS_GRANTED not in harness.cm("alpha")["metadata"]["annotations"],  # type: ignore[index]
             what="grant removed")


def test_a_grant_written_around_the_webhook_is_reverted_and_removed(harness: Harness, synced: str,
                                                                   admin: Kube) -> None:
    """Path 7: a hand-written grant (expiring in 2099, blaming someone else) buys nothing, and no mark names the
    victim; an honest grant stretched past grant time + TTL ends at the TTL."""
    forged = BreakGlass(user="victim@org", at=format_time(dt.datetime.now(dt.UTC)), reason="forged",
                        commit=synced, expires_at="2099-01-01T00:00:00Z").encode()
    edit(admin, harness, {"metadata": {"annotations": {ANN_BREAK_GLASS: "forged", ANN_BREAK_GLASS_GRANTED: forged}},
                          "data": {"color": "red"}})
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, what="the forged grant's change reverted")
    wait_for(lambda: ANN_BREAK_GLASS_GRANTED not in harness.cm("alpha")["metadata"]["annotations"],  # type: ignore[index]
             what="forged grant removed")
    assert "break-glass" not in harness.condition("svc", "Ready").get("message", "")


def test_a_grant_lasts_no_longer_than_the_reconcilers_ttl(harness: Harness, repo: Repo, admin: Kube) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    synced = repo.commit("alpha")
    harness.make_app("svc", repo)
    harness.start(break_glass_ttl=2.0)
    harness.wait_synced("svc", synced)
    annotations = {ANN_BREAK_GLASS: "long", ANN_BREAK_GLASS_GRANTED: grant(harness, synced, 365 * 24 * 3600)}
    edit(admin, harness, {"metadata": {"annotations": annotations}, "data": {"color": "red"}})
    wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, what="reverted at grant time + TTL, not in a year")


def test_fight_backs_off(harness: Harness, synced: str, laptop: Kube) -> None:
    for i in range(6):
        edit(laptop, harness, {"data": {"color": f"red-{i}"}})
        wait_for(lambda: color(harness) == "blue", timeout=HEAL_BOUND, interval=0.01, what=f"revert {i}")
    harness.wait_condition("svc", "Fighting", "True", "FightDetected")
    edit(laptop, harness, {"data": {"color": "red-again"}})
    time.sleep(0.5)
    assert color(harness) == "red-again", "self-heal should back off during a fight"
    entry = wait_for(lambda: next((d for d in harness.status("svc")["drift"] if d["state"] == "BackedOff"), None),
                     what="backed-off drift reported")
    assert entry["fields"] == ["data.color"]
    events = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"]
    assert any(e["reason"] == "FightDetected" for e in events)
