"""Deleting an Application, as tables: when to cascade, when to let go, when to drop the finalizer, and
the guarded patch that drops it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from driftguard.core.contract import ARGO_RESOURCES_FINALIZER, PRUNE_ON_DELETE, Source, stamp
from reconciler.deletion import (
    NAMESPACE_OPT_IN,
    Step,
    being_deleted,
    namespace_opt_in,
    ours,
    refusal,
    release_patch,
    step,
)

DELETED_AT = "2026-03-01T12:00:00Z"
OTHER = "example.com/someone-else"


def app(finalizers: list[str] | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "svc", "namespace": "driftguard-system"}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    if deleting:
        metadata["deletionTimestamp"] = DELETED_AT
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application", "metadata": metadata}


@pytest.mark.parametrize(("finalizers", "deleting", "inventory", "expected"), [
    # not being deleted: whatever the finalizers and inventory, sync as usual
    (None, False, 3, Step.MANAGE),
    ([PRUNE_ON_DELETE], False, 3, Step.MANAGE),
    ([ARGO_RESOURCES_FINALIZER], False, 0, Step.MANAGE),
    # being deleted without one of ours: let go, delete nothing (even with objects in the inventory)
    (None, True, 3, Step.FORGET),
    ([], True, 3, Step.FORGET),
    ([OTHER], True, 3, Step.FORGET),
    ([OTHER], True, 0, Step.FORGET),
    (["driftguard.io/prune-on-delete-not-quite"], True, 3, Step.FORGET),
    # being deleted with one of ours: delete the inventory while it is not empty, then drop the finalizer
    ([PRUNE_ON_DELETE], True, 3, Step.PRUNE),
    ([ARGO_RESOURCES_FINALIZER], True, 1, Step.PRUNE),
    ([OTHER, PRUNE_ON_DELETE], True, 2, Step.PRUNE),
    ([PRUNE_ON_DELETE], True, 0, Step.RELEASE),
    ([ARGO_RESOURCES_FINALIZER], True, 0, Step.RELEASE),
    ([PRUNE_ON_DELETE, ARGO_RESOURCES_FINALIZER, OTHER], True, 0, Step.RELEASE),
    # Argo CD's propagation variants cascade as well
    ([f"{ARGO_RESOURCES_FINALIZER}/background"], True, 2, Step.PRUNE),
    ([f"{ARGO_RESOURCES_FINALIZER}/foreground"], True, 0, Step.RELEASE),
    ([f"{ARGO_RESOURCES_FINALIZER}/sideways"], True, 2, Step.FORGET),
])
def test_step(finalizers: list[str] | None, deleting: bool, inventory: int, expected: Step) -> None:
    assert step(app(finalizers, deleting), inventory) is expected


@pytest.mark.parametrize(("finalizers", "operations"), [
    (None, []),
    ([OTHER], []),
    ([PRUNE_ON_DELETE], [
        {"op": "test", "path": "/metadata/finalizers", "value": [PRUNE_ON_DELETE]},
        {"op": "replace", "path": "/metadata/finalizers", "value": []}]),
    ([OTHER, ARGO_RESOURCES_FINALIZER], [
        {"op": "test", "path": "/metadata/finalizers", "value": [OTHER, ARGO_RESOURCES_FINALIZER]},
        {"op": "replace", "path": "/metadata/finalizers", "value": [OTHER]}]),
    ([ARGO_RESOURCES_FINALIZER, OTHER, PRUNE_ON_DELETE], [
        {"op": "test", "path": "/metadata/finalizers", "value": [ARGO_RESOURCES_FINALIZER, OTHER, PRUNE_ON_DELETE]},
        {"op": "replace", "path": "/metadata/finalizers", "value": [OTHER]}]),
])
def test_release_patch_removes_only_ours_and_tests_the_list_it_read(
    finalizers: list[str] | None, operations: list[dict[str, Any]]
) -> None:
    assert release_patch(app(finalizers, deleting=True)) == operations


def test_ours_and_being_deleted() -> None:
    assert ours(app([OTHER, ARGO_RESOURCES_FINALIZER, PRUNE_ON_DELETE])) == (ARGO_RESOURCES_FINALIZER, PRUNE_ON_DELETE)
    assert ours(app()) == ()
    assert being_deleted(app(deleting=True)) and not being_deleted(app([PRUNE_ON_DELETE]))


def applied(finalizers: list[str], *, managed: bool = True, by: str = "driftguard",
            owned: list[str] | None = None, operation: str = "Apply") -> dict[str, Any]:
    """An Application being deleted; ``owned``: the finalizers ``by``'s managedFields entry holds."""
    obj = app(finalizers, deleting=True)
    if managed:
        obj["metadata"]["labels"] = {"driftguard.io/managed": "true"}
    fields = {"f:metadata": {"f:finalizers": {f"v:{json.dumps(f)}": {} for f in (owned or [])}}}
    obj["metadata"]["managedFields"] = [{"manager": by, "operation": operation, "fieldsType": "FieldsV1",
                                         "fieldsV1": fields}]
    return obj


