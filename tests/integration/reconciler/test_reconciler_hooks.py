"""Sync phases, waves and hooks against the real API server (Argo CD's annotations).

There is no Job controller on this control plane (no kube-controller-manager): a hook Job is completed by
the test, which writes the Job's status the way the Job controller would (the status subresource:
``startTime``, ``completionTime``, ``succeeded`` and the ``SuccessCriteriaMet``/``Complete`` or
``FailureTarget``/``Failed`` conditions). The cluster tier (tests/cluster/test_hooks.py) runs the same
kind of hooks with a real controller-manager. Order is asserted from the API server itself: every write
gets a resourceVersion from etcd's single revision counter, so a lower one was written earlier.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.hook_jobs import await_job, finish, job, jobs, wave
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard.core.contract import ANN_DECLARED, LABEL_MANAGED
from reconciler.application import AppKey
from reconciler.desired import ANN_HOOK_OF
from reconciler.record import Operation

pytestmark = pytest.mark.integration

def rv(obj: dict[str, Any] | None) -> int:
    assert obj is not None
    return int(obj["metadata"]["resourceVersion"])


def test_phases_and_waves_run_in_order_and_hooks_are_not_managed(harness: Harness, repo: Repo) -> None:
    repo.write("app/waves.yaml", [wave("third", 1), wave("first", -1), wave("second", 0)])
    repo.write("app/hooks.yaml", [
        job("migrate", "PreSync", generate=True, **{"argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
        job("smoke", "PostSync"),  # named; default policy BeforeHookCreation
    ])
    sha = repo.commit("waves and hooks")
    harness.make_app("svc", repo)
    harness.start(wave_timeout=60.0)

    migrate = await_job(harness, "migrate-")
    assert [harness.cm(n) for n in ("first", "second", "third")] == [None, None, None], "applied before PreSync"
    for n in (LABEL_MANAGED,):
        assert n not in (migrate["metadata"].get("labels") or {}), "a hook is never a managed object"
    assert ANN_DECLARED not in migrate["metadata"]["annotations"]
    assert migrate["metadata"]["annotations"][ANN_HOOK_OF] == f"{harness.namespace}/svc"
    finish(harness, migrate["metadata"]["name"])

    smoke = await_job(harness, "smoke")
    first, second, third = (harness.cm(n) for n in ("first", "second", "third"))
    assert rv(migrate) < rv(first) < rv(second) < rv(third) < rv(smoke), "phases, then waves ascending"
    assert LABEL_MANAGED not in (smoke["metadata"].get("labels") or {})
    finish(harness, "smoke")

    status = harness.wait_synced("svc", sha, timeout=60.0)
    # HookSucceeded: the PreSync Job is deleted once it succeeded; the PostSync one is kept (BeforeHookCreation)
    wait_for(lambda: not jobs(harness, "migrate-"), what="the succeeded PreSync hook deleted")
    assert [j["metadata"]["name"] for j in jobs(harness, "smoke")] == ["smoke"]
    hooks = {(h["phase"], h["kind"], h["result"]) for h in status["hooks"]}
    assert hooks == {("PreSync", "Job", "Succeeded"), ("PostSync", "Job", "Succeeded")}
    assert {h["name"] for h in status["hooks"]} == {migrate["metadata"]["name"], "smoke"}
    assert all(h["path"].startswith("app/hooks.yaml:") for h in status["hooks"])
    assert status["inventoryCount"] == 3, "hooks are not in the inventory (never pruned as managed objects)"
    assert not any("Job" in e["id"] for e in status["inventory"])
    events = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == "svc"}
    assert "HookSucceeded" in reasons

    # a resync of an Application in sync runs no hook and writes nothing
    before = {n: rv(harness.cm(n)) for n in ("first", "second", "third")}
    smoke_rv = rv(jobs(harness, "smoke")[0])
    synced_at = status["lastSyncTime"]
    time.sleep(1.1)  # lastSyncTime has one-second resolution: the resync's must differ
    harness.refresh("svc")
    wait_for(lambda: harness.status("svc").get("lastSyncTime") != synced_at, what="a resync")
    assert {n: rv(harness.cm(n)) for n in ("first", "second", "third")} == before
    assert not jobs(harness, "migrate-") and rv(jobs(harness, "smoke")[0]) == smoke_rv

    # a change runs the hooks again: a new PreSync Job (generateName), the PostSync one re-created
    repo.write("app/waves.yaml", [wave("third", 1), wave("first", -1), wave("second", 0, {"wave": "changed"})])
    sha = repo.commit("second changes")
    harness.refresh("svc")
    again = await_job(harness, "migrate-")
    assert again["metadata"]["name"] != migrate["metadata"]["name"]
    assert harness.cm("second")["data"] == {"wave": "0"}, "applied before the PreSync hook completed"  # type: ignore[index]
    finish(harness, again["metadata"]["name"])
    recreated = wait_for(lambda: (js := jobs(harness, "smoke")) and rv(js[0]) != smoke_rv and js[0], 30.0,
                         what="the PostSync hook re-created (BeforeHookCreation)")
    assert recreated["metadata"]["uid"] != smoke["metadata"]["uid"]
    finish(harness, "smoke")
    harness.wait_synced("svc", sha, timeout=60.0)
    assert harness.cm("second")["data"] == {"wave": "changed"}  # type: ignore[index]


def test_a_failed_presync_hook_stops_the_sync_and_runs_syncfail(harness: Harness, repo: Repo) -> None:
    repo.write("app/app.yaml", [configmap("app", {"k": "v"})])
    repo.write("app/hooks.yaml", [job("migrate", "PreSync"), job("cleanup", "SyncFail", generate=True)])
    repo.commit("a migration that fails")
    harness.make_app("svc", repo)
    harness.start(wave_timeout=60.0)

    await_job(harness, "migrate")
    finish(harness, "migrate", ok=False)
    cleanup = await_job(harness, "cleanup-")
    finish(harness, cleanup["metadata"]["name"])
    applied = harness.wait_condition("svc", "Applied", "False", "HookFailed", timeout=60.0)
    assert applied["message"].startswith(f"PreSync wave 0: PreSync hook Job {harness.namespace}/migrate failed: "
                                         "the test says so")
    assert "not carried out: 1 object(s)" in applied["message"]
    assert harness.cm("app") is None, "nothing of the Sync phase is applied after a failed PreSync hook"
    status = wait_for(lambda: (s := harness.status("svc")) and len(s.get("hooks") or []) == 2 and s)
    assert {(h["phase"], h["result"]) for h in status["hooks"]} == {("PreSync", "Failed"), ("SyncFail", "Succeeded")}
    assert status["sync"]["status"] == "Error"


def test_a_wave_that_does_not_become_healthy_stops_the_next(harness: Harness, repo: Repo) -> None:
    # a Job as an ordinary (non-hook) object in wave 0: nothing completes it, so wave 1 never comes
    plain = job("batch", "PreSync")
    del plain["metadata"]["annotations"]
    plain["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "0"}
    repo.write("app/app.yaml", [plain, wave("later", 1)])
    repo.commit("a wave that waits")
    harness.make_app("svc", repo)
    harness.start(wave_timeout=1.0)

    applied = harness.wait_condition("svc", "Applied", "False", "WaveNotHealthy", timeout=30.0)
    assert applied["message"].startswith("Sync wave 0: not healthy after 1s (--wave-timeout): ")
    assert "job running" in applied["message"] and "Sync wave 1" in applied["message"]
    assert harness.cm("later") is None
    status = harness.status("svc")
    assert status["inventoryCount"] == 1, "an object of a wave never reached is not in the inventory"
    finish(harness, "batch")
    wait_for(lambda: harness.cm("later"), 30.0, what="wave 1 applied once wave 0 is healthy (the retry)")


def test_bad_wave_and_nameless_objects_name_the_file(harness: Harness, repo: Repo) -> None:
    repo.write("app/app.yaml", [configmap("ok", {"k": "v"}),
                                configmap("bad", {"k": "v"}, annotations={"argocd.argoproj.io/sync-wave": "soon"})])
    repo.commit("a wave that is not a number")
    harness.make_app("svc", repo)
    harness.start()
    ready = harness.wait_condition("svc", "RenderReady", "False", "InvalidManifest")
    assert ready["message"].startswith("app/app.yaml:")
    assert "ConfigMap bad: annotation argocd.argoproj.io/sync-wave: 'soon' is not an integer" in ready["message"]
    assert harness.cm("ok") is None, "nothing of a revision with an unreadable annotation is applied"

    repo.write("app/app.yaml", [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}])
    repo.commit("generateName on a plain object")
    harness.refresh("svc")
    ready = wait_for(lambda: (c := harness.condition("svc", "RenderReady")) and "generateName" in c["message"] and c)
    assert ready["message"].startswith("app/app.yaml:1: ConfigMap has no metadata.name (only a hook")


def test_a_sync_someone_asks_for_runs_the_hooks_even_in_sync(harness: Harness, repo: Repo) -> None:
    """Argo CD's manual sync runs the hooks whatever the sync status; the automated sync only when out of sync.
    (The controller's on-demand entry point is called directly; its HTTP and RBAC side is test_reconciler_verbs'.)"""
    notify = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"sent": "yes"}, "metadata": {
        "generateName": "notify-", "annotations": {"argocd.argoproj.io/hook": "PostSync"}}}
    repo.write("app/app.yaml", [configmap("app", {"k": "v"}), notify])
    sha = repo.commit("an app and a PostSync notification")
    harness.make_app("svc", repo)
    service = harness.start()

    def notifications() -> list[str]:
        items = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/configmaps")["items"]
        return sorted(i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("notify-"))
    harness.wait_synced("svc", sha)
    first = wait_for(notifications, what="the PostSync hook (a ConfigMap: done once it exists)")
    assert len(first) == 1

    operation = service.controller.sync(AppKey(harness.namespace, "svc"), Operation("tester"), 30.0)
    assert operation is not None and operation.report is not None and operation.done.is_set()
    assert [h.result for h in operation.report.hooks] == ["Succeeded"] and operation.report.hooks_ran
    assert len(notifications()) == 2, "a sync someone asked for runs the hooks although nothing is out of sync"

    synced_at = harness.status("svc")["lastSyncTime"]
    time.sleep(1.1)  # lastSyncTime has one-second resolution
    harness.refresh("svc")
    wait_for(lambda: harness.status("svc").get("lastSyncTime") != synced_at, what="an automated resync")
    assert len(notifications()) == 2, "the automated resync of an Application in sync runs none"
