"""Deleting an Application, as tables: when to cascade, when to let go, when to drop the finalizer, and
the guarded patch that drops it."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.contract import ARGO_RESOURCES_FINALIZER, PRUNE_ON_DELETE
from reconciler.deletion import (
    Step,
    being_deleted,
    ours,
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
