"""driftguard diff's comparison: declared fields only, keyed lists by key, digests never in clear."""

from __future__ import annotations

from typing import Any

from driftguard.core.fields import compact, declared_tree
from driftguard.core.objects import ObjectRef
from reconciler.appdiff import object_diff, project, pruned_diff

REF = ObjectRef("apps", "Deployment", "prod", "web")
GIT: dict[str, Any] = {"spec": {"replicas": 3, "template": {"spec": {"containers": [
    {"name": "app", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1"}}}]}}}}


def live(**changes: Any) -> dict[str, Any]:
    container = {"name": "app", "image": changes.get("image", "nginx:1.27"), "imagePullPolicy": "IfNotPresent",
                 "resources": {"limits": {"cpu": changes.get("cpu", "1000m")}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "uid": "u"},
            "spec": {"replicas": changes.get("replicas", 3), "strategy": {"type": "RollingUpdate"},
                     "template": {"spec": {"containers": [{"name": "sidecar", "image": "x"}, container]}}},
            "status": {"replicas": 3}}


def test_no_difference_in_declared_fields_is_no_diff() -> None:
    assert object_diff(REF, GIT, live()) == ""  # 1000m is 1; defaults, other containers and status never show


def test_a_changed_field_is_a_unified_diff_of_declared_fields_only() -> None:
    text = object_diff(REF, GIT, live(replicas=9, image="nginx:1.28"))
    assert text.splitlines()[:2] == ["--- live/Deployment/prod/web", "+++ git/Deployment/prod/web"]
    changed = [line for line in text.splitlines()[2:] if line[:1] in "+-"]
    assert changed == ["-  replicas: 9", "+  replicas: 3", "-        image: nginx:1.28", "+        image: nginx:1.27"]
    assert "sidecar" not in text and "strategy" not in text and "imagePullPolicy" not in text


def test_an_absent_object_is_all_added() -> None:
    text = object_diff(REF, GIT, None)
    assert text.startswith("--- live/Deployment/prod/web (absent: the sync creates it)\n+++ git/Deployment/prod/web")
    assert "+  replicas: 3\n" in text


def test_secret_values_are_digests_on_both_sides() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}}
    declared = compact(declared_tree(secret), sensitive_roots=frozenset({"data"}))
    have = {**secret, "data": {"password": "b3RoZXI="}}
    text = object_diff(ObjectRef("", "Secret", "prod", "s"), declared, have)
    assert "aHVudGVyMg==" not in text and "b3RoZXI=" not in text and text.count("sha256:") == 2


def test_projection_keeps_git_order_and_skips_what_live_lacks() -> None:
    assert project({"b": 1, "a": {"x": 1, "y": 2}}, {"a": {"y": 5}, "b": 2, "c": 3}) == {"b": 2, "a": {"y": 5}}


def test_pruned() -> None:
    assert pruned_diff(ObjectRef("", "ConfigMap", "prod", "old")).splitlines()[1] == (
        "+++ git/ConfigMap/prod/old (no longer in git: a sync with prune deletes it)")


def test_what_ignore_differences_names_is_on_neither_side() -> None:
    from driftguard.core import ignore
    rules, problems = ignore.parse_rules([{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}])
    assert not problems
    rule = ignore.for_object(rules, "apps", "Deployment", "web", "prod")
    assert object_diff(REF, GIT, live(replicas=9), rule) == ""  # an HPA's replicas are not a difference
    text = object_diff(REF, GIT, live(replicas=9, image="nginx:1.28"), rule)
    assert "replicas" not in text and "+        image: nginx:1.27" in text
