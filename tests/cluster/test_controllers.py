"""Real controllers of kube-controller-manager (``--use-service-account-credentials``, so each writes
as its own ServiceAccount in kube-system) against objects driftguard manages, with driftguard as
``make deploy`` installed it and one Application (enforcement ``deny``) on the in-cluster git server.

What the product claims (README threat model, ``webhook/policy.py``, ``webhook/guards.py``,
``webhook/identity.py``) and what each test holds it to:

- the Deployment controller's writes to a managed Deployment (its revision annotation, status, its
  ReplicaSets) are admitted, a rollout from git completes, and the Application stays Synced;
- nobody but the reconciler adds an owner reference to a managed object (the garbage collector would
  delete it with the owner), so deleting an unmanaged object cannot take a managed one with it;
- a Namespace holding managed objects (an unmanaged one, marked by the reconciler) cannot be deleted;
  once the mark is lifted, the namespace controller's deletes of the stamped objects inside are admitted;
- a Job declared in git runs to completion under the Job controller, which driftguard does not fight.

Every denial asserted here comes from the webhook pods, called by kube-apiserver through their Service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.real_cluster import SYSTEM, Deployed, Repo, eventually, help_job, pause_deployment

NS = "controlled"
APP = "controlled"
PATH_IN_REPO = "apps/controlled"

FILES = {
    "deployment.yaml": pause_deployment("web", NS, replicas=2),
    "configmap.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {NS}\n"
                      "data:\n  LOG_LEVEL: info\n",
}
JOB = help_job(NS, name="migrate", container="migrate")


class Controlled:
    def __init__(self, deployed: Deployed, repo: Repo) -> None:
        self.deployed, self.repo = deployed, repo
        self.get, self.must, self.laptop = deployed.get, deployed.must, deployed.laptop
        self.denials_of_controllers = deployed.denials_of_controllers
        self.head = ""

    def status(self) -> dict[str, Any]:
        return self.deployed.application_status(APP)

    def synced_at_head(self) -> bool:
        return self.deployed.synced(APP, self.head) is not None

    def commit(self, files: dict[str, str], message: str) -> None:
        self.repo.write(files)
        self.head = self.repo.commit(message)
        eventually(self.synced_at_head, f"Synced at {self.head[:7]} ({message})")


@pytest.fixture(scope="module")
def app(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controlled]:
    repo = Repo(tmp_path_factory.mktemp("controllers") / "work", deployed.cluster.git_root / "controllers.git",
                PATH_IN_REPO)
    fixture = Controlled(deployed, repo)
    # the namespace is the cluster's, not git's: only the reconciler's holds-managed mark guards it
    deployed.kubectl_run("create", "namespace", NS)
    repo.write(FILES)
    fixture.head = repo.commit("controlled: Deployment, ConfigMap")
    deployed.apply_application(APP, repo="controllers", path=PATH_IN_REPO, namespace=NS)
    eventually(fixture.synced_at_head, "the controlled Application Synced")
    yield fixture


def test_the_deployment_controllers_writes_to_a_managed_deployment_are_admitted(app: Controlled) -> None:
    """kube-controller-manager's Deployment controller (system:serviceaccount:kube-system:deployment-controller)
    writes the managed Deployment's ``deployment.kubernetes.io/revision`` annotation (an UPDATE the webhook
    judges: the object is managed) and its status, and creates and scales its ReplicaSets."""

    def rolled_out(revision: str) -> dict[str, Any] | None:
        web = app.must("deployment", "web", "-n", NS)
        status = web.get("status") or {}
        done = ((web["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision
                and status.get("observedGeneration") == web["metadata"]["generation"]
                and status.get("updatedReplicas") == 2 and status.get("availableReplicas") == 2
                and status.get("replicas") == 2)
        return web if done else None

    first = eventually(lambda: rolled_out("1"), "the Deployment controller: revision 1, 2 available")
    uid = first["metadata"]["uid"]

    def owned() -> list[dict[str, Any]]:
        sets = (app.get("replicasets", "-n", NS, "-l", "app=web") or {}).get("items") or []
        return [rs for rs in sets if any(o.get("uid") == uid and o.get("controller")
                                         for o in rs["metadata"].get("ownerReferences") or [])]

    assert len(owned()) == 1

    # a rollout from git: the controller writes revision 2, a second ReplicaSet, and scales the first down
    app.commit({"deployment.yaml": pause_deployment("web", NS, replicas=2, cpu="20m")}, "controlled: more cpu for web")
    eventually(lambda: rolled_out("2"), "the Deployment controller: revision 2 rolled out", timeout=240)
    sets = owned()
    assert len(sets) == 2, [rs["metadata"]["name"] for rs in sets]
    revisions = {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs["spec"]["replicas"]
                 for rs in sets}
    assert revisions == {"1": 0, "2": 2}

    # driftguard sees nothing to correct and denied no controller
    assert app.synced_at_head()
    assert not app.status().get("drift"), app.status().get("drift")
    assert app.denials_of_controllers() == []


def test_an_owner_reference_cannot_be_added_so_an_unmanaged_owners_deletion_takes_nothing_managed(
        app: Controlled) -> None:
    """The garbage collector (system:serviceaccount:kube-system:generic-garbage-collector) deletes an
    object when its owners are gone. Adding an owner to a managed object is denied for everyone but the
    reconciler; an unmanaged dependent with the same owner is the control that the collector did run."""
    created = app.laptop("create", "configmap", "owner", "-n", NS, "--from-literal=k=v")
    assert created.returncode == 0, created.stderr
    owner = app.must("configmap", "owner", "-n", NS)
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}

    added = app.laptop("patch", "configmap", "settings", "-n", NS, "--type", "merge",
                       "-p", json.dumps({"metadata": {"ownerReferences": [reference]}}))
    assert added.returncode != 0, added.stdout
    assert 'admission webhook "validate.driftguard.io" denied the request' in added.stderr, added.stderr
    assert "garbage collector" in added.stderr and "ConfigMap/owner" in added.stderr, added.stderr

    dependent = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "dependent", "namespace": NS, "ownerReferences": [reference]}}
    made = app.laptop("create", "-f", "-", stdin=json.dumps(dependent))
    assert made.returncode == 0, made.stderr

    deleted = app.laptop("delete", "configmap", "owner", "-n", NS, "--wait=true")
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: app.get("configmap", "dependent", "-n", NS) is None,
               "the garbage collector deletes the unmanaged dependent")
    settings = app.must("configmap", "settings", "-n", NS)
    assert not settings["metadata"].get("ownerReferences")
    assert settings["data"] == {"LOG_LEVEL": "info"}
    assert app.denials_of_controllers() == []


def test_a_job_declared_in_git_runs_to_completion(app: Controlled) -> None:
    """kube-controller-manager's Job controller (system:serviceaccount:kube-system:job-controller) creates
    the pod, tracks it with its finalizer and writes the managed Job's status; driftguard admits it all
    and reports the Application Synced with nothing drifted."""
    app.commit({"job.yaml": JOB}, "controlled: a migration Job")

    def succeeded() -> dict[str, Any] | None:
        job = app.must("job", "migrate", "-n", NS)
        status = job.get("status") or {}
        complete = any(c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions") or [])
        if any(c["type"] == "Failed" and c["status"] == "True" for c in status.get("conditions") or []):
            pytest.fail(f"the Job failed: {status}")
        return job if status.get("succeeded") == 1 and complete else None

    job = eventually(succeeded, "the Job succeeded", timeout=240)
    assert (job["metadata"].get("labels") or {}).get("driftguard.io/managed") == "true"
    pods = (app.get("pods", "-n", NS, "-l", "job-name=migrate") or {}).get("items") or []
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]

    # a later sync leaves the completed Job alone: still Synced, nothing drifted, no controller denied
    app.commit({"configmap.yaml": FILES["configmap.yaml"].replace("info", "warn")}, "controlled: LOG_LEVEL warn")
    assert not app.status().get("drift"), app.status().get("drift")
    assert (app.must("job", "migrate", "-n", NS).get("status") or {}).get("succeeded") == 1
    assert app.denials_of_controllers() == []


def test_a_namespace_holding_managed_objects_is_not_deleted_until_its_mark_is_lifted(app: Controlled) -> None:
    """While the reconciler's ``driftguard.io/holds-managed`` mark is on the Namespace its DELETE is denied,
    so kube-controller-manager's namespace controller never starts deleting the managed objects inside.
    Once the Application is deleted (without a cascading finalizer: its objects stay, stamped) the
    reconciler lifts the mark; the Namespace's DELETE is then admitted, and the namespace controller
    (system:serviceaccount:kube-system:namespace-controller) deletes the stamped objects with DELETEs
    the webhook admits for it alone, until the Namespace is gone."""
    namespace = app.must("namespace", NS)
    assert (namespace["metadata"].get("labels") or {}).get("driftguard.io/holds-managed") == "true"

    denied = app.laptop("delete", "namespace", NS, "--wait=false")
    assert denied.returncode != 0, denied.stdout
    assert 'admission webhook "holders.driftguard.io" denied the request' in denied.stderr, denied.stderr
    assert "holds objects driftguard manages" in denied.stderr, denied.stderr
    assert not app.must("namespace", NS)["metadata"].get("deletionTimestamp")
    for kind, name in (("deployment", "web"), ("configmap", "settings"), ("job", "migrate")):
        assert app.get(kind, name, "-n", NS) is not None, (kind, name)

    # the laptop cannot delete the stamped objects itself (the webhook still guards them)
    refused = app.laptop("delete", "configmap", "settings", "-n", NS, "--wait=false")
    assert refused.returncode != 0 and "denied the request" in refused.stderr, refused.stderr

    app.deployed.kubectl_run("delete", "application", APP, "-n", SYSTEM)
    eventually(lambda: (app.must("namespace", NS)["metadata"].get("labels") or {}).get("driftguard.io/holds-managed")
               is None, "the reconciler lifts the holds-managed mark from the deleted Application's namespace")
    assert app.get("configmap", "settings", "-n", NS) is not None  # deleting the Application deleted nothing

    admitted = app.laptop("delete", "namespace", NS, "--wait=false")
    assert admitted.returncode == 0, admitted.stderr

    def namespace_gone() -> bool:
        current = app.get("namespace", NS)
        if current is None:
            return True
        failed = [c for c in (current.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True" and "Failure" in c.get("type", "")]
        assert not failed, f"the namespace controller could not delete the contents: {failed}"
        return False

    eventually(namespace_gone, "the namespace controller deletes the stamped objects and the Namespace",
               timeout=240)
    assert app.denials_of_controllers() == []
