"""Sync phases, waves and hooks with the real Job controller: hook Jobs that kube-controller-manager runs to
completion (the integration tier writes a Job's status itself, having no controller-manager).

One Application (enforcement ``deny``) on the in-cluster git server: a PreSync hook Job (``generateName``,
``HookSucceeded``), a ConfigMap in wave -1, a Deployment in wave 0 (waited for until rolled out) and a named
PostSync hook Job (default policy ``BeforeHookCreation``). What it holds the product to:

- the PreSync Job completes before anything of the Sync phase is created, the waves follow in order, and
  the PostSync Job is created only once the Deployment is available (the API server's creationTimestamps
  and resourceVersions say when each was written);
- the hook Jobs are never managed objects (no managed label, no stamp, not in the inventory), so the webhook
  never sees the Job controller's writes to them, or their Pods: no control-plane identity is denied;
- ``status.hooks`` reports both as Succeeded, the PreSync Job is deleted once it succeeded, the PostSync one
  is kept; a resync of the Application in sync runs no hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.real_cluster import SYSTEM, Deployed, Repo, eventually, help_job, pause_deployment

NS = "hooked"
APP = "hooked"
PATH_IN_REPO = "apps/hooked"

FILES = {
    "presync.yaml": help_job(NS, generate_name="migrate-", annotations={
        "argocd.argoproj.io/hook": "PreSync", "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
    "postsync.yaml": help_job(NS, name="smoke", annotations={"argocd.argoproj.io/hook": "PostSync"}),
    "configmap.yaml": f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {NS}
  annotations: {{argocd.argoproj.io/sync-wave: "-1"}}
data: {{LOG_LEVEL: info}}
""",
    "deployment.yaml": pause_deployment("web", NS),
}


@pytest.fixture(scope="module")
def hooked(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployed, str]]:
    repo = Repo(tmp_path_factory.mktemp("hooks") / "work", deployed.cluster.git_root / "hooks.git", PATH_IN_REPO)
    deployed.kubectl_run("create", "namespace", NS)
    repo.write(FILES)
    head = repo.commit("hooked: PreSync and PostSync Jobs, a wave -1 ConfigMap, a Deployment")
    deployed.apply_application(APP, repo="hooks", path=PATH_IN_REPO, namespace=NS)
    yield deployed, head
    deployed.kubectl_run("delete", "application", APP, "-n", SYSTEM, "--wait=false", check=False)


def jobs(deployed: Deployed) -> list[dict[str, Any]]:
    return list((deployed.get("jobs", "-n", NS) or {}).get("items") or [])


def test_hook_jobs_run_by_the_job_controller_order_the_sync(hooked: tuple[Deployed, str]) -> None:
    app, head = hooked
    status = eventually(lambda: app.synced(APP, head),
                        "the hooked Application Synced (both hooks run by the Job controller)", timeout=300)
    hooks = {h["phase"]: h for h in status["hooks"]}
    assert {p: h["result"] for p, h in hooks.items()} == {"PreSync": "Succeeded", "PostSync": "Succeeded"}, hooks
    assert hooks["PreSync"]["name"].startswith("migrate-") and hooks["PostSync"]["name"] == "smoke"
    assert "job complete" in hooks["PreSync"]["message"] and "deleted (HookSucceeded)" in hooks["PreSync"]["message"]
    assert not any("Job" in e["id"] for e in status["inventory"]), "hooks are not in the inventory"

    # HookSucceeded: the PreSync Job is gone; the PostSync one was completed by the Job controller and is kept
    left = jobs(app)
    assert [j["metadata"]["name"] for j in left] == ["smoke"], [j["metadata"]["name"] for j in left]
    smoke = left[0]
    assert (smoke.get("status") or {}).get("succeeded") == 1
    assert "driftguard.io/managed" not in (smoke["metadata"].get("labels") or {}), "a hook is never managed"
    assert "driftguard.io/declared" not in (smoke["metadata"].get("annotations") or {})

    # order, from the API server (RFC 3339 seconds): the PreSync Job finished before the wave -1 ConfigMap was
    # created, that before the wave 0 Deployment, and the PostSync Job only once the Deployment was available
    settings, web = app.get("configmap", "settings", "-n", NS), app.get("deployment", "web", "-n", NS)
    assert settings is not None and web is not None
    assert hooks["PreSync"]["finishedAt"] <= settings["metadata"]["creationTimestamp"] <= web["metadata"][
        "creationTimestamp"]
    available = next(c["lastTransitionTime"] for c in web["status"]["conditions"] if c["type"] == "Available")
    assert smoke["metadata"]["creationTimestamp"] >= available, (smoke["metadata"]["creationTimestamp"], available)

    # the Job controller's writes to the hooks (status, the Pods' tracking finalizers) never met the webhook
    assert app.denials_of_controllers() == []

    # polls of the Application in sync run no hook: no new Job, the PostSync one untouched
    uid = smoke["metadata"]["uid"]
    time.sleep(6.0)  # three refresh intervals
    assert [(j["metadata"]["name"], j["metadata"]["uid"]) for j in jobs(app)] == [("smoke", uid)]
