"""Deleting an Application: with ``driftguard.io/prune-on-delete`` or Argo CD's
``resources-finalizer.argocd.argoproj.io`` its inventory is deleted (and only that: never another
Application's object), failed deletions are retried and reported, and the finalizer is removed once the
inventory is empty; without a finalizer its objects stay, stamped and no longer managed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.reconciler_harness import APPS, Harness, Repo, configmap, wait_for

from driftguard.core.contract import ANN_APPLICATION
from driftguard.kube import Kube, KubeError
from reconciler.deletion import NAMESPACE_OPT_IN

pytestmark = pytest.mark.integration

PRUNE_ON_DELETE = "driftguard.io/prune-on-delete"
ARGO = "resources-finalizer.argocd.argoproj.io"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"


def app_path(harness: Harness, name: str) -> str:
    return APPS.format(ns=harness.namespace) + f"/{name}"


def make_app(harness: Harness, repo: Repo, name: str, path: str, finalizers: list[str], **spec: Any) -> None:
    harness.make_app(name, repo, path, **spec)
    if finalizers:
        harness.patch_app(name, {"metadata": {"finalizers": finalizers}})


def delete_app(harness: Harness, name: str) -> None:
    harness.admin.request("DELETE", app_path(harness, name))


def wait_gone(harness: Harness, path: str, what: str, timeout: float = 15.0) -> None:
    wait_for(lambda: harness.get(path) is None, timeout, what=what)


def managed(harness: Harness) -> dict[str, dict[str, Any]]:
    items = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/configmaps",
                                  query={"labelSelector": "driftguard.io/managed=true"})["items"]
    return {i["metadata"]["name"]: i for i in items}


def inventory_names(harness: Harness, name: str) -> list[str]:
    return [e["id"].split("_")[1] for e in harness.status(name).get("inventory") or []]


def events(admin: Kube, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = admin.request("GET", f"/api/v1/namespaces/{namespace}/events",
                          query={"fieldSelector": f"involvedObject.name={name},reason={reason}"})["items"]
    return list(items)


@pytest.mark.parametrize("finalizer", [PRUNE_ON_DELETE, ARGO])
def test_finalizer_deletes_the_inventory_then_the_application(harness: Harness, repo: Repo, finalizer: str) -> None:
    extra = f"{harness.namespace}-x"[:63]
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.write("app/b.yaml", configmap("beta", {"v": "1"}))
    repo.write("app/ns.yaml", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": extra, "annotations": {NAMESPACE_OPT_IN: "true"}}},  # git opts the Namespace in
        configmap("inside", {"v": "1"}, namespace=extra)])
    sha = repo.commit("three objects and a namespace")
    harness.admin.request("POST", f"/api/v1/namespaces/{harness.namespace}/configmaps",
                          body=configmap("unmanaged", {"v": "1"}))
    make_app(harness, repo, "svc", "app", [finalizer, "example.com/someone-else"])
    harness.start()
    harness.wait_synced("svc", sha)
    assert harness.status("svc")["inventoryCount"] == 4
    assert harness.app("svc")["metadata"]["finalizers"] == [finalizer, "example.com/someone-else"], \
        "the reconciler must neither add nor reorder finalizers"

    delete_app(harness, "svc")

    wait_for(lambda: harness.app("svc")["metadata"]["finalizers"] == ["example.com/someone-else"], 15,
             what=f"{finalizer} removed, the other finalizer kept")
    assert harness.cm("alpha") is None and harness.cm("beta") is None
    assert harness.cm("inside", extra) is None
    namespace = harness.get(f"/api/v1/namespaces/{extra}")
    # A bare control plane has no namespace controller: deletion accepted (Terminating) is enough.
    assert namespace is None or namespace["metadata"].get("deletionTimestamp"), namespace
    assert harness.cm("unmanaged") is not None, "never in the inventory: never deleted"
    assert harness.status("svc")["inventoryCount"] == 0
    assert events(harness.admin, harness.namespace, "svc", "PrunedOnDelete")

    harness.patch_app("svc", {"metadata": {"finalizers": None}})  # the other party lets go too
    wait_gone(harness, app_path(harness, "svc"), "the Application gone")
    assert harness.cm("unmanaged") is not None


def test_a_namespace_git_did_not_opt_in_is_kept_and_only_its_managed_objects_go(harness: Harness,
                                                                                repo: Repo) -> None:
    """Deleting a Namespace deletes everything in it, managed or not (issue 10: a cascade took a whole
    namespace): without git's ``cascade.driftguard.io/delete-namespace: "true"`` it stays."""
    extra = f"{harness.namespace}-k"[:63]
    repo.write("app/ns.yaml", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra}},
                               configmap("inside", {"v": "1"}, namespace=extra)])
    sha = repo.commit("a namespace and an object in it")
    make_app(harness, repo, "svc", "app", [PRUNE_ON_DELETE])
    harness.start()
    harness.wait_synced("svc", sha)
    harness.admin.request("POST", f"/api/v1/namespaces/{extra}/configmaps", body=configmap("theirs", {"v": "1"}))
    try:
        delete_app(harness, "svc")

        wait_gone(harness, app_path(harness, "svc"), "the Application gone (finalizer released)")
        assert harness.cm("inside", extra) is None, "its managed objects are still deleted"
        kept = harness.get(f"/api/v1/namespaces/{extra}")
        assert kept is not None and not kept["metadata"].get("deletionTimestamp"), kept
        assert harness.cm("theirs", extra) is not None
        [event] = events(harness.admin, harness.namespace, "svc", "NamespaceKept")
        assert f"Namespace {extra}" in event["message"] and NAMESPACE_OPT_IN in event["message"]
    finally:
        harness.admin.request("DELETE", f"/api/v1/namespaces/{extra}")


