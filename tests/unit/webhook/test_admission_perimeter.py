"""Deletes that never reach the object's DELETE, and subresources that change a managed Pod."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.admission import NOW, RECONCILER, SETTINGS, live, review

from driftguard.core import contract
from webhook import policy

APPS = "driftguard-system/shop"


def namespace(*, marked: bool = True, deleting: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": "shop"}
    annotations = {}
    if marked:
        labels[contract.LABEL_HOLDS_MANAGED] = "true"
        annotations[contract.ANN_HOLDS_MANAGED] = APPS
    metadata: dict[str, Any] = {"name": "shop", "uid": "ns-uid", "labels": labels, "annotations": annotations}
    if deleting:
        metadata["deletionTimestamp"] = "2024-06-01T11:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def crd(*, marked: bool = True) -> dict[str, Any]:
    obj = namespace(marked=marked)
    obj.update(apiVersion="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    obj["metadata"]["name"] = "widgets.example.com"
    return obj


def _unmark(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["labels"].pop(contract.LABEL_HOLDS_MANAGED)
    return out


HOLDER_DENIAL = ("Namespace shop holds objects driftguard manages (Application driftguard-system/shop); deleting it "
                 "would delete them without their own DELETE ever being judged, so it is denied. Remove those objects "
                 "from git first: the reconciler then lifts the driftguard.io/holds-managed mark")


@pytest.mark.parametrize(("operation", "old", "new", "user", "outcome"), [
    pytest.param("DELETE", namespace(), None, "laptop", "deny", id="delete a marked namespace"),
    pytest.param("DELETE", crd(), None, "laptop", "deny", id="delete a marked CRD"),
    pytest.param("DELETE", namespace(), None, RECONCILER, "allow", id="the reconciler deletes it"),
    pytest.param("DELETE", namespace(marked=False), None, "laptop", "allow", id="an unmarked namespace"),
    pytest.param("DELETE", namespace(deleting=True), None, "laptop", "allow", id="deletion already began"),
    pytest.param("UPDATE", namespace(), _unmark(namespace()), "laptop", "deny", id="removing the mark"),
    pytest.param("UPDATE", namespace(marked=False), namespace(), "laptop", "deny", id="adding the mark"),
    pytest.param("CREATE", None, namespace(), "laptop", "deny", id="creating a marked namespace"),
    pytest.param("UPDATE", namespace(), _unmark(namespace()), RECONCILER, "allow", id="the reconciler lifts it"),
    pytest.param("UPDATE", namespace(), {**namespace(), "spec": {"x": 1}}, "laptop", "allow", id="other changes"),
])
def test_marked_holders(operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None, user: str,
                        outcome: str) -> None:
    built = review(operation, old=old, new=new, user=user)["request"]
    built["kind"] = {"group": "apiextensions.k8s.io" if (old or new or {})["kind"] != "Namespace" else "",
                     "version": "v1", "kind": (old or new or {})["kind"]}
    verdict = policy.validate(built, SETTINGS, NOW)
    assert verdict.outcome == outcome
    if outcome == "deny" and operation == "DELETE" and (old or {})["kind"] == "Namespace":
        assert verdict.message == HOLDER_DENIAL
        assert verdict.record is not None and verdict.record.decision == "deny"


def _eviction(user: str = "laptop") -> dict[str, Any]:
    request = review("CREATE", new={"apiVersion": "policy/v1", "kind": "Eviction",
                                    "metadata": {"name": "my-service", "namespace": "production"}},
                     user=user, subresource="eviction")["request"]
    request["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    request["name"], request["namespace"] = "my-service", "production"
    return request


def _pod(enforcement: Any = "deny") -> dict[str, Any]:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-service", "namespace": "production"},
                "spec": {"containers": [{"name": "web", "image": "registry.example/my-service:1.4.2",
                                         "resources": {"requests": {"cpu": "100m"}}}]}}
    return live(manifest, enforcement=enforcement)


@pytest.mark.parametrize(("parent", "outcome", "says"), [
    (policy.Parent(_pod()), "deny", "; evicting it (pods/eviction deletes it) is denied. Remove it from git"),
    (policy.Parent(_pod("warn")), "warn", ""),
    (policy.Parent(_pod("off")), "allow", ""),
    (policy.Parent({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-service"}}), "allow", ""),
    (policy.Parent(None), "allow", ""),
    (policy.Parent(None, error="GET /api/v1/namespaces/production/pods/my-service: 403"), "deny",
     "the eviction request is refused (fail closed)"),
])
def test_an_eviction_is_the_pods_delete(parent: policy.Parent, outcome: str, says: str) -> None:
    request = _eviction()
    assert policy.needs_parent(request, SETTINGS)
    verdict = policy.validate(request, SETTINGS, NOW, parent)
    assert verdict.outcome == outcome
    assert says in verdict.message


def test_the_reconciler_evicts_without_a_read() -> None:
    assert not policy.needs_parent(_eviction(RECONCILER), SETTINGS)


@pytest.mark.parametrize(("subresource", "change", "field"), [
    ("ephemeralcontainers", lambda p: p["spec"].update(ephemeralContainers=[{"name": "dbg", "image": "busybox"}]),
     "spec.ephemeralContainers[name=dbg]"),
    ("resize", lambda p: p["spec"]["containers"][0]["resources"]["requests"].update(cpu="2"),
     "spec.containers[name=web].resources.requests.cpu"),
])
def test_pod_subresources_are_updates_of_the_pod(subresource: str, change: Any, field: str) -> None:
    old = _pod()
    new = copy.deepcopy(old)
    change(new)
    verdict = policy.validate(review("UPDATE", old=old, new=new, subresource=subresource)["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.record is not None and [f["field"] for f in verdict.record.fields] == [field]
