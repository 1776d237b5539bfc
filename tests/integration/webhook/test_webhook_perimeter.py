"""The paths around the webhook's per-request checks, as real API requests (issue #10).

Each path is tried as the ``laptop`` user (bound to cluster-admin: only admission can stop it) and as a
user holding only the built-in ``edit`` role in the guarded namespace, with the version-matched
kubectl or the Python client, and must be denied with a message naming the path and the fix, and
recorded.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.guarded import (
    APPLY,
    MERGE,
    SOURCE,
    STRATEGIC,
    Guarded,
    create_or_keep,
    delete_if_present,
    story,
    suggest_line,
)
from support.webhook_harness import eventually

from driftguard.core import contract
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster
from reconciler import crd
from webhook import registration

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
    assert story(guarded, name, hint=False) in result.stderr
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
    assert text == (f"{story(guarded, 'minted', hint=False)} {IDENTITY_PATH.format(ns=guarded.namespace)}\n"
                    f"{suggest_line(guarded, 'minted')}")
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


# ---------------------------------------------------------------- path 3: deletes that never reach the object's DELETE

@pytest.fixture(scope="module")
def marker(guarded: Guarded) -> Iterator[Kube]:
    """The reconciler's identity, allowed (here) to set the holds-managed mark on Namespaces and CRDs."""
    name = f"{guarded.name}-marker"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch", "delete"]},
                      {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                       "verbs": ["get", "patch", "delete"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": "driftguard-reconciler",
                             "namespace": guarded.namespace}]}
    create_or_keep(guarded.admin, "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    create_or_keep(guarded.admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    yield guarded.reconciler
    delete_if_present(guarded.admin, f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
    delete_if_present(guarded.admin, f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")


def _mark(kube: Kube, path: str, holders: str | None) -> None:
    marks = {"labels": {contract.LABEL_HOLDS_MANAGED: "true" if holders else None},
             "annotations": {contract.ANN_HOLDS_MANAGED: holders}}
    kube.request("PATCH", path, body={"metadata": marks}, content_type=MERGE)


def test_a_namespace_holding_managed_objects_cannot_be_deleted_nor_unmarked(guarded: Guarded, marker: Kube) -> None:
    name = f"held-{secrets.token_hex(3)}"
    path = f"/api/v1/namespaces/{name}"
    guarded.admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    _mark(marker, path, "driftguard-system/shop")  # what the reconciler does for a namespace it fills
    try:
        assert guarded.laptop_kubeconfig is not None
        deleted = guarded.kubectl_as(guarded.laptop_kubeconfig, "delete", "namespace", name)
        assert deleted.returncode != 0
        assert (f'admission webhook "holders.{guarded.name}.io" denied the request: Namespace {name} holds objects '
                "driftguard manages (Application driftguard-system/shop); deleting it would delete them without "
                "their own DELETE ever being judged, so it is denied. Remove those objects from git first: the "
                "reconciler then lifts the driftguard.io/holds-managed mark") in deleted.stderr
        unmarked = guarded.kubectl_as(guarded.laptop_kubeconfig, "label", "namespace", name,
                                      f"{contract.LABEL_HOLDS_MANAGED}-")
        assert unmarked.returncode != 0
        assert "the driftguard.io/holds-managed mark is set and removed only by driftguard's reconciler" in (
            unmarked.stderr)
        guarded.wait_record(name, decision="deny", operation="DELETE", kind="Namespace", user="laptop")
        assert "deletionTimestamp" not in guarded.admin.request("GET", path)["metadata"]
    finally:
        _mark(marker, path, None)  # the reconciler lifts the mark; then the namespace may go
        guarded.admin.request("DELETE", path)


def test_a_crd_holding_managed_objects_cannot_be_deleted(guarded: Guarded, marker: Kube) -> None:
    group = f"t{secrets.token_hex(3)}.driftguard-tests.example.com"
    definition = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]},
    }
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}"
    guarded.admin.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=definition)
    _mark(marker, path, "driftguard-system/widgets")
    try:
        with pytest.raises(KubeError) as denied:
            guarded.laptop.request("DELETE", path)
        assert guarded.denied_by_us(denied.value, "holders").startswith(
            f"CustomResourceDefinition widgets.{group} holds objects driftguard manages "
            "(Application driftguard-system/widgets); deleting it would delete them")
    finally:
        _mark(marker, path, None)
        guarded.admin.request("DELETE", path)