@pytest.mark.parametrize(("obj", "refused"), [
    # created by hand: the webhook's Applications rule decides who may add a finalizer
    (applied([PRUNE_ON_DELETE], managed=False), False),
    # deployed from git: honoured only when the reconciler's apply owns the finalizer
    (applied([PRUNE_ON_DELETE], owned=[PRUNE_ON_DELETE]), False),
    (applied([PRUNE_ON_DELETE, OTHER], owned=[PRUNE_ON_DELETE]), False),  # a foreign non-cascading one is no matter
    (applied([PRUNE_ON_DELETE]), True),  # added by someone else
    (applied([PRUNE_ON_DELETE], by="kubectl-edit", owned=[PRUNE_ON_DELETE]), True),
    (applied([PRUNE_ON_DELETE], owned=[PRUNE_ON_DELETE], operation="Update"), True),  # a PUT, not our apply
    (applied([PRUNE_ON_DELETE, ARGO_RESOURCES_FINALIZER], owned=[PRUNE_ON_DELETE]), True),  # one of two
])
def test_a_cascade_on_an_application_from_git_needs_git_to_have_set_the_finalizer(
        obj: dict[str, Any], refused: bool) -> None:
    reason = refusal(obj)
    assert bool(reason) is refused
    if refused:
        assert "was not set by git" in reason and "driftguard-system/svc" in reason and "declare" in reason


SOURCE = Source(repo="https://git.example/r", commit="a" * 40, author="alice@org", committed_at="t", path="ns.yaml")


def namespace(annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "annotations": annotations}}


@pytest.mark.parametrize(("live", "opted_in"), [
    (stamp(namespace({NAMESPACE_OPT_IN: "true"}), application="a/b", source=SOURCE, enforcement="deny"), True),
    (stamp(namespace({NAMESPACE_OPT_IN: "false"}), application="a/b", source=SOURCE, enforcement="deny"), False),
    (stamp(namespace({}), application="a/b", source=SOURCE, enforcement="deny"), False),
    # added by hand to the live object, not in git's declared values
    ({**(s := stamp(namespace({}), application="a/b", source=SOURCE, enforcement="deny")),
      "metadata": {**s["metadata"], "annotations": {**s["metadata"]["annotations"], NAMESPACE_OPT_IN: "true"}}},
     False),
    (namespace({NAMESPACE_OPT_IN: "true"}), False),  # not stamped at all
    ({**namespace({NAMESPACE_OPT_IN: "true"}), "metadata": {"name": "team", "labels": {"driftguard.io/managed": "true"},
                                                            "annotations": {NAMESPACE_OPT_IN: "true"}}}, False),
], ids=["declared-true", "declared-false", "not-declared", "hand-added", "unmanaged", "unreadable-stamp"])
def test_a_namespace_is_deleted_with_its_application_only_when_git_opts_in(live: dict[str, Any],
                                                                           opted_in: bool) -> None:
    assert namespace_opt_in(live) is opted_in
