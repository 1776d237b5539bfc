"""Declared-field comparison: the single drift test shared by webhook and reconciler."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core import fields
from driftguard.core.fields import MISSING, ListKey

DEPLOY: dict[str, Any] = {
    "spec": {
        "replicas": 3,
        "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
             "env": [{"name": "MODE", "value": "prod"}], "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}}},
        ]}},
    },
}


def live(**changes: Any) -> dict[str, Any]:
    """A live Deployment equal to DEPLOY plus server defaults, then ``changes`` applied to the web container."""
    container: dict[str, Any] = {
        "name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "env": [{"name": "MODE", "value": "prod"}],
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    container.update(changes)
    return {"spec": {"replicas": 3, "progressDeadlineSeconds": 600,
                     "template": {"spec": {"containers": [container], "restartPolicy": "Always"}}}}


@pytest.mark.parametrize(
    ("name", "obj", "drifted"),
    [
        ("identical with server defaults", live(), []),
        ("image changed", live(image="nginx:latest"), ["spec.template.spec.containers[name=web].image"]),
        ("undeclared field changed", live(imagePullPolicy="Always"), []),
        ("quantity spelled differently", live(resources={"limits": {"cpu": "1", "memory": "1024Mi"}}), []),
        ("quantity changed", live(resources={"limits": {"cpu": "2", "memory": "1Gi"}}),
         ["spec.template.spec.containers[name=web].resources.limits.cpu"]),
        ("env value changed", live(env=[{"name": "MODE", "value": "debug"}]),
         ["spec.template.spec.containers[name=web].env[name=MODE].value"]),
        ("env reordered with an extra var",
         live(env=[{"name": "X", "value": "1"}, {"name": "MODE", "value": "prod"}]), []),
        ("env var removed", live(env=[]),
         ["spec.template.spec.containers[name=web].env[name=MODE].name",
          "spec.template.spec.containers[name=web].env[name=MODE].value"]),
        ("port protocol defaulted", live(ports=[{"containerPort": 80, "protocol": "TCP", "name": "http"}]), []),
        ("port changed", live(ports=[{"containerPort": 8080, "protocol": "TCP"}]),
         ["spec.template.spec.containers[name=web].ports[containerPort=80].containerPort"]),
    ],
)
def test_deployment_drift(name: str, obj: dict[str, Any], drifted: list[str]) -> None:
    assert sorted(d.path_text for d in fields.diff(DEPLOY, obj)) == sorted(drifted), name


def test_extra_container_is_not_a_declared_field() -> None:
    obj = live()
    obj["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    assert fields.diff(DEPLOY, obj) == []


def test_replicas_change_reports_values() -> None:
    obj = live()
    obj["spec"]["replicas"] = 9
    [drift] = fields.diff(DEPLOY, obj)
    assert drift.to_dict() == {"field": "spec.replicas", "declared": "3", "requested": "9"}


@pytest.mark.parametrize(
    ("path", "declared", "actual", "equal"),
    [
        (("data", "a"), "1", 1, False),
        (("data", "a"), 1, "1", False),
        (("spec", "n"), 1, 1.0, True),
        (("spec", "flag"), True, 1, False),
        (("spec", "flag"), False, False, True),
        (("spec", "x"), None, MISSING, True),
        (("spec", "x"), None, None, True),
        (("spec", "x"), None, "set", False),
        (("spec", "x"), "v", MISSING, False),
        (("spec", "x"), "v", None, False),
        (("spec", "x"), [], MISSING, True),
        (("spec", "x"), [], ["a"], False),
        (("spec", "x"), {}, {"k": "v"}, True),
        (("spec", "x"), {}, "scalar", False),
        (("spec", "args"), ["a", "b"], ["b", "a"], False),
        (("spec", "args"), ["a", "b"], ["a", "b"], True),
        (("spec", "args"), ["a"], ["a", "b"], False),
        (("subjects",), [{"kind": "User", "name": "bob"}],
         [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}], True),
        (("subjects",), [{"kind": "User", "name": "bob"}],
         [{"kind": "User", "name": "bob"}, {"kind": "User", "name": "eve"}], False),
        (("resources", "requests", "cpu"), "500m", "0.5", True),
        (("resources", "requests", "cpu"), "500m", 0.5, True),
        (("resources", "requests", "memory"), "1Gi", "1073741824", True),
        (("resources", "requests", "memory"), "1G", "1Gi", False),
        (("emptyDir", "sizeLimit"), "1Gi", "1024Mi", True),
        (("data", "cpu"), "1000m", "1", False),  # a ConfigMap value is text, not a quantity
    ],
)
def test_leaf_equal(path: fields.Path, declared: object, actual: object, equal: bool) -> None:
    assert fields.leaf_equal(path, declared, actual) is equal


def test_digest_leaves_compare_by_hash_and_never_render() -> None:
    tree = fields.compact({"data": {"password": "czNjcjN0"}}, sensitive_roots=frozenset({"data"}))
    assert "czNjcjN0" not in fields.canonical_json(tree)
    assert fields.diff(tree, {"data": {"password": "czNjcjN0"}}) == []
    [drift] = fields.diff(tree, {"data": {"password": "b3RoZXI="}})
    assert drift.to_dict(sensitive=True) == {
        "field": "data.password", "declared": "<redacted>", "requested": "<redacted>"}


def test_long_strings_become_digests_but_still_compare() -> None:
    big = "x" * 5000
    tree = fields.compact({"data": {"blob": big, "small": "y"}})
    assert tree["data"]["small"] == "y" and fields.DIGEST_KEY in tree["data"]["blob"]
    assert fields.diff(tree, {"data": {"blob": big, "small": "y"}}) == []
    assert [d.path_text for d in fields.diff(tree, {"data": {"blob": big + "!", "small": "y"}})] == ["data.blob"]


def test_keyed_lists_stay_keyed_after_compaction() -> None:
    container = {"name": "web", "image": "nginx", "command": ["sh", "-c", "x" * 600]}
    tree = fields.compact({"spec": {"containers": [container]}})
    obj = {"spec": {"containers": [{**container, "imagePullPolicy": "Always"}]}}
    assert fields.diff(tree, obj) == []


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("spec", "replicas"), "spec.replicas"),
        (("metadata", "labels", "app.kubernetes.io/name"), 'metadata.labels["app.kubernetes.io/name"]'),
        (("spec", "containers", ListKey((("name", "web"),)), "image"), "spec.containers[name=web].image"),
        (("spec", "ports", ListKey((("port", 80), ("protocol", "UDP")))), "spec.ports[port=80,protocol=UDP]"),
    ],
)
def test_render_path(path: fields.Path, text: str) -> None:
    assert fields.render_path(path) == text


def test_lookup_ambiguous_keyed_element_is_missing() -> None:
    obj = {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}
    assert fields.lookup(obj, ("env", ListKey((("name", "A"),)), "value")) is MISSING
