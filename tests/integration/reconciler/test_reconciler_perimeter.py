"""The admission-proof class (issue 10): writes no webhook can stop are detected and put back.

Deleting or altering driftguard's webhook configurations is done here as a ``system:masters`` admin (the
one writer manifests/' ValidatingAdmissionPolicy still admits, and writes to webhook configurations never
reach a webhook); overwriting the reconciler's Lease as the ``laptop`` user (cluster-admin by RBAC).
The reconciler runs as its ServiceAccount with the RBAC in
``manifests/rbac-reconciler.yaml``, so these tests also prove those rules suffice (list/watch by
``resourceNames`` through a ``metadata.name`` field selector).

The registration is written by the installer's own ``register_webhook`` (the ConfigMap first, then
the configurations); its webhooks point at a closed port and select only namespaces labelled
``driftguard-tests/perimeter=never`` (none is), so other tests are never affected.
"""

from __future__ import annotations

import datetime as dt
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import perimeter
from support.guarded import delete_if_present
from support.perimeter import CONFIGMAP, MUTATING, VALIDATING
from support.reconciler_harness import Harness, wait_for

from driftguard.core.clock import format_micro
from driftguard.kube import Kube, KubeError
from reconciler.perimeter import REGISTRATION_CONFIGMAP
from reconciler.service import Options, start
from reconciler.settings import Settings


