"""driftguard suggest against the real API server and the real reconciler: the kubectl intent a webhook would deny
(`kubectl scale deployment/my-service --replicas=9`) becomes a minimal commit on a new branch of the commented
manifest the live object's stamp names; once the Application follows that branch, the intent is in the cluster."""

from __future__ import annotations

from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, wait_for

from driftguard import cli

pytestmark = pytest.mark.integration

MANIFEST = """\
# my-service: production web tier
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-service   # the Service selects on this name
spec:
  replicas: 3        # peak traffic: see the runbook
  selector:
    matchLabels: {app: my-service}
  template:
    metadata:
      labels: {app: my-service}
    spec:
      containers:
        - name: web
          image: "registry.example/web:1.4.2"
"""


def test_suggest_turns_a_scale_into_a_commit_the_reconciler_applies(
        harness: Harness, repo: Repo, cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo.write("app/deployment.yaml", MANIFEST)
    first = repo.commit("my-service")
    repo.git("config", "user.name", "Alice")
    repo.git("config", "user.email", "alice@org")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", first)

    code = cli.main(["suggest", "--kubeconfig", str(cluster.admin_kubeconfig), "--repo-dir", str(repo.path),
                     "--commit", "--", "scale", "deployment/my-service", "-n", harness.namespace, "--replicas=9"])
    out = capsys.readouterr().out
    assert code == 0, out
    removed = [line for line in out.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert removed == ["-  replicas: 3        # peak traffic: see the runbook"]
    assert added == ["+  replicas: 9        # peak traffic: see the runbook"]
    assert "committed on branch driftguard/suggest-deployment-my-service" in out
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD") == "driftguard/suggest-deployment-my-service"
    assert repo.git("rev-parse", "main") == first, "main is untouched"

    suggested = repo.git("rev-parse", "HEAD")
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": "driftguard/suggest-deployment-my-service"}}})
    harness.wait_synced("svc", suggested)
    path = f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/my-service"
    live = wait_for(lambda: (d := harness.get(path)) and d["spec"]["replicas"] == 9 and d, what="replicas 9")
    assert live["metadata"]["annotations"]["driftguard.io/commit"] == suggested


def test_suggest_says_when_the_object_is_not_managed(harness: Harness, capsys: pytest.CaptureFixture[str],
                                                     cluster: Any) -> None:
    harness.admin.request("POST", f"/api/v1/namespaces/{harness.namespace}/configmaps", body={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "loose"}, "data": {}})
    code = cli.main(["suggest", "--kubeconfig", str(cluster.admin_kubeconfig), "--", "label", "cm/loose",
                     "-n", harness.namespace, "a=b"])
    assert code == 2
    assert f"ConfigMap {harness.namespace}/loose is not managed by driftguard" in capsys.readouterr().err
