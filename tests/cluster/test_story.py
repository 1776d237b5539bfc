"""The user's story, in a real cluster, against driftguard as `make deploy` installed it.

The Application's source is the cluster's own https git server (TLS with its own CA, basic auth,
credentials in a Secret), reached by the reconciler pod over the pod network; every kubectl command runs
as the ``laptop`` user (cluster-admin by RBAC, so only admission stops it), and each denial comes from
the webhook pods, called by kube-apiserver through their Service with the caBundle.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.real_cluster import AUTHOR, Deployed, Repo, eventually, secret_for

from driftguard.local.cluster.node import PAUSE_IMAGE

NS = "production"
APP = "my-service"
PATH_IN_REPO = "services/my-service/production"
SYSTEM = "driftguard-system"


def manifests(replicas: int) -> dict[str, str]:
    return {
        "namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n",
        "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {APP}
  namespace: {NS}
  labels: {{app.kubernetes.io/name: {APP}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app.kubernetes.io/name: {APP}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {APP}}}
    spec:
      containers:
        - name: app
          image: {PAUSE_IMAGE}
          imagePullPolicy: Never
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits: {{memory: 32Mi}}
""",
        "configmap.yaml": f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {APP}-config
  namespace: {NS}
data:
  LOG_LEVEL: info
