"""The paths around the webhook's per-request checks, as real API requests (issue #10).

Each path is tried as the ``laptop`` user (bound to cluster-admin: only admission can stop it) and as a
user holding only the built-in ``edit`` role in the guarded namespace, with the version-matched
kubectl or the Python client, and must be denied with a message naming the path and the fix, and
recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.guarded import MERGE, Guarded, story

from driftguard.core import contract
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster
from reconciler import crd

pytestmark = pytest.mark.integration

SSR = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
EXTRA = "authentication.kubernetes.io/"
IDENTITY_PATH = ("(driftguard identity: system:serviceaccount:{ns}:driftguard-reconciler is trusted only with a "
                 "token bound to a reconciler Pod; this request's credential is not pod-bound (impersonation or "
                 "`kubectl create token`))")
GC = "system:serviceaccount:kube-system:generic-garbage-collector"


def _whoami(kube: Kube) -> dict[str, Any]:
    info: dict[str, Any] = kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                        body=SSR)["status"]["userInfo"]
    return info


def _reconciler(guarded: Guarded) -> str:
    return f"system:serviceaccount:{guarded.namespace}:driftguard-reconciler"


@pytest.fixture(scope="module")
def editor(guarded: Guarded) -> Iterator[tuple[Kube, Path]]:
    kube, kubeconfig = guarded.edit_user("dev-edit-only")
    yield kube, kubeconfig
    kube.close()


# ---------------------------------------------------------------- what the API server puts in userInfo.extra

def test_only_a_pod_bound_token_carries_the_pod_and_impersonating_extras_needs_its_own_right(
        guarded: Guarded, editor: tuple[Kube, Path]) -> None:
    bound = _whoami(guarded.reconciler)
    assert bound["username"] == _reconciler(guarded)
    assert bound["extra"][EXTRA + "pod-name"] == ["driftguard-reconciler-token-holder"]
    assert len(bound["extra"][EXTRA + "pod-uid"]) == 1
    assert bound["extra"][EXTRA + "credential-id"][0].startswith("JTI=")
    with guarded.cluster.serviceaccount(guarded.namespace, "driftguard-reconciler", bound=False) as unbound:
        assert set(_whoami(unbound)["extra"]) == {EXTRA + "credential-id"}
    with Kube(editor[1], impersonate_user=_reconciler(guarded)) as impersonated:
        assert "extra" not in _whoami(impersonated)
    forged = guarded.kubectl_as(editor[1], "get", "--raw", f"/api/v1/namespaces/{guarded.namespace}/configmaps",
                                "--as", _reconciler(guarded),
                                "--as-user-extra", f"{EXTRA}pod-name=driftguard-reconciler-x")
    assert forged.returncode != 0
    assert f'cannot impersonate resource "userextras/{EXTRA}pod-name"' in forged.stderr, forged.stderr


# ---------------------------------------------------------------- path 1: identity by name

@pytest.mark.parametrize("who", ["laptop", "edit"])
def test_the_reconcilers_name_by_impersonation_is_denied_and_recorded(guarded: Guarded, editor: tuple[Kube, Path],
                                                                       who: str) -> None:
    name = f"posed-{who}"
    guarded.from_git(name)
    assert guarded.laptop_kubeconfig is not None
    kubeconfig = guarded.laptop_kubeconfig if who == "laptop" else editor[1]
    result = guarded.kubectl_as(kubeconfig, "scale", f"deployment/{name}", "--replicas=9",
                                "--as", _reconciler(guarded))
    assert result.returncode != 0
    assert story(guarded, name) in result.stderr
    assert IDENTITY_PATH.format(ns=guarded.namespace) in result.stderr
    deleted = guarded.kubectl_as(kubeconfig, "delete", f"deployment/{name}", "--as", _reconciler(guarded))
    assert deleted.returncode != 0
    assert "deleting it here is denied. Remove it from git" in deleted.stderr
    record = guarded.wait_record(name, decision="deny", operation="DELETE")
    assert record.user == _reconciler(guarded)
    assert "not pod-bound" in record.reason
    assert guarded.admin.request("GET", guarded.path(name))["spec"]["replicas"] == 3


def test_a_token_from_kubectl_create_token_is_not_the_reconciler(guarded: Guarded,
                                                                 editor: tuple[Kube, Path]) -> None:
    guarded.from_git("minted")
    minted = guarded.kubectl_as(editor[1], "create", "token", "driftguard-reconciler")
    assert minted.returncode == 0, minted.stderr  # the built-in edit role may mint tokens in its namespace
    with guarded.admin.with_token(minted.stdout.strip()) as unbound:
        with pytest.raises(KubeError) as denied:
            unbound.request("PATCH", guarded.path("minted"), body={"spec": {"replicas": 9}}, content_type=MERGE)
    text = guarded.denied_by_us(denied.value)
    assert text == f"{story(guarded, 'minted')} {IDENTITY_PATH.format(ns=guarded.namespace)}"
    guarded.wait_record("minted", decision="deny", user=_reconciler(guarded))


def test_the_garbage_collectors_name_deletes_nothing(guarded: Guarded) -> None:
    guarded.from_git("collected")
    assert guarded.laptop_kubeconfig is not None
    result = guarded.kubectl_as(guarded.laptop_kubeconfig, "delete", "deployment/collected", "--as", GC)
    assert result.returncode != 0
    assert "deleting it here is denied. Remove it from git" in result.stderr
    assert f"(driftguard identity: {GC} is trusted only with its own token; this request carries none" in result.stderr
    guarded.wait_record("collected", decision="deny", user=GC)


# ---------------------------------------------------------------- path 2: driftguard's own objects

@pytest.fixture(scope="module")
def applications(guarded: Guarded) -> str:
    """The Application CRD installed; the collection path in the guarded namespace."""
    crd.install(Cluster(guarded.admin))
    return f"/apis/driftguard.io/v1alpha1/namespaces/{guarded.namespace}/applications"


def _application(guarded: Guarded, collection: str, name: str) -> str:
    body = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": guarded.namespace},
            "spec": {"source": {"repoURL": "https://github.com/org/k8s-manifests", "path": "apps"},
                     "destination": {"namespace": guarded.namespace},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}, "enforcement": "deny"}}
    guarded.admin.request("POST", collection, body=body)  # admin is in system:masters, the default admin group
    return f"{collection}/{name}"


OWN = ("Application {ns}/{name} is driftguard's own: it changes through git (an app-of-apps Application), the "
       "reconciler, or a member of group system:masters; laptop is not a member. This request {does}. Ask a member "
       "of system:masters, or change it in the git repository of its app-of-apps")


@pytest.mark.parametrize(("patch", "does"), [
    pytest.param({"spec": {"enforcement": "off"}}, "downgrades spec.enforcement from deny to off", id="enforcement"),
    pytest.param({"spec": {"syncPolicy": {"automated": None}}},
                 "removes spec.syncPolicy.automated (no more automatic sync, prune or self-heal)", id="automated"),
    pytest.param({"metadata": {"finalizers": [contract.PRUNE_ON_DELETE]}},
                 f"adds finalizer {contract.PRUNE_ON_DELETE} (a cascading delete: deleting the Application then "
                 "deletes what it manages)", id="cascading finalizer"),
    pytest.param({"spec": {"source": {"repoURL": "https://evil.example/repo"}}}, "changes spec.source", id="source"),
])
def test_a_laptop_cannot_weaken_an_application(guarded: Guarded, applications: str, patch: dict[str, Any],
                                              does: str) -> None:
    name = f"app-{secrets.token_hex(2)}"
    path = _application(guarded, applications, name)
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", path, body=patch, content_type=MERGE)
    assert guarded.denied_by_us(denied.value, "applications") == OWN.format(ns=guarded.namespace, name=name,
                                                                             does=does)
    guarded.wait_record(name, decision="deny", user="laptop", kind="Application")


def test_a_laptop_cannot_delete_an_application_or_write_its_status(guarded: Guarded, applications: str) -> None:
    path = _application(guarded, applications, "kept")
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("DELETE", path)
    assert guarded.denied_by_us(denied.value, "applications") == OWN.format(
        ns=guarded.namespace, name="kept", does="deletes the Application")
    with pytest.raises(KubeError) as status:
        guarded.laptop.request("PATCH", f"{path}/status", body={"status": {"sync": {"status": "Synced"}}},
                               content_type=MERGE)
    assert guarded.denied_by_us(status.value, "applications") == (
        f"status of Application {guarded.namespace}/kept is written by driftguard's reconciler only; laptop may not "
        "write it")
    assert guarded.admin.request("GET", path)["metadata"]["name"] == "kept"


def test_an_admins_risky_change_is_admitted_and_recorded(guarded: Guarded, applications: str) -> None:
    path = _application(guarded, applications, "by-admin")
    answer = guarded.admin.request_with_warnings("PATCH", path, body={"spec": {"enforcement": "warn"}},
                                                 content_type=MERGE)
    text = f"Application {guarded.namespace}/by-admin: admin (admin) downgrades spec.enforcement from deny to warn"
    assert any(w.startswith(text) for w in answer.warnings), answer.warnings
    record = guarded.wait_record("by-admin", decision="audit")
    assert (record.user, record.operation, record.kind) == ("admin", "UPDATE", "Application")
    guarded.reconciler.request("PATCH", f"{path}/status", body={"status": {"sync": {"status": "Synced"}}},
                               content_type=MERGE)  # the reconciler's pod-bound token writes status