@pytest.mark.parametrize("who", ["laptop", "edit"])
def test_an_owner_reference_added_by_hand_is_denied(guarded: Guarded, editor: tuple[Kube, Path], who: str) -> None:
    name = f"orphaned-{who}"
    guarded.from_git(name)
    owner = guarded.admin.request("POST", f"/api/v1/namespaces/{guarded.namespace}/configmaps",
                                  body={"metadata": {"generateName": "doomed-"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"]}
    assert guarded.laptop_kubeconfig is not None
    kubeconfig = guarded.laptop_kubeconfig if who == "laptop" else editor[1]
    result = guarded.kubectl_as(kubeconfig, "patch", "deployment", name, "--type=merge",
                                "-p", json.dumps({"metadata": {"ownerReferences": [reference]}}))
    assert result.returncode != 0
    assert (f"Deployment {guarded.namespace}/{name} is managed by driftguard and git declares none of these, which "
            f"driftguard guards anyway: metadata.ownerReferences[uid={reference['uid']}] (the garbage collector "
            f"deletes an object together with its owners; this request sets ConfigMap/{reference['name']}). "
            "Change them in git: https://github.com/org/k8s-manifests") in result.stderr
    guarded.wait_record(name, decision="deny")
    # the garbage collector itself may delete only what has owners; this object still has none
    assert "ownerReferences" not in guarded.admin.request("GET", guarded.path(name))["metadata"]


# ---------------------------------------------------------------- path 4: subresources

def _pod_from_git(guarded: Guarded, name: str) -> str:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": guarded.namespace},
                "spec": {"containers": [{"name": "web", "image": "registry.example/my-service:1.4.2",
                                         "resources": {"requests": {"cpu": "100m"}}}]}}
    stamped = contract.stamp(manifest, application="driftguard-system/app", source=SOURCE, enforcement="deny")
    path = f"/api/v1/namespaces/{guarded.namespace}/pods/{name}"
    guarded.reconciler.request("PATCH", path, body=stamped, content_type=APPLY,
                               query={"fieldManager": contract.FIELD_MANAGER, "force": "true"})
    return path


@pytest.mark.parametrize("who", ["laptop", "edit"])
def test_evicting_a_managed_pod_is_its_delete(guarded: Guarded, editor: tuple[Kube, Path], who: str) -> None:
    name = f"evicted-{who}"
    path = _pod_from_git(guarded, name)
    client = guarded.laptop if who == "laptop" else editor[0]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": guarded.namespace}}
    with pytest.raises(KubeError) as denied:
        client.request("POST", f"{path}/eviction", body=eviction)
    assert guarded.denied_by_us(denied.value, "evict") == (
        f"Pod {guarded.namespace}/{name} is managed by driftguard (Application driftguard-system/app) and declared in "
        "git at services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org; evicting it "
        "(pods/eviction deletes it) is denied. Remove it from git: https://github.com/org/k8s-manifests")
    guarded.wait_record(name, decision="deny", subresource="eviction")
    assert guarded.admin.request("GET", path)["metadata"]["name"] == name


def test_an_ephemeral_container_is_denied(guarded: Guarded, editor: tuple[Kube, Path]) -> None:
    _pod_from_git(guarded, "debugged")
    debug = ("debug", "debugged", "--image=attacker/tools", "--container=dbg", "--profile=general")
    refused = guarded.kubectl_as(editor[1], *debug)
    assert refused.returncode != 0  # the built-in edit role does not grant pods/ephemeralcontainers at all
    assert 'cannot patch resource "pods/ephemeralcontainers"' in refused.stderr
    assert guarded.laptop_kubeconfig is not None
    result = guarded.kubectl_as(guarded.laptop_kubeconfig, *debug)
    assert result.returncode != 0
    assert (f'admission webhook "validate.{guarded.name}.io" denied the request: Pod {guarded.namespace}/debugged is '
            "managed by driftguard and git declares none of these, which driftguard guards anyway: "
            "spec.ephemeralContainers[name=dbg] (a ephemeral container git does not list") in result.stderr
    guarded.wait_record("debugged", decision="deny", subresource="ephemeralcontainers")


def test_resize_of_declared_requests_is_denied(guarded: Guarded) -> None:
    path = _pod_from_git(guarded, "resized")
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", f"{path}/resize", content_type=STRATEGIC, body={"spec": {"containers": [
            {"name": "web", "resources": {"requests": {"cpu": "2"}}}]}})
    assert guarded.denied_by_us(denied.value).startswith(
        f"spec.containers[name=web].resources.requests.cpu of Pod {guarded.namespace}/resized is declared in git "
        "(100m)")
    guarded.wait_record("resized", decision="deny", subresource="resize")


