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
from support.real_cluster import AUTHOR, SYSTEM, Deployed, Repo, eventually, pause_deployment

from driftguard.local.cluster.node import PAUSE_IMAGE

NS = "production"
APP = "my-service"
PATH_IN_REPO = "services/my-service/production"


def manifests(replicas: int) -> dict[str, str]:
    return {
        "namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n",
        "deployment.yaml": pause_deployment(APP, NS, replicas=replicas, labels={"app.kubernetes.io/name": APP},
                                            container="app"),
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
        self.get, self.as_laptop = deployed.get, deployed.laptop

    def as_admin(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.deployed.kubectl_run(*args, stdin=stdin)

    def deployment(self) -> dict[str, Any]:
        return self.deployed.must("deployment", APP, "-n", NS)

    def replicas(self) -> int:
        return int(self.deployment()["spec"]["replicas"])

    def image(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def synced(self, revision: str) -> bool:
        return self.deployed.synced(APP, revision) is not None

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
    repo = Repo(tmp_path / "work", cluster.git_root / "platform.git", PATH_IN_REPO)
    repo.write(manifests(replicas=3))
    first = repo.commit("my-service: initial production manifests")

    # the Application, with the https repository's credentials and CA in a Secret
    url = deployed.apply_application(APP, repo="platform", path=PATH_IN_REPO, namespace=NS)
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
    records = deployed.audit_records("--user", "laptop")
    assert records, "no audit record of the laptop's denials"
    decisions = {(r["decision"], r["operation"]) for r in records}
    assert {("deny", "UPDATE"), ("deny", "DELETE"), ("warn", "UPDATE")} <= decisions, decisions
    assert all(r["user"] == "laptop" for r in records)

    # driftguard status shows the Application synced at the revert
    head = repo.git("rev-parse", "HEAD").strip()
    eventually(lambda: story.synced(head), "Synced at the revert commit")
    status = deployed.driftguard("status", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", SYSTEM)
    assert status.returncode == 0, status.stderr
    assert APP in status.stdout and "Synced" in status.stdout and head[:7] in status.stdout, status.stdout
