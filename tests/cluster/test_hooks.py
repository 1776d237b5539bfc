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

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.real_cluster import Deployed, Repo, eventually, secret_for

from driftguard.local.cluster import image
from driftguard.local.cluster.node import PAUSE_IMAGE

SYSTEM = "driftguard-system"
NS = "hooked"
APP = "hooked"
PATH_IN_REPO = "apps/hooked"


def hook_job(metadata: str, hook: str, policy: str = "") -> str:
    annotations = f"    argocd.argoproj.io/hook: {hook}\n"
    if policy:
        annotations += f"    argocd.argoproj.io/hook-delete-policy: {policy}\n"
    return f"""\
apiVersion: batch/v1
kind: Job
metadata:
  {metadata}
  namespace: {NS}
  annotations:
{annotations}spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: {image.IMAGE}
          imagePullPolicy: Never
          args: ["--help"]
          resources:
            requests: {{cpu: 10m, memory: 32Mi}}
            limits: {{memory: 128Mi}}
"""


FILES = {
    "presync.yaml": hook_job("generateName: migrate-", "PreSync", "HookSucceeded"),
    "postsync.yaml": hook_job("name: smoke", "PostSync"),
    "configmap.yaml": f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {NS}
  annotations: {{argocd.argoproj.io/sync-wave: "-1"}}
data: {{LOG_LEVEL: info}}
""",
    "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {PAUSE_IMAGE}
          imagePullPolicy: Never
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits: {{memory: 32Mi}}
""",
}


class Hooked:
    def __init__(self, deployed: Deployed) -> None:
        self.deployed = deployed

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.deployed.kubectl_run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def status(self) -> dict[str, Any]:
        return (self.get("application", APP, "-n", SYSTEM) or {}).get("status") or {}

    def jobs(self) -> list[dict[str, Any]]:
        return list((self.get("jobs", "-n", NS) or {}).get("items") or [])

    def denials_of_controllers(self) -> list[dict[str, Any]]:
        logs = self.deployed.kubectl_run("logs", "-n", SYSTEM, "-l", "app.kubernetes.io/name=driftguard-webhook",
                                         "--tail=-1", "--prefix=false").stdout
        audit = self.deployed.driftguard("audit", "-", "--json", stdin=logs)
        assert audit.returncode == 0, audit.stderr
        records = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
        return [r for r in records if str(r.get("user", "")).startswith("system:")]


@pytest.fixture(scope="module")
def hooked(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hooked, str]]:
    cluster = deployed.cluster
    info = (cluster.state() or pytest.fail("no state")).info
    repo = Repo(tmp_path_factory.mktemp("hooks") / "work", cluster.git_root / "hooks.git", PATH_IN_REPO)
    deployed.kubectl_run("create", "namespace", NS)
    repo.write(FILES)
    head = repo.commit("hooked: PreSync and PostSync Jobs, a wave -1 ConfigMap, a Deployment")
    application = {
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": APP, "namespace": SYSTEM},
        "spec": {
            "project": "default",
            "source": {"repoURL": f"{info['git_url']}/hooks.git", "targetRevision": "main",
                       "path": PATH_IN_REPO, "secretRef": {"name": "hooks-repo"}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            "enforcement": "deny",
            "refreshInterval": "2s",
        },
    }
    deployed.kubectl_run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        secret_for(info, "hooks-repo"), application]}))
    yield Hooked(deployed), head
    deployed.kubectl_run("delete", "application", APP, "-n", SYSTEM, "--wait=false", check=False)


def test_hook_jobs_run_by_the_job_controller_order_the_sync(hooked: tuple[Hooked, str]) -> None:
    app, head = hooked

    def synced() -> dict[str, Any] | None:
        status = app.status()
        sync = status.get("sync") or {}
        return status if sync.get("status") == "Synced" and sync.get("revision") == head else None

    status = eventually(synced, "the hooked Application Synced (both hooks run by the Job controller)", timeout=300)
    hooks = {h["phase"]: h for h in status["hooks"]}
    assert {p: h["result"] for p, h in hooks.items()} == {"PreSync": "Succeeded", "PostSync": "Succeeded"}, hooks
    assert hooks["PreSync"]["name"].startswith("migrate-") and hooks["PostSync"]["name"] == "smoke"
    assert "job complete" in hooks["PreSync"]["message"] and "deleted (HookSucceeded)" in hooks["PreSync"]["message"]
    assert not any("Job" in e["id"] for e in status["inventory"]), "hooks are not in the inventory"

    # HookSucceeded: the PreSync Job is gone; the PostSync one was completed by the Job controller and is kept
    jobs = app.jobs()
    assert [j["metadata"]["name"] for j in jobs] == ["smoke"], [j["metadata"]["name"] for j in jobs]
    smoke = jobs[0]
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
    assert [(j["metadata"]["name"], j["metadata"]["uid"]) for j in app.jobs()] == [("smoke", uid)]
