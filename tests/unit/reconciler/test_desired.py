"""Placement and stamping of the desired set."""

from __future__ import annotations

from typing import Any

from support.reconciler_builders import APP, REV1, SCOPES, cm

from driftguard.core.contract import ANN_REPO, read_stamp
from driftguard.core.inventory import Entry
from driftguard.core.manifests import Manifest
from driftguard.core.objects import ObjectRef
from reconciler.application import parse_application
from reconciler.desired import build, crd_scopes, inventory_of


def manifests(*objs: dict[str, Any]) -> list[Manifest]:
    return [Manifest(o, f"app/{i}.yaml", 1) for i, o in enumerate(objs)]


def scope(_: str, kind: str) -> bool | None:
    return SCOPES.get(kind)


CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "ws.x.io"},
       "spec": {"group": "x.io", "scope": "Cluster", "names": {"kind": "Widget", "plural": "ws"}}}


def test_namespaced_objects_go_to_the_destination_unless_they_name_one() -> None:
    placed = build(manifests(cm("a"), cm("b", namespace="other")), app=APP, revision=REV1, scope=scope)
    assert [d.ref for d in placed] == [ObjectRef("", "ConfigMap", "prod", "a"),
                                       ObjectRef("", "ConfigMap", "other", "b")]


def test_cluster_scoped_objects_lose_a_namespace() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "namespace": "oops"}}
    (placed,) = build(manifests(ns), app=APP, revision=REV1, scope=scope)
    assert "namespace" not in placed.obj["metadata"] and placed.ref.namespace == ""


def test_kinds_defined_in_the_same_render_take_the_crds_scope() -> None:
    widget = {"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert crd_scopes(manifests(CRD)) == {("x.io", "Widget"): False}
    placed = build(manifests(widget, CRD), app=APP, revision=REV1, scope=scope)
    assert placed[0].scope_known and placed[0].ref.namespace == ""


def test_unknown_kinds_are_placed_as_namespaced_and_marked() -> None:
    (placed,) = build(manifests({"apiVersion": "y.io/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
                      app=APP, revision=REV1, scope=scope)
    assert not placed.scope_known and placed.ref.namespace == "prod"


def test_no_namespace_anywhere_is_an_error_for_that_object() -> None:
    app = parse_application({"metadata": {"name": "a", "namespace": "n"}, "spec": {"source": {"repoURL": "r"}}})
    (placed,) = build(manifests(cm("a")), app=app, revision=REV1, scope=scope)
    assert placed.error == ("app/0.yaml:1: ConfigMap a has no namespace and the Application sets no "
                            "destination.namespace")


def test_stamp_carries_the_contract_with_a_credential_free_repo() -> None:
    app = parse_application({"metadata": {"name": "svc", "namespace": "ds"}, "spec": {
        "source": {"repoURL": "https://user:tok3n@git.example/org/repo"}, "destination": {"namespace": "prod"},
        "enforcement": "warn"}})
    (placed,) = build(manifests(cm("a", data={"k": "v"})), app=app, revision=REV1, scope=scope)
    stamp = read_stamp(placed.obj)
    assert stamp is not None
    assert (stamp.application, stamp.enforcement, stamp.source.commit, stamp.source.path) == (
        "ds/svc", "warn", REV1.sha, "app/0.yaml")
    assert placed.obj["metadata"]["annotations"][ANN_REPO] == "https://git.example/org/repo"
    assert placed.declared == {"data": {"k": "v"}}
    assert inventory_of([placed]).entries == frozenset({Entry(placed.ref, "v1")})
