"""Who talks to the control plane: kubeconfig files and the identities behind them.

Kubeconfigs reference certificate files by absolute path rather than embedding them, so the
``kubernetes`` client never has to spill key material into temporary files; token kubeconfigs carry
the token inline and are written 0600. The RBAC objects driftguard's test identities need (the
``laptop`` user bound to ``cluster-admin``) are created here, idempotently, through ``driftguard.kube``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from certs import write_private
from driftguard.kube import Kube, KubeError

CLUSTER_NAME = "driftguard-local"
LAPTOP_USER = "laptop"
LAPTOP_GROUP = "engineers"
LAPTOP_BINDING = "driftguard-laptop-cluster-admin"
TOKEN_SECONDS = 3600
TOKEN_HOLDER_SUFFIX = "-token-holder"  # noqa: S105 - a Pod name suffix, not a secret


def write_cert_kubeconfig(path: Path, server: str, ca_file: Path, user: str, *, cert: Path, key: Path) -> Path:
    """A kubeconfig that authenticates ``user`` with a client certificate."""
    credentials = {"client-certificate": str(cert), "client-key": str(key)}
    return _write_kubeconfig(path, server, ca_file, user, credentials)


def write_token_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (written 0600; never logged)."""
    return _write_kubeconfig(path, server, ca_file, user, {"token": token})


def ensure_laptop_binding(admin: Kube, user: str = LAPTOP_USER) -> None:
    """Bind ``user`` to ``cluster-admin``: RBAC lets it do anything, so only admission can stop it."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": LAPTOP_BINDING, "labels": {"app.kubernetes.io/part-of": "driftguard"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    _create_or_keep(admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)


def serviceaccount_token(admin: Kube, namespace: str, name: str, seconds: int = TOKEN_SECONDS, *,
                         bound: bool = True, audiences: Sequence[str] = ()) -> str:
    """Create ServiceAccount ``namespace/name`` if needed and return a fresh TokenRequest token.

    ``bound`` (the default) binds the token to a Pod ``<name>-token-holder`` of that ServiceAccount,
    created for the purpose (``token_holder``): the API server then adds the Pod's name and uid to the
    token's ``userInfo.extra``, as it does for a kubelet-projected token, and driftguard's webhook trusts
    its reconciler only with such a token. ``bound=False`` is what ``kubectl create token`` mints.
    ``audiences`` (none: the API server's own) is who the token is for, as a projected volume's ``audience``.
    """
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    _create_or_keep(admin, f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audiences:
        spec["audiences"] = list(audiences)
    if bound:
        pod = token_holder(admin, namespace, name)
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
    response = admin.request("POST", path, body=request)
    return str(response["status"]["token"])


def token_holder(admin: Kube, namespace: str, serviceaccount: str) -> dict[str, Any]:
    """The Pod ``<serviceaccount>-token-holder`` that bound tokens are bound to (created when missing).

    It never runs: a bare control plane has no scheduler or kubelet, and on a real cluster its node
    selector matches no Node, so it stays Pending. It passes Pod Security ``restricted`` (driftguard's
    namespace enforces it). Deleting it revokes every token bound to it.
    """
    name = f"{serviceaccount}{TOKEN_HOLDER_SUFFIX}"
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "driftguard",
                                              "app.kubernetes.io/component": "token-holder"}},
        "spec": {
            "serviceAccountName": serviceaccount, "automountServiceAccountToken": False,
            "nodeSelector": {"driftguard.io/token-holder": "never-scheduled"},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "hold", "image": "registry.k8s.io/pause:3.10", "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        },
    }
    _create_or_keep(admin, f"/api/v1/namespaces/{namespace}/pods", pod)
    return admin.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")


def _create_or_keep(kube: Kube, collection: str, body: dict[str, Any]) -> None:
    try:
        kube.request("POST", collection, body=body)
    except KubeError as error:
        if error.status != 409:
            raise


def _write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, credentials: dict[str, str]) -> Path:
    context = f"{user}@{CLUSTER_NAME}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": context,
    }
    return write_private(path, yaml.safe_dump(document, sort_keys=False).encode())
