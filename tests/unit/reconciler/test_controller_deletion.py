"""A cascading delete pass by a real ``Controller`` over the in-memory cluster: failed deletions are kept
and reported once, the finalizer is dropped only when the inventory is empty, and its removal never
clobbers a finalizer added meanwhile."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from support.fake_cluster import FakeCluster
from support.reconciler_builders import cm, desired

from driftguard.core.contract import ARGO_RESOURCES_FINALIZER
from driftguard.core.inventory import Inventory
from driftguard.kube.resources import Cluster, ResourceError, ResourceType
from reconciler.application import AppKey, parse_application
from reconciler.apply import Mode
from reconciler.controller import Busy, Controller, Settings
from reconciler.record import AppState, Operation

OTHER = "example.com/someone-else"


class AppCluster(FakeCluster):
    """FakeCluster plus one Application (metadata JSON patches with test/replace, status, Events)."""

    def __init__(self, app: dict[str, Any]) -> None:
        super().__init__()
        self.app: dict[str, Any] | None = app
        self.events: list[tuple[str, str]] = []
        self.statuses: list[dict[str, Any]] = []
        self.before_patch: list[dict[str, Any]] = []  # finalizers lists someone else writes just before ours

    def request_counts(self) -> dict[str, int]:
        return {}

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        if rt.kind == "Application":
            return copy.deepcopy(self.app)
        return super().get(rt, namespace, name)

    def json_patch(self, rt: ResourceType, namespace: str, name: str,
                   operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if rt.kind != "Application":
            return super().json_patch(rt, namespace, name, operations)
        assert self.app is not None
        if self.before_patch:
            self.app["metadata"]["finalizers"] = self.before_patch.pop(0)
        for op in operations:
            assert op["path"] == "/metadata/finalizers"
            if op["op"] == "test" and self.app["metadata"].get("finalizers") != op["value"]:
                raise ResourceError(f"Application {namespace}/{name}", 422, "Invalid", "test failed")
            if op["op"] == "replace":
                self.app["metadata"]["finalizers"] = op["value"]
        return copy.deepcopy(self.app)

    def patch_status(self, rt: ResourceType, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        self.statuses.append(dict(status))
        return {}

    def create_event(self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str,
                     component: str = "") -> None:
        self.events.append((reason, message))


def setup(tmp_path: Path, finalizers: list[str]) -> tuple[AppCluster, Controller, AppState]:
    app = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
           "metadata": {"name": "svc", "namespace": "driftguard-system", "finalizers": finalizers,
                        "deletionTimestamp": "2026-03-01T12:00:00Z", "generation": 2},
           "spec": {"source": {"repoURL": "/nowhere", "path": "app"}, "destination": {"namespace": "prod"},
                    "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}}
    cluster = AppCluster(app)
    controller = Controller(cast(Cluster, cluster), Settings(namespace="driftguard-system", cache_dir=tmp_path))
    objects = [desired(cm(name)) for name in ("a", "b")]
    controller.applier.sync_all(objects, Mode())
    state = AppState(AppKey("driftguard-system", "svc"), app, parse_application(app), {})
    state.memory.inventory = Inventory.of(d.entry for d in objects)
    return cluster, controller, state


def test_failed_deletions_are_kept_and_the_finalizer_stays(tmp_path: Path) -> None:
    cluster, controller, state = setup(tmp_path, [ARGO_RESOURCES_FINALIZER])
    cluster.fail["delete"] = ResourceError("ConfigMap prod/a", 500, "InternalError", "etcd timeout")

    assert controller.cascade.run(state) is True  # retry
    assert controller.cascade.run(state) is True
    assert len(state.memory.inventory) == 2 and cluster.app is not None
    assert cluster.app["metadata"]["finalizers"] == [ARGO_RESOURCES_FINALIZER]
    assert [reason for reason, _ in cluster.events] == ["DeleteFailed"], "reported once, not per retry"
    conditions = {c["type"]: c for c in cluster.statuses[-1]["conditions"]}
    assert conditions["Deleting"]["reason"] == conditions["Ready"]["reason"] == "DeleteFailed"

    del cluster.fail["delete"]
    assert controller.cascade.run(state) is False
    assert len(state.memory.inventory) == 0 and cluster.objects == {}
    assert cluster.app["metadata"]["finalizers"] == []
    assert [s["inventory"] for s in cluster.statuses if "inventory" in s][-1] == [], "the emptied inventory saved"


def test_finalizer_removal_does_not_clobber_a_concurrent_change(tmp_path: Path) -> None:
    cluster, controller, state = setup(tmp_path, [ARGO_RESOURCES_FINALIZER])
    cluster.before_patch = [[ARGO_RESOURCES_FINALIZER, OTHER]]  # added between our read and our patch

    assert controller.cascade.run(state) is False
    assert cluster.app is not None and cluster.app["metadata"]["finalizers"] == [OTHER]


def test_a_sync_asked_of_an_application_being_deleted_is_refused_or_released(tmp_path: Path) -> None:
    cluster, controller, state = setup(tmp_path, [ARGO_RESOURCES_FINALIZER])
    controller.states[state.key] = state
    with pytest.raises(Busy, match="is being deleted"):
        controller.sync(state.key, Operation("carol"), 0.0)
    asked = state.operation = Operation("carol")  # asked just before the deletion began: released, not run
    controller._cycle(state)
    assert asked.done.is_set() and asked.report is None and state.operation is None
    assert cluster.app is not None and cluster.app["metadata"]["finalizers"] == []  # the delete pass ran
