"""Git removes, the cluster follows: which fields an apply left behind, and the patch that removes them."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.fields import ListKey, declared_tree
from reconciler.leftovers import element_removals, gone, removals


def deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {**spec, "template": {"spec": {"containers": containers}}}}


WEB = {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
SIDECAR = {"name": "log", "image": "log:1"}


def removal(path: str, value: object) -> list[dict[str, Any]]:
    return [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]


ABC = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]


def tree(obj: dict[str, Any]) -> dict[str, Any]:
    return declared_tree(obj)


@pytest.mark.parametrize(("old", "new", "live", "removed", "operations"), [
    # a map key git dropped, still at git's value (a co-owner kept it): removed, after a test of its value
    (deployment([WEB], replicas=3), deployment([WEB]), deployment([WEB], replicas=3),
     ["spec.replicas"], removal("/spec/replicas", 3)),
    # ...but set to another value by someone: theirs, not git's leftover
    (deployment([WEB], replicas=3), deployment([WEB]), deployment([WEB], replicas=5), [], []),
    # already gone (nobody else owned it: the apply removed it)
    (deployment([WEB], replicas=3), deployment([WEB]), deployment([WEB]), [], []),
    # a keyed-list element git no longer lists goes whole, found by key wherever it sits
    (deployment([WEB, SIDECAR]), deployment([WEB]), deployment([SIDECAR, {**WEB, "imagePullPolicy": "Always"}]),
     ["spec.template.spec.containers[name=log]"],
     [{"op": "test", "path": "/spec/template/spec/containers/0", "value": SIDECAR},
      {"op": "remove", "path": "/spec/template/spec/containers/0"}]),
    # two elements of one list: the higher index first, so the lower one stays valid
    (deployment([{**WEB, "env": ABC}]), deployment([{**WEB, "env": [{"name": "B", "value": "2"}]}]),
     deployment([{**WEB, "env": ABC}]),
     ["spec.template.spec.containers[name=web].env[name=C]", "spec.template.spec.containers[name=web].env[name=A]"],
     [{"op": "test", "path": "/spec/template/spec/containers/0/env/2", "value": {"name": "C", "value": "3"}},
      {"op": "remove", "path": "/spec/template/spec/containers/0/env/2"},
      {"op": "test", "path": "/spec/template/spec/containers/0/env/0", "value": {"name": "A", "value": "1"}},
      {"op": "remove", "path": "/spec/template/spec/containers/0/env/0"}]),
    # a label (keys with a slash are escaped in the pointer)
    ({**deployment([WEB]), "metadata": {"name": "web", "labels": {"app": "web", "team/x": "a"}}},
     deployment([WEB]), {**deployment([WEB]), "metadata": {"name": "web", "labels": {"app": "web", "team/x": "a"}}},
     ['metadata.labels["team/x"]'],
     removal("/metadata/labels/team~1x", "a")),
    # a value git changed is the apply's business, not a leftover
    (deployment([WEB], replicas=3), deployment([WEB], replicas=4), deployment([WEB], replicas=3), [], []),
    # an atomic list git still declares, shorter: the apply replaces it whole
    (deployment([{**WEB, "args": ["a", "b"]}]), deployment([{**WEB, "args": ["a"]}]),
     deployment([{**WEB, "args": ["a", "b"]}]), [], []),
], ids=["map-key", "changed-by-someone", "already-gone", "container", "two-env-vars", "label", "changed", "atomic"])
def test_removals(old: dict[str, Any], new: dict[str, Any], live: dict[str, Any], removed: list[str],
                  operations: list[dict[str, Any]]) -> None:
    ops, paths = removals(tree(old), tree(new), live)
    assert paths == removed
    assert ops == operations


def test_gone_lists_leaves_and_keyed_elements_never_a_whole_map() -> None:
    old = {"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"team": "x"}},
           "spec": {"containers": [{"name": "web", "image": "w"}]}}
    assert gone(old, {"data": {"a": "1"}}) == [
        (("data", "b"), "2"), (("metadata", "labels", "team"), "x"),
        (("spec", "containers", ListKey((("name", "web"),))), {"name": "web", "image": "w"}),
    ]


def test_element_removals_test_each_element_and_go_from_the_highest_index() -> None:
    obj = {"spec": {"template": {"spec": {
        "containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "volumes": [{"name": "v", "hostPath": {"path": "/"}}]}}}}
    pod: tuple[Any, ...] = ("spec", "template", "spec")
    paths = [(*pod, "containers", ListKey((("name", "a"),))), (*pod, "containers", ListKey((("name", "c"),))),
             (*pod, "volumes", ListKey((("name", "v"),))), (*pod, "containers", ListKey((("name", "gone"),)))]
    operations, rendered = element_removals(obj, paths)
    assert operations == [
        {"op": "test", "path": "/spec/template/spec/containers/2", "value": {"name": "c"}},
        {"op": "remove", "path": "/spec/template/spec/containers/2"},
        {"op": "test", "path": "/spec/template/spec/containers/0", "value": {"name": "a"}},
        {"op": "remove", "path": "/spec/template/spec/containers/0"},
        {"op": "test", "path": "/spec/template/spec/volumes/0", "value": {"name": "v", "hostPath": {"path": "/"}}},
        {"op": "remove", "path": "/spec/template/spec/volumes/0"},
    ]
    assert rendered == ["spec.template.spec.containers[name=c]", "spec.template.spec.containers[name=a]",
                        "spec.template.spec.volumes[name=v]"]
