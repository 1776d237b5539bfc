"""The "holds managed objects" marks: which Namespaces and CRDs hold an inventory, and the patch for one."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.contract import ANN_HOLDS_MANAGED, LABEL_HOLDS_MANAGED
from driftguard.core.inventory import Entry
from driftguard.core.objects import ObjectRef
from reconciler.holders import held, patch_for


def entry(kind: str, namespace: str, name: str, api_version: str = "v1") -> Entry:
    group = api_version.rpartition("/")[0]
    return Entry(ObjectRef(group, kind, namespace, name), api_version)


def test_held_is_each_objects_namespace_and_each_custom_resources_crd() -> None:
    entries = [entry("ConfigMap", "team", "a"), entry("ConfigMap", "team", "b"), entry("Namespace", "", "other"),
               entry("Widget", "other", "w", "example.com/v1"), entry("ClusterThing", "", "t", "example.com/v1"),
               entry("Deployment", "team", "web", "apps/v1")]
    crds = {"Widget": "widgets.example.com", "ClusterThing": "clusterthings.example.com"}
    assert held(entries, lambda e: crds.get(e.ref.kind)) == {
        ("Namespace", "team"), ("Namespace", "other"),
        ("CustomResourceDefinition", "widgets.example.com"), ("CustomResourceDefinition", "clusterthings.example.com"),
    }


def obj(names: str | None = None, label: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "team", "resourceVersion": "7", "labels": {}, "annotations": {}}
    if label:
        metadata["labels"][LABEL_HOLDS_MANAGED] = "true"
    if names is not None:
        metadata["annotations"][ANN_HOLDS_MANAGED] = names
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def mark(names: str | None) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": "7", "labels": {LABEL_HOLDS_MANAGED: "true" if names else None},
                         "annotations": {ANN_HOLDS_MANAGED: names}}}


@pytest.mark.parametrize(("current", "holds", "patch"), [
    (obj(), True, mark("ns/a")),  # first holder
    (obj("ns/b", label=True), True, mark("ns/a,ns/b")),  # joins another Application, names sorted
    (obj("ns/a", label=True), True, None),  # already on
    (obj("ns/a"), True, mark("ns/a")),  # named but unlabelled (someone took the label off): put back
    (obj("ns/a,ns/b", label=True), False, mark("ns/b")),  # leaves; the other stays
    (obj("ns/a", label=True), False, mark(None)),  # the last one: the mark goes
    (obj(), False, None),  # never on it
    (obj("ns/b", label=True), False, None),  # another's: not ours to touch
])
def test_patch_for(current: dict[str, Any], holds: bool, patch: dict[str, Any] | None) -> None:
    assert patch_for(current, "ns/a", holds) == patch