def test_a_cascading_finalizer_git_did_not_set_deletes_nothing(harness: Harness, repo: Repo, laptop: Kube) -> None:
    """An Application deployed from git (managed) whose finalizer its git manifest does not declare: the
    reconciler's apply does not own it, so the cascade is refused — finalizer removed, objects kept."""
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    sha = repo.commit("one")
    make_app(harness, repo, "svc", "app", [])
    harness.patch_app("svc", {"metadata": {"labels": {"driftguard.io/managed": "true"}}})
    harness.start()
    harness.wait_synced("svc", sha)
    laptop.request("PATCH", app_path(harness, "svc"), body={"metadata": {"finalizers": [PRUNE_ON_DELETE]}},
                   content_type="application/merge-patch+json")
    laptop.request("DELETE", app_path(harness, "svc"))

    wait_gone(harness, app_path(harness, "svc"), "the Application gone (finalizer removed, nothing deleted)")
    assert harness.cm("alpha") is not None
    [event] = events(harness.admin, harness.namespace, "svc", "CascadeRefused")
    assert event["type"] == "Warning" and "was not set by git" in event["message"]


def test_without_a_finalizer_objects_stay_stamped_and_unmanaged(harness: Harness, repo: Repo, laptop: Kube) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    sha = repo.commit("one")
    make_app(harness, repo, "svc", "app", [])
    harness.start()
    harness.wait_synced("svc", sha)

    delete_app(harness, "svc")

    wait_gone(harness, app_path(harness, "svc"), "the Application gone")
    wait_for(lambda: not harness.service.controller.states, what="the Application forgotten")  # type: ignore[union-attr]
    alpha = harness.cm("alpha")
    assert alpha is not None and alpha["metadata"]["annotations"][ANN_APPLICATION] == f"{harness.namespace}/svc"
    laptop.request("PATCH", f"/api/v1/namespaces/{harness.namespace}/configmaps/alpha", body={"data": {"v": "9"}},
                   content_type="application/merge-patch+json")
    time.sleep(0.5)  # self-heal reverts within tens of milliseconds; it must not here
    assert harness.cm("alpha")["data"] == {"v": "9"}  # type: ignore[index]


