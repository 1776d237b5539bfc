"""Hook Jobs for the reconciler's integration tests, and completing them the way the Job controller would
(there is no kube-controller-manager on the integration control plane)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from support.reconciler_harness import Harness, configmap, wait_for

JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"


def job(name: str, hook: str, *, generate: bool = False, **annotations: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"generateName": f"{name}-"} if generate else {"name": name}
    metadata["annotations"] = {"argocd.argoproj.io/hook": hook, **annotations}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {
        "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "run", "image": "registry.example/tools:1", "command": ["true"]}]}}}}


def wave(name: str, n: int, data: dict[str, str] | None = None) -> dict[str, Any]:
    return configmap(name, data or {"wave": str(n)}, annotations={"argocd.argoproj.io/sync-wave": str(n)})


def jobs(harness: Harness, prefix: str) -> list[dict[str, Any]]:
    items = harness.admin.request("GET", JOBS.format(ns=harness.namespace))["items"]
    return sorted((j for j in items if j["metadata"]["name"].startswith(prefix)),
                  key=lambda j: int(j["metadata"]["resourceVersion"]))


def finish(harness: Harness, name: str, *, ok: bool = True) -> None:
    """What the Job controller writes when the Job's Pod succeeded (or failed)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    first, final = ("SuccessCriteriaMet", "Complete") if ok else ("FailureTarget", "Failed")
    conditions = [{"type": t, "status": "True", "reason": "BackoffLimitExceeded" if not ok else "Completed",
                   "message": "the test says so" if not ok else "", "lastTransitionTime": now,
                   "lastProbeTime": now} for t in (first, final)]
    status: dict[str, Any] = {"startTime": now, "conditions": conditions, "active": 0, "ready": 0, "terminating": 0,
                              "succeeded" if ok else "failed": 1}
    if ok:
        status["completionTime"] = now
    harness.admin.request("PATCH", JOBS.format(ns=harness.namespace) + f"/{name}/status", body={"status": status},
                          content_type="application/merge-patch+json")


def await_job(harness: Harness, prefix: str, count: int = 1) -> dict[str, Any]:
    return wait_for(lambda: (js := jobs(harness, prefix)) and len(js) >= count and js[-1], 30.0,
                    what=f"hook Job {prefix}* #{count}")


