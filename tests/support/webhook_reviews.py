"""Sending AdmissionReviews straight to a running ``driftguard webhook``, as the API server does, about
real stamped objects: the webhook's ServiceAccount (``webhook_kubeconfig``, with the RBAC
``registration.rbac`` renders), stamped Deployments created as admin (``deployment_in``), and ``Sender``
(one kept-alive TLS connection)."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftguard.core import contract
from driftguard.kube import Kube
from support.admission import SOURCE, apply_patch, edited, review
from support.webhook_harness import WebhookProcess
from webhook import registration

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def webhook_kubeconfig(cluster: Any, admin: Kube, namespace: str) -> Iterator[Path]:
    """The webhook's ServiceAccount (in the test's namespace) with the RBAC ``registration.rbac`` renders."""
    if cluster.control_plane is None:
        pytest.skip("the webhooks' kubeconfig is minted by the local control plane")
    role, binding = registration.rbac("driftguard-webhook", namespace, name=f"{namespace}-webhook")
    admin.request("POST", f"{RBAC}/clusterroles", body=role)
    admin.request("POST", f"{RBAC}/clusterrolebindings", body=binding)
    yield Path(cluster.control_plane.kubeconfig_for_serviceaccount(namespace, "driftguard-webhook"))
    for kind, name in (("clusterrolebindings", binding), ("clusterroles", role)):
        admin.request("DELETE", f"{RBAC}/{kind}/{name['metadata']['name']}")


def deployment_in(admin: Kube, namespace: str, name: str, application: str, enforcement: str = "deny",
                ) -> dict[str, Any]:
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}}}}
    stamped = contract.stamp(manifest, application=application, source=SOURCE, enforcement=enforcement)  # type: ignore[arg-type]
    created: dict[str, Any] = admin.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments",
                                            body=stamped)
    return created


class Sender:
    """AdmissionReviews to one webhook over one kept-alive TLS connection, as the API server sends them."""

    def __init__(self, webhook: WebhookProcess) -> None:
        self.webhook = webhook
        self.connection = webhook.connect()

    def update(self, live: dict[str, Any], user: str, replicas: int = 9) -> dict[str, Any]:
        body = review("UPDATE", old=live, new=edited(live, "spec", "replicas", replicas), user=user,
                      uid=secrets.token_hex(8))
        return self._post(body)

    def edit(self, live: dict[str, Any], new: dict[str, Any], user: str) -> dict[str, Any]:
        return self._post(review("UPDATE", old=live, new=new, user=user, uid=secrets.token_hex(8)))

    def scale(self, live: dict[str, Any], user: str, replicas: int) -> dict[str, Any]:
        """``kubectl scale``'s request: the Scale subresource of ``live`` (the webhook reads ``live`` itself)."""
        metadata = {"name": live["metadata"]["name"], "namespace": live["metadata"]["namespace"]}
        scales = [{"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": metadata, "spec": {"replicas": n}}
                  for n in (live["spec"]["replicas"], replicas)]
        body = review("UPDATE", old=scales[0], new=scales[1], user=user, uid=secrets.token_hex(8), subresource="scale")
        group, _, version = str(live["apiVersion"]).rpartition("/")
        body["request"]["kind"] = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        body["request"]["resource"] = {"group": group, "version": version, "resource": live["kind"].lower() + "s"}
        return self._post(body)

    def break_glass(self, live: dict[str, Any], user: str, groups: list[str], reason: str,
                    replicas: int = 9) -> dict[str, Any]:
        """What the API server does with a break-glass edit: ``/mutate`` (the grant sealed on), then ``/validate``."""
        new = edited(edited(live, "spec", "replicas", replicas), "metadata", "annotations",
                     {**live["metadata"].get("annotations", {}), contract.ANN_BREAK_GLASS: reason})
        groups = [*groups, "system:authenticated"]
        patch = self._post(review("UPDATE", old=live, new=new, user=user, groups=tuple(groups),
                                  uid=secrets.token_hex(8)), "/mutate").get("patch")
        if patch:
            new = apply_patch(new, json.loads(base64.b64decode(patch)))
        return self._post(review("UPDATE", old=live, new=new, user=user, groups=tuple(groups),
                                 uid=secrets.token_hex(8)))

    def create(self, obj: dict[str, Any], user: str) -> dict[str, Any]:
        return self._post(review("CREATE", new=obj, user=user, uid=secrets.token_hex(8)))

    def _post(self, body: Any, path: str = "/validate") -> dict[str, Any]:
        for attempt in (0, 1):
            try:
                self.connection.request("POST", path, body=json.dumps(body).encode(),
                                        headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                answer: dict[str, Any] = json.loads(response.read())["response"]
                return answer
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                self.connection.close()
                self.connection = self.webhook.connect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()
