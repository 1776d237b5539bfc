"""The control plane is real: identities, RBAC, TokenRequest, admission, watches."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from driftguard.kube import Kube, KubeError
from driftguard.local.controlplane import KUBERNETES_VERSION, ControlPlane

pytestmark = pytest.mark.integration

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
ACCESS_REVIEW = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
POLICY_MESSAGE = "driftguard test: configmaps named forbidden-* must come from git"


def whoami(kube: Kube) -> dict[str, Any]:
    review = kube.request(
        "POST", SELF_REVIEW, body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    return dict(review["status"]["userInfo"])


def may(kube: Kube, verb: str, resource: str, namespace: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}},
    }
    return bool(kube.request("POST", ACCESS_REVIEW, body=review)["status"]["allowed"])


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def eventually(attempt: Callable[[int], bool], timeout: float = 30.0, interval: float = 0.2) -> int:
    """Call ``attempt(n)`` until it returns True; return the number of attempts. Bounded."""
    deadline = time.monotonic() + timeout
    for n in itertools.count(1):
        if attempt(n):
            return n
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met after {n} attempts in {timeout:.0f}s")
        time.sleep(interval)
    raise AssertionError("unreachable")


def test_the_pinned_kubernetes_version_is_running(control_plane: ControlPlane, admin: Kube) -> None:
    assert admin.request("GET", "/version")["gitVersion"] == f"v{KUBERNETES_VERSION}"
    assert control_plane.url == admin.server


def test_admin_creates_a_namespace(admin: Kube) -> None:
    name = f"created-by-admin-{int(time.time() * 1000) % 10**8}"
    created = admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    try:
        assert created["metadata"]["name"] == name
        fetched = admin.request("GET", f"/api/v1/namespaces/{name}")
        assert fetched["status"]["phase"] == "Active"
        assert fetched["metadata"]["labels"]["kubernetes.io/metadata.name"] == name
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/{name}")


def test_admin_is_system_masters(admin: Kube) -> None:
    assert "system:masters" in whoami(admin)["groups"]


def test_laptop_is_laptop_in_engineers_not_system_masters(laptop: Kube) -> None:
    user = whoami(laptop)
    assert user["username"] == "laptop"
    assert "engineers" in user["groups"]
    assert "system:masters" not in user["groups"]


def test_laptop_may_do_anything_by_rbac(laptop: Kube, namespace: str) -> None:
    assert may(laptop, "delete", "deployments", namespace)
    created = laptop.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=configmap("from-laptop"))
    assert created["metadata"]["name"] == "from-laptop"


def test_rbac_is_on_a_user_without_bindings_is_forbidden(as_user: Callable[..., Kube], namespace: str) -> None:
    nobody = as_user("nobody", ["nobodies"])
    assert whoami(nobody)["username"] == "nobody"
    assert not may(nobody, "list", "configmaps", namespace)
    with pytest.raises(KubeError) as denied:
        nobody.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert (denied.value.status, denied.value.reason) == (403, "Forbidden")
    assert 'User "nobody" cannot list resource "configmaps"' in denied.value.message


def test_serviceaccount_token_authenticates_as_the_serviceaccount(
    as_serviceaccount: Callable[..., Kube], namespace: str
) -> None:
    robot = as_serviceaccount("robot")
    user = whoami(robot)
    assert user["username"] == f"system:serviceaccount:{namespace}:robot"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{namespace}"} <= set(user["groups"])
    with pytest.raises(KubeError) as denied:  # authenticated, but nothing is bound to it
        robot.request("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert denied.value.status == 403


def test_serviceaccount_kubeconfig_is_private(control_plane: ControlPlane, admin: Kube, namespace: str) -> None:
    path = control_plane.kubeconfig_for_serviceaccount(namespace, "private")
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def admission_policy(admin: Kube, namespace: str) -> Iterator[Callable[[list[str]], None]]:
    """Install a ValidatingAdmissionPolicy on configmaps named forbidden-*, bound to this namespace."""
    name = f"driftguard-test-{namespace}"

    def install(actions: list[str]) -> None:
        admin.request("POST", POLICIES, body=_policy(name))
        admin.request("POST", BINDINGS, body=_binding(name, namespace, actions))

    yield install
    for collection in (BINDINGS, POLICIES):
        try:
            admin.request("DELETE", f"{collection}/{name}")
        except KubeError as error:
            if error.status != 404:
                raise


def _policy(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}
                ]
            },
            "validations": [
                {
                    "expression": "!object.metadata.name.startsWith('forbidden-')",
                    "message": POLICY_MESSAGE,
                    "reason": "Forbidden",
                }
            ],
        },
    }


def _binding(name: str, namespace: str, actions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": actions,
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }


def test_admission_denial_reaches_the_client(
    admission_policy: Callable[[list[str]], None], laptop: Kube, namespace: str
) -> None:
    admission_policy(["Deny"])
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    denial: list[KubeError] = []

    def denied(n: int) -> bool:
        try:
            laptop.request("POST", configmaps, body=configmap(f"forbidden-{n}"))
        except KubeError as error:
            denial.append(error)
            return True
        return False  # the binding is not active yet; the apiserver picks it up through an informer

    eventually(denied)
    assert (denial[0].status, denial[0].reason) == (403, "Forbidden")
    assert POLICY_MESSAGE in denial[0].message
    assert f"ValidatingAdmissionPolicy 'driftguard-test-{namespace}'" in denial[0].message
    laptop.request("POST", configmaps, body=configmap("allowed"))  # other names are untouched


def test_admission_warnings_reach_the_client(
    admission_policy: Callable[[list[str]], None], laptop: Kube, namespace: str
) -> None:
    admission_policy(["Warn"])
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    warnings: list[str] = []

    def warned(n: int) -> bool:
        response = laptop.request_with_warnings("POST", configmaps, body=configmap(f"forbidden-{n}"))
        assert response.body["metadata"]["name"] == f"forbidden-{n}"  # Warn admits
        warnings.extend(response.warnings)
        return bool(response.warnings)

    eventually(warned)
    assert any(POLICY_MESSAGE in warning for warning in warnings), warnings


def test_watch_streams_events(admin: Kube, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    version = admin.request("GET", configmaps)["metadata"]["resourceVersion"]
    admin.request("POST", configmaps, body=configmap("watched"))
    admin.request("DELETE", f"{configmaps}/watched")
    seen = []
    for event in admin.stream(configmaps, {"resourceVersion": version}, timeout=10):
        if event["object"]["metadata"]["name"] != "watched":
            continue  # e.g. kube-root-ca.crt, published by a real cluster's controller-manager
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            break
    assert seen == [("ADDED", "watched"), ("DELETED", "watched")]


def test_requests_for_missing_objects_raise_not_found(admin: Kube, namespace: str) -> None:
    with pytest.raises(KubeError) as missing:
        admin.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/absent")
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")
    assert str(missing.value).startswith("404 NotFound: ")
