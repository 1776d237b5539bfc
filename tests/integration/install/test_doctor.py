"""``driftguard doctor`` against a real API server: RBAC as stored, the bootstrap roles included.

A user allowed only to mint tokens in driftguard-system is reported (that token is the reconciler's
identity); a user holding the built-in ``edit`` role in their own namespace is not — although ``edit``
can impersonate ServiceAccounts, it can do so only in that namespace. The exit status is 1 on findings.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration

RBAC = "/apis/rbac.authorization.k8s.io/v1"


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
    for path, body in created:
        admin.request("POST", path, body=body)
    yield minter, editor
    for path, body in created:
        admin.request("DELETE", f"{path}/{body['metadata']['name']}")


def test_doctor_names_who_can_mint_the_reconcilers_token_and_not_a_namespace_editor(
    subjects: tuple[str, str], cluster: object,
) -> None:
    minter, editor = subjects
    kubeconfig = cluster.admin_kubeconfig  # type: ignore[attr-defined]
    done = subprocess.run([sys.executable, "-m", "driftguard.cli", "doctor", "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=120, check=False)
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
