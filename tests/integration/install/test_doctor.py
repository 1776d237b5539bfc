"""``driftguard doctor`` against a real API server: RBAC as stored, the bootstrap roles included.

A user allowed only to mint tokens in driftguard-system is reported (that token is the reconciler's
identity); a user holding the built-in ``edit`` role in their own namespace is not — although ``edit``
can impersonate ServiceAccounts, it can do so only in that namespace. A user who may impersonate the
userextra ``driftguard.io/reconciler`` (the reconciler's seal, which the webhook trusts) is reported, and
the API server's own authorizer agrees it may (a SubjectAccessReview); one who may impersonate another
extra is not. The exit status is 1 on findings.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SEAL = "driftguard.io/reconciler"  # the reconciler's seal userextra (webhook.identity)


def doctor(cluster: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftguard.cli", "doctor", "--kubeconfig",
                           str(cluster.admin_kubeconfig)], capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def objects(admin: Kube, created: list[tuple[str, dict[str, Any]]]) -> Iterator[None]:
    """The (collection path, object) pairs created for the block, deleted after it."""
    for path, body in created:
        admin.request("POST", path, body=body)
    try:
        yield
    finally:
        for path, body in created:
            admin.request("DELETE", f"{path}/{body['metadata']['name']}")


def cluster_grant(name: str, user: str, rule: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A ClusterRole holding ``rule`` and a ClusterRoleBinding of it to ``user``, both named ``name``."""
    return [
        (f"{RBAC}/clusterroles", {"metadata": {"name": name}, "rules": [rule]}),
        (f"{RBAC}/clusterrolebindings", {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
    ]


def may_impersonate_extra(admin: Kube, user: str, extra: str) -> bool:
    """What the API server's impersonation filter asks the authorizer for ``--as-user-extra extra=…``."""
    review = admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"verb": "impersonate", "group": "authentication.k8s.io",
                                                       "resource": "userextras", "subresource": extra,
                                                       "name": "true"}}})
    return bool(review["status"].get("allowed"))


@pytest.fixture
def subjects(admin: Kube, namespace: str) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    minter, editor = f"mallory-{suffix}", f"editor-{suffix}"
    try:
        admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    except KubeError as e:
        if e.status != 409:
            raise
    created = [
        (f"{RBAC}/namespaces/{NAMESPACE}/roles", {"metadata": {"name": f"tokens-{suffix}"}, "rules": [
            {"verbs": ["create"], "apiGroups": [""], "resources": ["serviceaccounts/token"]}]}),
        (f"{RBAC}/namespaces/{NAMESPACE}/rolebindings", {
            "metadata": {"name": f"tokens-{suffix}"}, "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"tokens-{suffix}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": minter}]}),
        (f"{RBAC}/namespaces/{namespace}/rolebindings", {
            "metadata": {"name": f"edit-{suffix}"}, "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": editor}]}),
    ]
    with objects(admin, created):
        yield minter, editor


def test_doctor_names_who_can_mint_the_reconcilers_token_and_not_a_namespace_editor(
    subjects: tuple[str, str], cluster: object,
) -> None:
    minter, editor = subjects
    done = doctor(cluster)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "✗ can act around admission:"
    [mint] = [line for line in lines if minter in line]
    assert mint.strip() == (f"User {minter}: create tokens for driftguard's ServiceAccounts "
                            f"(via RoleBinding {NAMESPACE}/tokens-{minter.split('-')[1]} → Role "
                            f"tokens-{minter.split('-')[1]})")
    assert not [line for line in lines if editor in line], "edit in one namespace reaches nothing of driftguard's"
    assert any("WebhookConfiguration driftguard" in line for line in lines), "the registration is always checked"
    assert lines[-1].endswith("see README, 'Threat model'")


@pytest.fixture
def sealers(admin: Kube) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    sealer, other = f"sealer-{suffix}", f"scoper-{suffix}"
    created = [
        *cluster_grant(f"seal-{suffix}", sealer, {"verbs": ["impersonate"], "apiGroups": ["authentication.k8s.io"],
                                                  "resources": [f"userextras/{SEAL}"]}),
        *cluster_grant(f"scopes-{suffix}", other, {"verbs": ["impersonate"], "apiGroups": ["authentication.k8s.io"],
                                                   "resources": ["userextras/scopes"]}),
    ]
    with objects(admin, created):
        yield sealer, other


def test_doctor_names_who_can_set_the_reconcilers_seal_userextra(
    sealers: tuple[str, str], admin: Kube, cluster: object,
) -> None:
    sealer, other = sealers
    assert may_impersonate_extra(admin, sealer, SEAL), "the real authorizer grants the seal extra"
    assert not may_impersonate_extra(admin, other, SEAL) and may_impersonate_extra(admin, other, "scopes")

    done = doctor(cluster)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "✗ can act around admission:"
    suffix = sealer.split("-")[1]
    [line] = [line for line in lines if sealer in line]
    assert line.strip() == (f"User {sealer}: set the reconciler's seal extra (userextras/{SEAL}) "
                            f"(via ClusterRoleBinding seal-{suffix} → ClusterRole seal-{suffix})")
    assert not [line for line in lines if other in line], "another userextra reaches nothing of driftguard's"
    assert lines[-1].endswith("see README, 'Threat model'")