# ---------------------------------------------------------------- path 5: undeclared is guarded, privilege above all

@pytest.mark.parametrize("who", ["laptop", "edit"])
def test_a_privileged_sidecar_host_path_and_host_pid_are_denied(guarded: Guarded, editor: tuple[Kube, Path],
                                                               who: str) -> None:
    name = f"privileged-{who}"
    guarded.from_git(name)
    patch = {"spec": {"template": {"spec": {
        "hostPID": True,
        "containers": [{"name": "pwn", "image": "attacker/tools", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}}
    client = guarded.laptop if who == "laptop" else editor[0]
    with pytest.raises(KubeError) as denied:
        client.request("PATCH", guarded.path(name), body=patch, content_type=STRATEGIC)
    text = guarded.denied_by_us(denied.value)
    assert text.startswith(f"Deployment {guarded.namespace}/{name} is managed by driftguard and git declares none "
                           "of these, which driftguard guards anyway: spec.template.spec.hostPID (shares the node's "
                           "process namespace; this request sets true); spec.template.spec.containers[name=pwn] (a "
                           "container git does not list (git lists web) runs or mounts whatever it names; this "
                           "request adds it); spec.template.spec.volumes[name=root]")
    assert text.endswith("Change them in git: https://github.com/org/k8s-manifests")
    record = guarded.wait_record(name, decision="deny")
    assert [f["field"] for f in record.fields] == ["spec.template.spec.hostPID",
                                                   "spec.template.spec.containers[name=pwn]",
                                                   "spec.template.spec.volumes[name=root]"]


# ---------------------------------------------------------------- webhook configurations: a VAP guards them

def test_a_validating_admission_policy_guards_the_webhook_configurations(guarded: Guarded) -> None:
    """Admission webhooks are never called for webhook configurations; a ValidatingAdmissionPolicy is."""
    policy, binding = registration.protection(name=guarded.name, policy_name=f"{guarded.name}-protect",
                                              reconciler_users=guarded.webhook.settings.reconciler_users)
    vaps = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    guarded.admin.request("POST", vaps, body=policy)
    guarded.admin.request("POST", bindings, body=binding)
    configuration = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{guarded.name}"
    try:
        def refused() -> bool:
            try:
                guarded.laptop.request("DELETE", configuration, query={"dryRun": "All"})
            except KubeError as error:
                return "ValidatingAdmissionPolicy" in error.message
            return False

        eventually(refused, timeout=30, what="the policy being enforced")
        with pytest.raises(KubeError) as denied:
            guarded.laptop.request("PATCH", configuration, body={"metadata": {"labels": {"x": "y"}}},
                                   content_type=MERGE)
        assert (f"the driftguard webhook configurations {guarded.name} change only by a member of system:masters "
                f"or driftguard's reconciler; to change them anyway, delete the ValidatingAdmissionPolicyBinding "
                f"{guarded.name}-protect first") in denied.value.message
        guarded.admin.request("PATCH", configuration, body={"metadata": {"labels": {"x": "y"}}}, content_type=MERGE)
        # ... and the limit: a VAP is not evaluated for its own binding, so whoever may delete it is unstopped
        guarded.laptop.request("DELETE", f"{bindings}/{guarded.name}-protect", query={"dryRun": "All"})
    finally:
        delete_if_present(guarded.admin, f"{bindings}/{guarded.name}-protect")
        delete_if_present(guarded.admin, f"{vaps}/{guarded.name}-protect")
