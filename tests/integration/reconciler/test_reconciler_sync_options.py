"""Argo CD's per-object sync options and the Application's sync policy, against the real API server:
Prune=false, IgnoreExtraneous, Replace=true, Force=true, Delete=false with a PostDelete hook,
managedNamespaceMetadata, and syncPolicy.retry's limit. (Hook Jobs are completed by the test, as the Job
controller would: see test_reconciler_hooks.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.hook_jobs import await_job, finish, job, jobs
from support.reconciler_harness import APPS, Harness, Repo, configmap, wait_for

from driftguard.kube import KubeError

pytestmark = pytest.mark.integration

OPTIONS = "argocd.argoproj.io/sync-options"


def test_prune_false_and_ignore_extraneous(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("keep", {"k": "v"}, annotations={OPTIONS: "Prune=false"}))
    repo.write("app/b.yaml", configmap("quiet", {"k": "v"}, annotations={
        OPTIONS: "Prune=false", "argocd.argoproj.io/compare-options": "IgnoreExtraneous"}))
    repo.write("app/c.yaml", configmap("goes", {"k": "v"}))
    repo.write("app/d.yaml", configmap("stays", {"k": "v"}))
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("four"))

    repo.remove("app/a.yaml")
    repo.remove("app/c.yaml")
    sha = repo.commit("keep and goes leave git")
    harness.refresh("svc")
    wait_for(lambda: harness.cm("goes") is None, what="an ordinary object pruned")
    pruned = harness.wait_condition("svc", "Pruned", "False", "PruneDisabled")
    assert "keep" in pruned["message"], "Prune=false: kept and named"
    assert harness.cm("keep") is not None
    status = harness.status("svc")
    assert status["sync"] == {**status["sync"], "revision": sha, "status": "OutOfSync"}
    assert any("keep" in e["id"] for e in status["inventory"]), "still in the inventory"

    repo.write("app/a.yaml", configmap("keep", {"k": "v"}, annotations={OPTIONS: "Prune=false"}))
    repo.remove("app/b.yaml")  # Prune=false and IgnoreExtraneous: kept, and not OutOfSync for it
    sha = harness.commit_and_sync(repo, "svc", "keep is back, quiet leaves")
    assert harness.cm("quiet") is not None
    assert any("quiet" in e["id"] for e in harness.status("svc")["inventory"])


def test_replace_and_force(harness: Harness, repo: Repo) -> None:
    repo.write("app/r.yaml", configmap("replaced", {"k": "1"}, annotations={OPTIONS: "Replace=true"}))
    repo.write("app/f.yaml", {**configmap("frozen", {"k": "1"}, annotations={OPTIONS: "Force=true"}),
                              "immutable": True})
    repo.write("app/s.yaml", {**configmap("stuck", {"k": "1"}), "immutable": True})
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("three"))
    base = f"/api/v1/namespaces/{harness.namespace}/configmaps"
    harness.admin.request("PATCH", f"{base}/replaced", body={"metadata": {"labels": {"someone": "else"}}},
                          content_type="application/merge-patch+json")
    uid = harness.cm("frozen")["metadata"]["uid"]  # type: ignore[index]

    repo.write("app/r.yaml", configmap("replaced", {"k": "2"}, annotations={OPTIONS: "Replace=true"}))
    repo.write("app/f.yaml", {**configmap("frozen", {"k": "2"}, annotations={OPTIONS: "Force=true"}),
                              "immutable": True})
    repo.write("app/s.yaml", {**configmap("stuck", {"k": "2"}), "immutable": True})
    repo.commit("all three change")
    harness.refresh("svc")
    failed = harness.wait_condition("svc", "Applied", "False", "ApplyFailed")
    assert "stuck" in failed["message"] and "immutable" in failed["message"], "without Force=true: the 422 shows"
    replaced, frozen = harness.cm("replaced"), harness.cm("frozen")
    assert replaced is not None and replaced["data"] == {"k": "2"}
    assert "someone" not in (replaced["metadata"].get("labels") or {}), "Replace=true: a PUT of git's object"
    assert frozen is not None and frozen["data"] == {"k": "2"} and frozen["metadata"]["uid"] != uid, (
        "Force=true: deleted and created again")
    assert harness.cm("stuck")["data"] == {"k": "1"}  # type: ignore[index]


def test_delete_false_and_a_post_delete_hook(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("gone", {"k": "v"}))
    repo.write("app/b.yaml", configmap("left", {"k": "v"}, annotations={OPTIONS: "Delete=false"}))
    repo.write("app/hook.yaml", job("farewell", "PostDelete", generate=True))
    harness.make_app("svc", repo)
    harness.patch_app("svc", {"metadata": {"finalizers": ["driftguard.io/prune-on-delete"]}})
    harness.start(wave_timeout=60.0)
    harness.wait_synced("svc", repo.commit("two and a PostDelete hook"))
    assert not jobs(harness, "farewell-"), "a PostDelete hook does not run in a sync"

    harness.admin.request("DELETE", APPS.format(ns=harness.namespace) + "/svc")
    hook = await_job(harness, "farewell-")
    assert harness.cm("gone") is None, "the PostDelete hook runs once the objects are deleted"
    assert harness.cm("left") is not None, "Delete=false: left in the cluster"
    finish(harness, hook["metadata"]["name"])

    def released() -> bool:
        try:
            harness.app("svc")
        except KubeError as e:
            return e.status == 404
        return False
    wait_for(released, 30.0, what="the finalizer removed after the PostDelete hook")
    assert harness.cm("left") is not None


def test_managed_namespace_metadata(harness: Harness, repo: Repo) -> None:
    extra = f"{harness.namespace}-m"[:63]
    repo.write("app/cm.yaml", configmap("settings", {"a": "1"}))
    sha = repo.commit("one ConfigMap, in a namespace the reconciler creates")
    harness.make_app("svc", repo, destination=extra, syncPolicy={
        "automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"],
        "managedNamespaceMetadata": {"labels": {"team": "blue"}, "annotations": {"owner": "blue@org"}}})
    path = f"/api/v1/namespaces/{extra}"
    try:
        harness.start()
        harness.wait_synced("svc", sha)
        namespace = harness.get(path)
        assert namespace is not None
        assert namespace["metadata"]["labels"]["team"] == "blue"
        assert namespace["metadata"]["annotations"]["owner"] == "blue@org"
        harness.patch_app("svc", {"spec": {"syncPolicy": {"managedNamespaceMetadata": {"labels": {"team": "green"}}}}})
        wait_for(lambda: (harness.get(path) or {}).get("metadata", {}).get("labels", {}).get("team") == "green",
                 what="the label put back at its new value on the existing namespace")
    finally:
        try:
            harness.admin.request("DELETE", path)
        except KubeError as e:
            if e.status != 404:
                raise


def test_retry_limit(harness: Harness, repo: Repo) -> None:
    repo.write("app/app.yaml", configmap("app", {"k": "v"}))
    repo.write("app/hook.yaml", job("check", "PreSync", generate=True))
    repo.commit("a PreSync check that fails")
    harness.make_app("svc", repo, syncPolicy={"automated": {"prune": True, "selfHeal": True},
                                              "retry": {"limit": 1, "backoff": {"duration": "1s"}}})
    harness.start(wave_timeout=60.0)

    finish(harness, await_job(harness, "check-")["metadata"]["name"], ok=False)
    status: dict[str, Any] = wait_for(lambda: (s := harness.status("svc")).get("retry") and s)
    assert status["retry"]["attempt"] == 1 and status["retry"]["message"] == "attempt 1 failed; retrying in 1s"
    finish(harness, await_job(harness, "check-", count=2)["metadata"]["name"], ok=False)  # the one retry
    spent = wait_for(lambda: (r := harness.status("svc").get("retry") or {}).get("attempt") == 2 and r)
    assert spent["limit"] == 1 and "no retries left (limit 1)" in spent["message"]
    time.sleep(3.0)  # three backoffs' worth: no third attempt comes
    assert len(jobs(harness, "check-")) == 2
    assert harness.cm("app") is None


def test_skip_is_neither_applied_nor_pruned(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("held", {"k": "1"}))
    repo.write("app/b.yaml", configmap("never", {"k": "1"}, annotations={"argocd.argoproj.io/hook": "Skip"}))
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("one applied, one skipped"))
    assert harness.cm("never") is None, "Skip: not applied"

    repo.write("app/a.yaml", configmap("held", {"k": "2"}, annotations={"argocd.argoproj.io/hook": "Skip"}))
    harness.commit_and_sync(repo, "svc", "held is skipped from now on")
    held = harness.cm("held")
    assert held is not None and held["data"] == {"k": "1"}, "Skip: neither updated nor pruned"
    assert any("held" in e["id"] for e in harness.status("svc")["inventory"])