def test_a_foreign_finalizer_alone_stops_management_and_deletes_nothing(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    sha = repo.commit("one")
    make_app(harness, repo, "svc", "app", ["example.com/someone-else"])
    harness.start()
    harness.wait_synced("svc", sha)

    delete_app(harness, "svc")  # stays Terminating: nobody here removes that finalizer

    wait_for(lambda: not harness.service.controller.states, what="the Application forgotten")  # type: ignore[union-attr]
    assert harness.app("svc")["metadata"]["finalizers"] == ["example.com/someone-else"]
    assert harness.cm("alpha") is not None
    harness.patch_app("svc", {"metadata": {"finalizers": None}})


def test_deleting_one_application_never_touches_the_others_objects(harness: Harness, repo: Repo) -> None:
    repo.write("one/a.yaml", [configmap("one-a", {"v": "1"}), configmap("one-b", {"v": "1"})])
    repo.write("two/a.yaml", [configmap("two-a", {"v": "1"}), configmap("two-b", {"v": "1"})])
    sha = repo.commit("two Applications")
    make_app(harness, repo, "one", "one", [PRUNE_ON_DELETE])
    make_app(harness, repo, "two", "two", [PRUNE_ON_DELETE])
    harness.start()
    harness.wait_synced("one", sha)
    harness.wait_synced("two", sha)
    # one-b changes hands: now stamped as two's (as if two had taken it over). It is still in one's inventory,
    # so only the live stamp's re-check keeps one's delete from removing it.
    harness.admin.request("PATCH", f"/api/v1/namespaces/{harness.namespace}/configmaps/one-b",
                          body={"metadata": {"annotations": {ANN_APPLICATION: f"{harness.namespace}/two"}}},
                          content_type="application/merge-patch+json")
    assert "one-b" in inventory_names(harness, "one")
    before = {name: obj["metadata"]["resourceVersion"] for name, obj in managed(harness).items()
              if name.startswith("two-")}

    delete_app(harness, "one")

    wait_gone(harness, app_path(harness, "one"), "Application one gone")
    live = managed(harness)
    assert "one-a" not in live
    assert "one-b" in live, "stamped by another Application: never deleted"
    assert {n: o["metadata"]["resourceVersion"] for n, o in live.items() if n.startswith("two-")} == before
    assert harness.app("two")["metadata"].get("deletionTimestamp") is None
    harness.refresh("two")
    harness.wait_synced("two", sha)


def test_failed_deletions_are_reported_and_retried(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", [configmap("alpha", {"v": "1"}), configmap("sticky", {"v": "1"},
                                                                        labels={"deletion-test": "deny"})])
    sha = repo.commit("two")
    make_app(harness, repo, "svc", "app", [ARGO], refreshInterval="1s")
    harness.start()
    harness.wait_synced("svc", sha)
    name = f"deny-delete-{harness.namespace}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                         "operations": ["DELETE"], "resources": ["configmaps"]}],
                                      "objectSelector": {"matchLabels": {"deletion-test": "deny"}}},
                 "validations": [{"expression": "false", "message": "kept by the test's policy"}]},
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": harness.namespace}}}},
    }
    harness.admin.request("POST", f"{ADMISSION}/validatingadmissionpolicies", body=policy)
    harness.admin.request("POST", f"{ADMISSION}/validatingadmissionpolicybindings", body=binding)
    try:
        def denied() -> bool:  # the policy is in force once a dry-run delete is refused
            try:
                harness.admin.request("DELETE", f"/api/v1/namespaces/{harness.namespace}/configmaps/sticky",
                                      query={"dryRun": "All"})
            except KubeError as e:
                return "kept by the test's policy" in str(e)
            return False
        wait_for(denied, 15, what="the deny-delete policy in force")

        delete_app(harness, "svc")

        condition = harness.wait_condition("svc", "Deleting", "True", "DeleteFailed", timeout=15)
        assert "sticky" in condition["message"] and "kept by the test's policy" in condition["message"]
        assert harness.condition("svc", "Ready")["reason"] == "DeleteFailed"
        wait_for(lambda: events(harness.admin, harness.namespace, "svc", "DeleteFailed"), what="a DeleteFailed Event")
        assert harness.cm("alpha") is None, "the rest is deleted"
        app = harness.app("svc")
        assert app["metadata"]["finalizers"] == [ARGO], "kept while the inventory is not empty"
        assert inventory_names(harness, "svc") == ["sticky"]
    finally:
        harness.admin.request("DELETE", f"{ADMISSION}/validatingadmissionpolicybindings/{name}")
        harness.admin.request("DELETE", f"{ADMISSION}/validatingadmissionpolicies/{name}")

    harness.refresh("svc")  # or wait out the backoff
    wait_gone(harness, app_path(harness, "svc"), "the Application gone after the retry", timeout=30)
    assert harness.cm("sticky") is None