def _get(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return kube.request("GET", path)
    except KubeError as e:
        if e.status == 404:
            return None
        raise


@pytest.fixture
def registered(harness: Harness, admin: Kube) -> Iterator[dict[str, dict[str, Any]]]:
    yield from perimeter.registered(harness, admin)


def _events(admin: Kube, namespace: str, reason: str, name: str) -> list[dict[str, Any]]:
    items = admin.request("GET", f"/api/v1/namespaces/{namespace}/events",
                          query={"fieldSelector": f"reason={reason},involvedObject.name={name}"})["items"]
    return list(items)


def _metric(url: str, line_start: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_deleted_webhook_configuration_is_re_created_with_an_event_and_a_metric(
        harness: Harness, registered: dict[str, dict[str, Any]], laptop: Kube, admin: Kube) -> None:
    service = harness.start()
    before = registered[VALIDATING]
    admin.request("DELETE", VALIDATING)

    def back() -> dict[str, Any] | None:
        live = _get(admin, VALIDATING)
        return live if live and live["metadata"]["uid"] != before["metadata"]["uid"] else None

    restored = wait_for(back, 30, what="the ValidatingWebhookConfiguration re-created")
    assert restored["webhooks"] == before["webhooks"]
    events = wait_for(lambda: _events(admin, "default", "WebhookConfigurationRestored", "driftguard"), 10,
                      what="a WebhookConfigurationRestored Event")
    assert "was deleted" in events[0]["message"] and REGISTRATION_CONFIGMAP in events[0]["message"]
    assert events[0]["type"] == "Warning"
    metric = ('driftguard_perimeter_restored_total{cause="missing",kind="ValidatingWebhookConfiguration"}')
    assert wait_for(lambda: _metric(service.url, metric), 10, what=metric) >= 1


@pytest.mark.parametrize(("path", "patch", "says"), [
    (MUTATING, [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}], "failurePolicy"),
    (VALIDATING, [{"op": "remove", "path": "/webhooks/1"}], "webhook scale.driftguard.io removed"),
    (VALIDATING, [{"op": "replace", "path": "/webhooks/0/namespaceSelector",
                   "value": {"matchLabels": {"nothing": "matches"}}}], "namespaceSelector"),
], ids=["failure-policy-ignore", "webhook-removed", "selector-narrowed"])
def test_an_altered_webhook_configuration_is_put_back(
        harness: Harness, registered: dict[str, dict[str, Any]], laptop: Kube, admin: Kube,
        path: str, patch: list[dict[str, Any]], says: str) -> None:
    harness.start()
    before = registered[path]
    altered = admin.request("PATCH", path, body=patch, content_type="application/json-patch+json")
    assert altered["webhooks"] != before["webhooks"]  # the API server admitted it: nothing but us restores

    def back() -> dict[str, Any] | None:
        live = _get(admin, path)
        return live if live and live["webhooks"] == before["webhooks"] else None

    wait_for(back, 30, what=f"{path} restored")
    events = wait_for(lambda: [e for e in _events(admin, "default", "WebhookConfigurationRestored", "driftguard")
                               if says in e["message"]], 10, what=f"an Event saying {says!r}")
    assert "was altered" in events[0]["message"]


def test_without_a_registration_nothing_is_written(harness: Harness, registered: dict[str, dict[str, Any]],
                                                   laptop: Kube, admin: Kube) -> None:
    """No ConfigMap, nothing to restore from: the reconciler leaves the configurations alone (and says so
    in its log) rather than guess their clientConfig."""
    admin.request("DELETE", CONFIGMAP)
    service = harness.start()
    admin.request("DELETE", MUTATING)
    checked = service.controller.perimeter
    assert checked is not None
    wait_for(lambda: "ConfigMap" in checked.problem, 30, what="the missing registration noted")
    assert _get(admin, MUTATING) is None


def test_a_foreign_lease_holder_is_taken_back_at_once(harness: Harness, laptop: Kube, admin: Kube,
                                                      reconciler_kubeconfig: Any) -> None:
    """A Lease written by hand (holder ``intruder``, 24 h) would stop every sync for a day; the reconciler,
    itself a Pod of its ServiceAccount (a Pending one: no kubelet here), sees that the holder is none and
    takes it back."""
    name = f"perimeter-{uuid.uuid4().hex[:8]}"
    leases = "/apis/coordination.k8s.io/v1/namespaces/driftguard-system/leases"
    pods = "/api/v1/namespaces/driftguard-system/pods"
    admin.request("POST", pods, body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"replica-{name}"},
        "spec": {"serviceAccountName": "driftguard-reconciler", "automountServiceAccountToken": False,
                 "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "reconciler", "image": "driftguard:test", "securityContext": {
                     "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]},
    })
    now = format_micro(dt.datetime.now(dt.UTC))
    laptop.request("POST", leases, body={
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 86400, "renewTime": now, "acquireTime": now},
    })
    service = start(Options(
        kubeconfig=str(reconciler_kubeconfig), namespace=harness.namespace, listen="127.0.0.1:0",
        cache_dir=harness.cache_dir, leader_elect=True, lease_namespace="driftguard-system", lease_name=name,
        lease_duration=15.0, identity=f"replica-{name}",
        settings=Settings(namespace=harness.namespace, cache_dir=harness.cache_dir, watch_timeout=5.0,
                          webhook_configuration=""),
    ))
    harness.services.append(service)
    try:
        def ours() -> dict[str, Any] | None:
            lease = admin.request("GET", f"{leases}/{name}")
            return lease if lease["spec"]["holderIdentity"] == f"replica-{name}" else None

        lease = wait_for(ours, 60, what="the Lease taken back")
        assert lease["spec"]["leaseDurationSeconds"] == 15
        events = wait_for(lambda: _events(admin, "driftguard-system", "LeaseReclaimed", name), 30,
                          what="a LeaseReclaimed Event")
        assert "'intruder'" in events[0]["message"]
        assert service.controller.leading
        metric = 'driftguard_perimeter_restored_total{cause="foreign-holder",kind="Lease"}'
        assert wait_for(lambda: _metric(service.url, metric), 30, what=metric) >= 1
    finally:
        harness.services.remove(service)
        service.stop()
        delete_if_present(admin, f"{leases}/{name}")
        delete_if_present(admin, f"{pods}/replica-{name}")


def test_objects_where_the_webhook_does_not_look_are_refused(
        harness: Harness, registered: dict[str, dict[str, Any]], repo: Any) -> None:
    """The registration here covers no namespace (its selector matches none), so the test's own namespace
    is as uncovered as kube-system is in a real install: the reconciler refuses, and says how to fix it."""
    repo.write("app/cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "alpha"},
                               "data": {"v": "1"}})
    repo.commit("one object")
    harness.make_app("svc", repo, "app")
    harness.start()
    refused = harness.wait_condition("svc", "Applied", "False", "NamespaceNotCovered", timeout=30)
    assert f"namespace {harness.namespace} is not covered by driftguard's webhook" in refused["message"]
    assert "Move the objects" in refused["message"] and f"ConfigMap {harness.namespace}/alpha" in refused["message"]
    assert harness.cm("alpha") is None, "nothing applied"
