"""A real driftguard webhook guarding one namespace of the shared control plane (module-scoped fixture).

``guarded`` starts ``driftguard webhook`` over TLS as its own ServiceAccount (with the RBAC that
``registration.rbac`` renders), registers ``registration.configurations`` by URL + caBundle confined by
``namespaceSelector`` to a fresh namespace, waits until the API server calls both webhooks, and removes
everything afterwards, so other tests on the shared control plane never reach it. The reconciler is
ServiceAccount ``driftguard-reconciler`` of that namespace with a token bound to a Pod made for it.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from driftguard.core import contract
from driftguard.core.contract import Enforcement, Source
from driftguard.core.ignore import NOTHING, Ignore
from driftguard.kube import Kube, KubeError
from support.webhook_harness import WebhookProcess, eventually, start_webhook
from webhook import registration
from webhook.records import AuditRecord

SOURCE = Source(repo="https://github.com/org/k8s-manifests", commit="1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
                author="alice@org", committed_at="2024-05-01T10:00:00Z",
                path="services/my-service/production/deployment.yaml")
RBAC = "/apis/rbac.authorization.k8s.io/v1"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
ONCALL = ("oncall", ["sre"])


@dataclass
class Guarded:
    namespace: str
    name: str  # of the webhook configurations
    webhook: WebhookProcess
    admin: Kube
    laptop: Kube
    reconciler: Kube
    oncall: Kube
    kubectl: Path | None
    laptop_kubeconfig: Path | None
    cluster: Any = None  # tests/integration/conftest.Cluster

    def edit_user(self, name: str) -> tuple[Kube, Path]:
        """A client (and its kubeconfig) for user ``name`` holding only the built-in ``edit`` role here."""
        aggregate_cluster_role(self.admin, "edit")
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"{name}-edit", "namespace": self.namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}
        create_or_keep(self.admin, f"{RBAC}/namespaces/{self.namespace}/rolebindings", binding)
        kubeconfig = self.cluster.control_plane.kubeconfig_for_user(name, ["developers"])
        return Kube(kubeconfig), kubeconfig

    def kubectl_as(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The version-matched kubectl with ``kubeconfig`` in this namespace (never raises on failure)."""
        assert self.kubectl is not None
        return subprocess.run([str(self.kubectl), "--kubeconfig", str(kubeconfig), "-n", self.namespace, *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def path(self, name: str, subresource: str = "") -> str:
        base = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}"
        return f"{base}/{subresource}" if subresource else base

    def from_git(self, name: str, enforcement: Enforcement = "deny", ignore: Ignore = NOTHING,
                 **spec: Any) -> dict[str, Any]:
        """What the reconciler does: server-side apply of the stamped manifest (with the ignoreDifferences rules
        its Application has for it), as its ServiceAccount."""
        stamped = contract.stamp(deployment(name, self.namespace, **spec), application="driftguard-system/app",
                                 source=SOURCE, enforcement=enforcement, ignore=ignore)
        return self.reconciler.request("PATCH", self.path(name), body=stamped, content_type=APPLY,
                                       query={"fieldManager": contract.FIELD_MANAGER, "force": "true"})

    def denied_by_us(self, error: KubeError, webhook: str = "") -> str:
        """The text after kubectl's prefix, asserting the denial came from this module's ``webhook`` entry
        (default: ``validate``, or ``scale`` for scale requests)."""
        assert error.status == 403, error
        webhook = webhook or ("validate" if "scale" not in error.message.split("\n")[0] else "scale")
        prefix = f'admission webhook "{webhook}.{self.name}.io"'
        assert error.message.startswith(prefix + " denied the request: "), error.message
        return error.message.split(" denied the request: ", 1)[1]

    def records(self, name: str, **where: Any) -> list[AuditRecord]:
        return [r for r in self.webhook.audit_records()
                if r.name == name and all(getattr(r, k) == v for k, v in where.items())]

    def wait_record(self, name: str, **where: Any) -> AuditRecord:
        eventually(lambda: bool(self.records(name, **where)), what=f"an audit record for {name} {where}")
        return self.records(name, **where)[-1]


def deployment(name: str, namespace: str, replicas: int = 3, image: str = "registry.example/my-service:1.4.2",
               ) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web", "image": image,
                    "env": [{"name": "MODE", "value": "production"}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
                }]},
            },
        },
    }


def story(guarded: Guarded, name: str, field: str = "spec.replicas", declared: str = "3", sets: str = "9", *,
          hint: bool = True) -> str:
    """The denial of one field's change; it ends with the ``driftguard suggest`` line (``suggest_line``)."""
    text = (f"{field} of Deployment {guarded.namespace}/{name} is declared in git ({declared}) at "
            f"services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org; this request sets {sets}. "
            "Change it in git: https://github.com/org/k8s-manifests")
    return f"{text}\n{suggest_line(guarded, name, field, sets)}" if hint else text


def suggest_line(guarded: Guarded, name: str, field: str = "spec.replicas", sets: str = "9") -> str:
    if field == "spec.replicas":
        command = f"driftguard suggest -- scale deployment/{name} -n {guarded.namespace} --replicas={sets}"
    else:
        command = f"driftguard suggest --set '{field}={sets}' deployment/{name} -n {guarded.namespace}"
    return f"{command}  # the git change instead: edits a clone, prints the diff"


