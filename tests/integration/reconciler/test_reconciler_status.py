"""Truthful status through a sequence of real syncs (real API server, real git): objects added, a sync that
fails, objects removed — health, lastSyncResult (replaced whole) and status.history checked after each; an
Application whose first revision fails shows Missing, not Healthy; drift made through ``scale`` names no user
(there is no mark) and the manager that owns spec.replicas, never a bystander that wrote another field."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard import cli
from driftguard.core import audittrail
from driftguard.kube import Kube

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"


def wait_status(harness: Harness, name: str, sha: str, sync: str) -> dict:
    def reached() -> dict | None:
        status = harness.status(name)
        s = status.get("sync") or {}
        return status if s.get("revision") == sha and s.get("status") == sync else None
    return wait_for(reached, what=f"{name} {sync} at {sha[:7]}")


def entries(status: dict) -> list[tuple[int, str, str, str]]:
    return [(h["id"], h["revision"][:7], h["result"], h["initiator"]) for h in status.get("history") or []]


def test_status_through_adds_a_failure_and_removals(harness: Harness, repo: Repo, cluster: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    repo.write("app/b.yaml", configmap("beta", {"k": "1"}))
    first = repo.commit("two objects")
    harness.make_app("svc", repo)
    harness.start()
    status = harness.wait_synced("svc", first)
    assert status["health"] == {"status": "Healthy", "message": "2 objects healthy"}
    assert status["lastSyncResult"] == {"created": 2, "summary": "2 created"}
    assert entries(status) == [(0, first[:7], "Succeeded", "automated")]
    entry = status["history"][0]
    assert (entry["author"], entry["message"]) == ("alice@org", "2 created")
    assert entry["startedAt"] <= entry["finishedAt"] and entry["commitTime"]

    # a name the API server rejects: that object fails, the others stay; it is Missing, the sync an Error
    repo.write("app/c.yaml", configmap("Not_A_Valid_Name", {"k": "1"}))
    repo.write("app/a.yaml", configmap("alpha", {"k": "2"}))
    broken = repo.commit("a bad name")
    harness.refresh("svc")
    status = wait_status(harness, "svc", broken, "Error")
    assert status["health"]["status"] == "Missing"
    assert status["health"]["message"].startswith(f"ConfigMap {harness.namespace}/Not_A_Valid_Name: not created")
    assert set(status["lastSyncResult"]) == {"configured", "unchanged", "failed", "summary"}, status["lastSyncResult"]
    assert (status["lastSyncResult"]["configured"], status["lastSyncResult"]["failed"]) == (1, 1)
    failed = wait_for(lambda: entries(harness.status("svc"))[1:] and harness.status("svc"), what="history entry")
    assert entries(failed) == [(0, first[:7], "Succeeded", "automated"), (1, broken[:7], "Failed", "automated")]
    assert "Not_A_Valid_Name" in failed["history"][1]["message"]

    # removing the bad object and beta: synced, beta pruned; the counters are this sync's alone
    repo.remove("app/c.yaml")
    repo.remove("app/b.yaml")
    fixed = harness.commit_and_sync(repo, "svc", "remove two")
    status = harness.status("svc")
    assert status["lastSyncResult"] == {"unchanged": 1, "deleted": 1, "summary": "1 unchanged, 1 deleted"}, (
        status["lastSyncResult"])
    assert status["health"] == {"status": "Healthy", "message": "1 objects healthy"}
    assert entries(status)[-1] == (2, fixed[:7], "Succeeded", "automated")

    # a resync of the same revision is not a new deployment
    harness.refresh("svc")
    time.sleep(1.0)
    assert len(harness.status("svc")["history"]) == 3

    # revisionHistoryLimit bounds the history (applied at the next sync)
    harness.patch_app("svc", {"spec": {"revisionHistoryLimit": 2}})
    trimmed = wait_for(lambda: len(harness.status("svc")["history"]) == 2 and harness.status("svc"),
                       what="history trimmed to 2")
    assert [e[0] for e in entries(trimmed)] == [1, 2]

    # driftguard history prints it, newest first
    rc, out = run_cli(capsys, "history", "svc", "-n", harness.namespace, "--kubeconfig", str(cluster.admin_kubeconfig))
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["ID", "REVISION", "AUTHOR", "COMMITTED", "STARTED", "FINISHED", "RESULT",
                                            "INITIATOR", "MESSAGE"]
    assert [line.split()[:3] for line in lines[1:]] == [["2", fixed[:7], "alice@org"], ["1", broken[:7], "alice@org"]]
    assert lines[1].split()[6:8] == ["Succeeded", "automated"] and lines[2].split()[6:8] == ["Failed", "automated"]
    rc, out = run_cli(capsys, "history", "nope", "-n", harness.namespace, "--kubeconfig",
                      str(cluster.admin_kubeconfig))
    assert rc == 1 and f"no Application {harness.namespace}/nope" in out


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_an_application_whose_first_revision_fails_is_missing_not_healthy(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", "kind: ConfigMap\nmetadata: {name: [unclosed\n")
    sha = repo.commit("broken yaml")
    harness.make_app("broken", repo)
    harness.start()
    status = wait_status(harness, "broken", sha, "Error")
    assert status["inventoryCount"] == 0
    assert status["health"] == {"status": "Missing", "message": "nothing applied: InvalidManifest"}
    assert entries(status) == [(0, sha[:7], "Failed", "automated")]


def test_a_non_automated_application_never_synced_is_missing(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"k": "1"}))
    sha = repo.commit("one")
    harness.make_app("manual", repo, automated=False)
    harness.start()
    status = wait_status(harness, "manual", sha, "OutOfSync")
    assert status["health"]["status"] == "Missing"
    assert status["history"] == []  # nothing was deployed
    assert harness.cm("alpha") is None


def test_scale_drift_names_the_owner_of_replicas_and_no_user(harness: Harness, repo: Repo, laptop: Kube) -> None:
    repo.write("app/d.yaml", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    })
    sha = repo.commit("deployment")
    harness.make_app("svc", repo, self_heal=False)
    harness.start()
    harness.wait_synced("svc", sha)
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web"
    laptop.request("PATCH", path + "/scale", body={"spec": {"replicas": 9}}, content_type=MERGE,
                   query={"fieldManager": "kubectl-scale"})
    # a bystander writes another field of the same object right after: it is the object's last writer
    harness.admin.request("PATCH", path, body={"metadata": {"annotations": {"touched": "yes"}}}, content_type=MERGE,
                          query={"fieldManager": "bystander"})

    def drift() -> dict | None:
        found = [d for d in harness.status("svc").get("drift") or [] if d["fields"] == ["spec.replicas"]]
        return found[0] if found else None
    entry = wait_for(drift, what="the scale recorded as drift")
    assert entry["by"] == "unknown"
    assert entry["manager"] == "kubectl-scale (scale)"
    assert entry["state"] == "Unresolved"

    # the webhook's audit of that warn-mode scale (an Event, as the webhook aggregates its records) names the user
    record = {"decision": "warn", "time": entry["at"], "user": "alice", "operation": "UPDATE", "subresource": "scale",
              "object": f"Deployment {harness.namespace}/web", "application": f"{harness.namespace}/svc",
              "fields": [{"field": "spec.replicas", "declared": "2", "requested": "9"}]}
    harness.admin.request("POST", f"/apis/events.k8s.io/v1/namespaces/{harness.namespace}/events", body={
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.audit-warn", "labels": {audittrail.EVENT_LABEL: "true"},
                     "annotations": {audittrail.RECORD_ANNOTATION: audittrail.encode_record(record)}},
        "eventTime": entry["at"].replace("Z", ".000000Z"), "reportingController": "driftguard.io/webhook",
        "reportingInstance": "webhook-0", "action": "Audit", "reason": "DriftWarned", "type": "Warning",
        "note": "spec.replicas: 2 -> 9",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": harness.namespace, "name": "web"}})
    named = wait_for(lambda: next((d for d in harness.status("svc").get("drift") or []
                                   if d["fields"] == ["spec.replicas"] and d["by"] == "alice"), None),
                     what="the drift attributed to the audited user")
    assert named["manager"] == "kubectl-scale (scale)"
