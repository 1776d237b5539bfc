"""App of apps against a real API server and real git: Applications declared in git, three levels deep,
applied, protected (healed) and pruned like any managed object once the opt-in ClusterRole is granted — and,
before it is, a condition naming that fix; Applications in two extra namespaces reconciled through
``--application-namespaces`` patterns, one in a namespace no pattern matches left alone.

A bare control plane has no ClusterRole aggregation controller, so the test binds the opt-in role to the
reconciler's ServiceAccount directly (what labelling it for aggregation does in a cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.reconciler_harness import APPS, SA_NAME, SA_NAMESPACE, Harness, Repo, configmap, wait_for

from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"
PROJECTS = "/apis/driftguard.io/v1alpha1/namespaces/{ns}/projects"
BINDINGS = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
ROLE = "driftguard-reconciler-app-of-apps"


def application(name: str, namespace: str, repo: Repo, path: str, destination: str) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": "platform", "source": {"repoURL": repo.url, "targetRevision": "main", "path": path},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}, "refreshInterval": "1s"}}


def platform_project(namespace: str, source_namespaces: list[str]) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
            "metadata": {"name": "platform", "namespace": namespace},
            "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": "*"}], "sourceNamespaces": source_namespaces}}


@pytest.fixture
def app_of_apps_rbac(admin: Kube) -> Iterator[Any]:
    name = f"{ROLE}-test"

    def grant() -> None:
        admin.request("POST", BINDINGS, body={
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}]})
    yield grant
    try:
        admin.request("DELETE", f"{BINDINGS}/{name}")
    except KubeError as e:
        if e.status != 404:
            raise


def test_app_of_apps_three_levels(harness: Harness, repo: Repo, app_of_apps_rbac: Any) -> None:
    ns = harness.namespace
    harness.admin.request("POST", PROJECTS.format(ns=ns), body=platform_project(ns, [ns]))
    repo.write("root/mid.yaml", application("mid", ns, repo, "mid", ns))
    repo.write("root/project.yaml", {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
                                     "metadata": {"name": "from-git", "namespace": ns},
                                     "spec": {"sourceRepos": [repo.url], "destinations": [{"namespace": ns}]}})
    repo.write("mid/leaf.yaml", application("leaf", ns, repo, "leaf", ns))
    repo.write("leaf/cm.yaml", configmap("leaf-config", {"level": "3"}))
    sha = repo.commit("three levels")
    harness.make_app("root", repo, "root", project="platform")
    harness.start()

    # without the opt-in role: the child Application fails, and the condition says how to fix it
    applied = harness.wait_condition("root", "Applied", "False", "ApplyFailed")
    assert f"Application {ns}/mid" in applied["message"]
    assert f"kubectl label clusterrole {ROLE} driftguard.io/aggregate-to-reconciler=true" in applied["message"]

    app_of_apps_rbac()
    harness.refresh("root")
    harness.wait_synced("root", sha)
    harness.wait_synced("mid", sha)
    harness.wait_synced("leaf", sha)
    assert (harness.cm("leaf-config") or {}).get("data") == {"level": "3"}
    mid = harness.app("mid")
    assert mid["metadata"]["labels"]["driftguard.io/managed"] == "true"
    assert mid["metadata"]["annotations"]["driftguard.io/application"] == f"{ns}/root"
    project = harness.get(PROJECTS.format(ns=ns) + "/from-git")
    assert project is not None and project["metadata"]["labels"]["driftguard.io/managed"] == "true"

    # a child Application is protected like any managed object: an edit of a declared field is put back
    harness.patch_app("mid", {"spec": {"refreshInterval": "9m"}})
    wait_for(lambda: harness.app("mid")["spec"]["refreshInterval"] == "1s", what="the child Application healed")

    # git removes the grandchild: it is pruned (its own objects stay, as for any Application deleted
    # without a cascading finalizer)
    repo.remove("mid/leaf.yaml")
    repo.write("mid/other.yaml", configmap("mid-config", {"level": "2"}))
    second = repo.commit("drop leaf")
    harness.refresh("mid")
    harness.wait_synced("mid", second)
    wait_for(lambda: harness.get(APPS.format(ns=ns) + "/leaf") is None, what="leaf Application pruned")
    assert harness.cm("leaf-config") is not None


def test_applications_in_two_extra_namespaces(harness: Harness, repo: Repo, admin: Kube) -> None:
    ns = harness.namespace
    prefix = f"{ns[:40]}-x"
    extra = [f"{prefix}-a", f"{prefix}-b"]
    ignored = f"{ns[:40]}-nomatch"
    for name in (*extra, ignored):
        admin.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": name}})
    try:
        admin.request("POST", PROJECTS.format(ns=ns), body=platform_project(ns, [f"{prefix}-*"]))
        repo.write("app/cm.yaml", configmap("shared", {"k": "v"}))
        sha = repo.commit("one")
        for where in (*extra, ignored):
            admin.request("POST", APPS.format(ns=where), body=application("team", where, repo, "app", where))
        harness.start(application_namespaces=f"{prefix}-*")

        for where in extra:
            sync = wait_for(lambda w=where: ((admin.request("GET", APPS.format(ns=w) + "/team").get("status") or {})
                                             .get("sync") or {}).get("status") == "Synced" and (
                admin.request("GET", APPS.format(ns=w) + "/team")["status"]["sync"]), what=f"team in {where} synced")
            assert sync["revision"] == sha
            assert harness.cm("shared", where) is not None
        assert harness.cm("shared", ignored) is None
        assert not admin.request("GET", APPS.format(ns=ignored) + "/team").get("status")
    finally:
        for name in (*extra, ignored):
            admin.request("DELETE", f"/api/v1/namespaces/{name}")