def aggregate_cluster_role(admin: Kube, name: str) -> list[Any]:
    """What kube-controller-manager's aggregation controller does for ClusterRole ``name`` and, first, for the
    aggregated roles it selects (``edit`` selects ``view``): a bare control plane has none, so the built-in
    ``view``/``edit``/``admin`` roles are empty there. Returns the role's rules."""
    role = admin.request("GET", f"{RBAC}/clusterroles/{name}")
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    if role.get("rules") or not selectors:
        return list(role.get("rules") or [])
    rules: list[Any] = []
    for selector in selectors:
        labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
        for part in admin.request("GET", f"{RBAC}/clusterroles", query={"labelSelector": labels})["items"]:
            found = aggregate_cluster_role(admin, part["metadata"]["name"]) if part.get("aggregationRule") else (
                part.get("rules") or [])
            rules.extend(r for r in found if r not in rules)
    if rules:
        admin.request("PATCH", f"{RBAC}/clusterroles/{name}", body={"rules": rules},
                      content_type="application/merge-patch+json")
    return rules


def create_or_keep(kube: Kube, path: str, body: dict[str, Any]) -> None:
    try:
        kube.request("POST", path, body=body)
    except KubeError as error:
        if error.status != 409:
            raise


def delete_if_present(kube: Kube, path: str) -> None:
    try:
        kube.request("DELETE", path)
    except KubeError as error:
        if error.status != 404:
            raise


def _binding(namespace: str, name: str, subject: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [subject]}


def _probe(guarded: Guarded) -> None:
    """Wait until the API server calls both webhooks (it learns configurations through an informer)."""
    forged = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "probe", "labels": {contract.LABEL_MANAGED: "true"}}}

    def validating() -> bool:
        try:
            guarded.laptop.request("POST", f"/api/v1/namespaces/{guarded.namespace}/configmaps", body=forged,
                                   query={"dryRun": "All"})
        except KubeError as error:
            return error.status == 403 and "forged ownership" in error.message
        return False

    guarded.from_git("probe-warn", enforcement="warn")

    def mutating() -> bool:
        patched = guarded.laptop.request("PATCH", guarded.path("probe-warn"), body={"spec": {"replicas": 7}},
                                         content_type=MERGE, query={"dryRun": "All"})
        return contract.ANN_DRIFT in contract.annotations_of(patched)

    eventually(validating, timeout=30, what="the validating webhook being called")
    eventually(mutating, timeout=30, what="the mutating webhook being called")


@pytest.fixture(scope="module")
def guarded(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    if cluster.control_plane is None:
        pytest.skip("the webhook listens on this host's loopback, which an external cluster's API server cannot call")
    suffix = secrets.token_hex(3)
    namespace, name = f"webhook-admission-{suffix}", f"dg-test-{suffix}"
    role, binding = registration.rbac("driftguard-webhook", namespace, name=f"{name}-webhook")
    admin = cluster.admin()
    admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    started: list[WebhookProcess] = []
    clients: list[Kube] = [admin]
    validating: dict[str, Any] = {}
    try:
        create_or_keep(admin, f"{RBAC}/clusterroles", role)
        create_or_keep(admin, f"{RBAC}/clusterrolebindings", binding)
        rolebindings = f"{RBAC}/namespaces/{namespace}/rolebindings"
        create_or_keep(admin, rolebindings, _binding(namespace, "reconciler-admin", {
            "kind": "ServiceAccount", "name": "driftguard-reconciler", "namespace": namespace}))
        create_or_keep(admin, rolebindings, _binding(namespace, "sre-admin", {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "sre"}))
        plane = cluster.control_plane
        webhook_kubeconfig = plane.kubeconfig_for_serviceaccount(namespace, "driftguard-webhook")
        webhook = start_webhook(
            tmp_path_factory.mktemp("webhook"), kubeconfig=webhook_kubeconfig, event_flush_seconds=0.5,
            reconciler_users=(f"system:serviceaccount:{namespace}:driftguard-reconciler",),
            break_glass_groups=("sre",), client_ca_file=plane.webhook_client_ca_file,  # as local mode runs it
            project_namespace=namespace,  # its Applications live here, as in driftguard-system in an install
        )
        started.append(webhook)
        client = registration.url_client(webhook.url, webhook.ca.cert_pem)
        validating, mutating = registration.configurations(
            client, name=name, namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            reconciler_users=webhook.settings.reconciler_users)
        admin.request("POST", f"{ADMISSION}/mutatingwebhookconfigurations", body=mutating)
        admin.request("POST", f"{ADMISSION}/validatingwebhookconfigurations", body=validating)
        clients += [cluster.laptop(), cluster.serviceaccount(namespace, "driftguard-reconciler"),
                    cluster.user(*ONCALL)]
        guarded = Guarded(namespace, name, webhook, admin, clients[1], clients[2], clients[3],
                          plane.kubectl, plane.laptop_kubeconfig, cluster)
        _probe(guarded)
        yield guarded
    finally:
        for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            delete_if_present(admin, f"{ADMISSION}/{kind}/{name}")
        delete_if_present(admin, f"{RBAC}/clusterrolebindings/{binding['metadata']['name']}")
        delete_if_present(admin, f"{RBAC}/clusterroles/{role['metadata']['name']}")
        for process in started:
            process.stop()
        delete_if_present(admin, f"/api/v1/namespaces/{namespace}")
        for kube in clients:
            kube.close()


