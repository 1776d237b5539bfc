"""``driftguard import argocd --from-cluster`` against the real API server: Argo CD's objects read where Argo
CD keeps them, converted, applied, and synced by a real reconciler from a real git repository.

The cluster has no Argo CD, so the test serves its two kinds with stand-in CRDs (same group, version, names
and scope as Argo CD's; schemaless, as only their objects are read): the objects in them are what an Argo CD
user has, written as Argo CD's documentation writes them.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any

import pytest
import yaml
from support.reconciler_harness import Harness, Repo, configmap

from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import CRDS, Cluster
from reconciler import crd

pytestmark = pytest.mark.integration
ARGO = "/apis/argoproj.io/v1alpha1"


def stand_in(plural: str, kind: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.argoproj.io"},
            "spec": {"group": "argoproj.io", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture
def argocd_namespace(admin: Kube) -> Any:
    """A namespace for Argo CD's objects; the stand-in CRDs only where the cluster has none (a cluster with a
    real Argo CD keeps its own), removed afterwards only if this test made them."""
    cluster, made = Cluster(admin), []
    for plural, kind in (("applications", "Application"), ("appprojects", "AppProject")):
        definition = stand_in(plural, kind)
        if cluster.get(CRDS, "", definition["metadata"]["name"]) is None:
            cluster.create(CRDS, definition)
            made.append(definition["metadata"]["name"])
        crd.wait_established(cluster, definition)
    name = f"argocd-{secrets.token_hex(3)}"
    admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield name
    for path in (f"/api/v1/namespaces/{name}", *(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}"
                                                 for n in made)):
        try:
            admin.request("DELETE", path)
        except KubeError as error:
            if error.status != 404:
                raise


def test_argo_cd_objects_read_from_the_cluster_are_converted_applied_and_synced(
        admin: Kube, namespace: str, cluster: Any, repo: Repo, harness: Harness, argocd_namespace: str) -> None:
    repo.write("guestbook/ui.yaml", configmap("guestbook-ui", {"title": "Guestbook"}))
    sha = repo.commit("guestbook")
    admin.request("POST", f"{ARGO}/namespaces/{argocd_namespace}/appprojects", body={
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "web"},
        "spec": {"sourceRepos": [repo.url], "destinations": [{"server": "https://kubernetes.default.svc",
                                                               "namespace": namespace}],
                 "roles": [{"name": "ci", "policies": ["p, proj:web:ci, applications, sync, web/*, allow"]}]}})
    admin.request("POST", f"{ARGO}/namespaces/{argocd_namespace}/applications", body={
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "guestbook", "labels": {"argocd.argoproj.io/instance": "root"}},
        "spec": {"project": "web",
                 "source": {"repoURL": repo.url, "targetRevision": "main", "path": "guestbook"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
        "status": {"sync": {"status": "Synced"}}})

    run = subprocess.run([sys.executable, "-m", "driftguard.cli", "import", "argocd", "--from-cluster",
                          "--kubeconfig", str(cluster.admin_kubeconfig), "--argocd-namespace", argocd_namespace,
                          "--namespace", namespace], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert f"✓ AppProject {argocd_namespace}/web → Project {namespace}/web" in run.stderr
    assert f"✓ Application {argocd_namespace}/guestbook → Application {namespace}/guestbook" in run.stderr
    assert "not carried over: spec.roles (project roles and their tokens" in run.stderr
    assert "not carried over: metadata.labels: argocd.argoproj.io/instance" in run.stderr

    for obj in yaml.safe_load_all(run.stdout):
        plural = {"Application": "applications", "Project": "projects"}[obj["kind"]]
        admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{namespace}/{plural}", body=obj)
    harness.start()
    harness.wait_synced("guestbook", sha)
    assert harness.cm("guestbook-ui")["data"] == {"title": "Guestbook"}
    assert harness.condition("guestbook", "ProjectPermitted")["message"].startswith("Project web permits")

    # No Argo CD kinds at all: a clear error, exit 2.
    missing = subprocess.run([sys.executable, "-m", "driftguard.cli", "import", "argocd", "--from-cluster",
                              "--kubeconfig", str(cluster.admin_kubeconfig), "--argocd-namespace", "nowhere-x"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "no Argo CD Application or AppProject found" in missing.stderr