""",
    }


class Story:
    def __init__(self, deployed: Deployed) -> None:
        self.deployed = deployed
        self.laptop = deployed.cluster.laptop_kubeconfig

    def as_laptop(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.deployed.kubectl_run(*args, kubeconfig=self.laptop, stdin=stdin, check=False)

    def as_admin(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.deployed.kubectl_run(*args, stdin=stdin)

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.deployed.kubectl_run("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def deployment(self) -> dict[str, Any]:
        deploy = self.get("deployment", APP, "-n", NS)
        assert deploy is not None
        return deploy

    def replicas(self) -> int:
        return int(self.deployment()["spec"]["replicas"])

    def image(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def synced(self, revision: str) -> bool:
        app = self.get("application", APP, "-n", SYSTEM) or {}
        sync = (app.get("status") or {}).get("sync") or {}
        return sync.get("status") == "Synced" and sync.get("revision") == revision

    def set_enforcement(self, mode: str) -> None:
        self.as_admin("patch", "application", APP, "-n", SYSTEM, "--type", "merge",
                      "-p", json.dumps({"spec": {"enforcement": mode}}))
        eventually(lambda: (self.deployment()["metadata"].get("annotations") or {}).get("driftguard.io/enforcement")
                   == mode, f"objects stamped enforcement={mode}")


@pytest.fixture(scope="module")
def story(deployed: Deployed) -> Story:
    return Story(deployed)


def test_the_whole_story_in_cluster(story: Story, deployed: Deployed, tmp_path: Path) -> None:
    cluster = deployed.cluster
    info = (cluster.state() or pytest.fail("no state")).info
    repo = Repo(tmp_path / "work", cluster.git_root / "platform.git", PATH_IN_REPO)
    repo.write(manifests(replicas=3))
    first = repo.commit("my-service: initial production manifests")
    url = f"{info['git_url']}/platform.git"

    # the Application, with the https repository's credentials and CA in a Secret
    secret = secret_for(info, "platform-repo")
    application = {
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": APP, "namespace": SYSTEM},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "targetRevision": "main", "path": PATH_IN_REPO,
                       "secretRef": {"name": "platform-repo"}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            "enforcement": "deny",
            "refreshInterval": "2s",
        },
    }
    story.as_admin("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": [secret, application]}))
    eventually(lambda: story.synced(first), "the Application Synced at the first commit")
    assert story.replicas() == 3
    # the Deployment controller's own writes to the managed Deployment were admitted: it is available
    eventually(lambda: story.deployment().get("status", {}).get("availableReplicas") == 3, "3 available replicas")

    # laptop: scale is denied, with the full message
    scale = story.as_laptop("scale", f"deployment/{APP}", "-n", NS, "--replicas=9")
    assert scale.returncode != 0
    message = scale.stderr
    assert 'admission webhook "' in message and "denied the request" in message, message
    assert f"spec.replicas of Deployment {NS}/{APP} is declared in git (3)" in message, message
    assert f"at {PATH_IN_REPO}/deployment.yaml, commit {first[:7]} by {AUTHOR[1]}" in message, message
    assert "this request sets 9" in message and f"Change it in git: {url}" in message, message
    assert story.replicas() == 3

    # laptop: a patch of a declared field and a delete are denied too
    patch = story.as_laptop("patch", "configmap", f"{APP}-config", "-n", NS, "--type", "merge",
                            "-p", '{"data": {"LOG_LEVEL": "debug"}}')
    assert patch.returncode != 0 and "data.LOG_LEVEL" in patch.stderr and "declared in git" in patch.stderr, patch
    delete = story.as_laptop("delete", "configmap", f"{APP}-config", "-n", NS, "--wait=false")
    assert delete.returncode != 0 and "denied the request" in delete.stderr, delete.stderr
    assert story.get("configmap", f"{APP}-config", "-n", NS) is not None

    # laptop: an edit that leaves every declared field at git's value is allowed
    annotate = story.as_laptop("annotate", f"deployment/{APP}", "-n", NS, "oncall=bob", "--overwrite")
    assert annotate.returncode == 0, annotate.stderr

    # a commit is applied
    repo.write({"deployment.yaml": manifests(replicas=5)["deployment.yaml"]})
    scaled = repo.commit("my-service: scale to 5 for the launch")
    eventually(lambda: story.replicas() == 5, "replicas 5 after the commit")

    # git rm prunes
    repo.git("rm", "-q", f"{PATH_IN_REPO}/configmap.yaml")
    repo.commit("my-service: drop the unused ConfigMap")
    eventually(lambda: story.get("configmap", f"{APP}-config", "-n", NS) is None, "the ConfigMap pruned")

    # warn mode: the edit is admitted with a warning, and self-heal puts git's value back
    story.set_enforcement("warn")
    edited = story.as_laptop("set", "image", f"deployment/{APP}", "-n", NS, "app=driftguard.local/pause:edited")
    assert edited.returncode == 0, edited.stderr
    assert "Warning:" in edited.stderr and "declared in git" in edited.stderr, edited.stderr
    eventually(lambda: story.image() == PAUSE_IMAGE, "self-heal restores git's image")
    story.set_enforcement("deny")

    # git revert rolls back
    repo.git("revert", "--no-edit", scaled)
    repo.git("push", "-q", "origin", "main")
    eventually(lambda: story.replicas() == 3, "replicas back to 3 after git revert")

    # driftguard audit, from the webhook pods' logs
    logs = deployed.kubectl_run("logs", "-n", SYSTEM, "-l", "app.kubernetes.io/name=driftguard-webhook",
                                "--tail=-1", "--prefix=false").stdout
    audit = deployed.driftguard("audit", "-", "--user", "laptop", "--json", stdin=logs)
    assert audit.returncode == 0, audit.stderr
    records = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
    decisions = {(r["decision"], r["operation"]) for r in records}
    assert {("deny", "UPDATE"), ("deny", "DELETE"), ("warn", "UPDATE")} <= decisions, decisions
    assert all(r["user"] == "laptop" for r in records)

    # driftguard status shows the Application synced at the revert
    head = repo.git("rev-parse", "HEAD").strip()
    eventually(lambda: story.synced(head), "Synced at the revert commit")
    status = deployed.driftguard("status", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", SYSTEM)
    assert status.returncode == 0, status.stderr
    assert APP in status.stdout and "Synced" in status.stdout and head[:7] in status.stdout, status.stdout
