"""UPDATE of a managed Deployment by an engineer: which declared-field changes are caught.

Each case edits the live object the way a PUT/patch/apply would leave it and names the declared
fields the policy must report (empty: the edit must pass silently).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from support.admission import NOW, SETTINGS, edited, live, review

from driftguard.core import contract, fields
from driftguard.core.fields import FieldDrift
from driftguard.core.objects import ObjectRef
from webhook import edits, messages, policy

C = ("spec", "template", "spec", "containers")
WEB = "spec.template.spec.containers[name=web]"
Edit = Callable[[dict[str, Any]], dict[str, Any]]


def _reorder_containers(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"].reverse()
    return out


def _reorder_env(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0]["env"].reverse()
    return out


def _add_container(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"].append({"name": "debug", "image": "busybox"})
    return out


def _drop_env(name: str) -> Edit:
    def edit(obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        env = out["spec"]["template"]["spec"]["containers"][0]["env"]
        env[:] = [e for e in env if e["name"] != name]
        return out
    return edit


def _duplicate_port(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 9090, "protocol": "UDP"})
    return out


CASES: list[tuple[str, Edit, list[str]]] = [
    # scalars and nested maps
    ("replicas changed", lambda o: edited(o, "spec", "replicas", 9), ["spec.replicas"]),
    ("replicas unchanged", lambda o: edited(o, "spec", "replicas", 3), []),
    ("replicas removed", lambda o: edited(o, "spec", "replicas", ...), ["spec.replicas"]),
    ("replicas 3 as a string", lambda o: edited(o, "spec", "replicas", "3"), ["spec.replicas"]),
    ("replicas 3.0 equals 3", lambda o: edited(o, "spec", "replicas", 3.0), []),
    ("nested map value", lambda o: edited(o, "spec", "selector", "matchLabels", "app", "other"),
     ["spec.selector.matchLabels.app"]),
    ("nested map gains an undeclared key", lambda o: edited(o, "spec", "selector", "matchLabels", "tier", "web"), []),
    ("pod template annotation changed",
     lambda o: edited(o, "spec", "template", "metadata", "annotations", "team", "search"),
     ["spec.template.metadata.annotations.team"]),
    ("pod template annotations map removed", lambda o: edited(o, "spec", "template", "metadata", "annotations", ...),
     ["spec.template.metadata.annotations.team"]),
    # keyed lists
    ("container image", lambda o: edited(o, *C, 0, "image", "nginx:latest"), [f"{WEB}.image"]),
    ("containers reordered", _reorder_containers, []),
    ("container added (undeclared: the strict pod profile)", _add_container,
     ["spec.template.spec.containers[name=debug]"]),
    ("container removed", lambda o: edited(o, *C, [o["spec"]["template"]["spec"]["containers"][0]]),
     ["spec.template.spec.containers[name=sidecar].image", "spec.template.spec.containers[name=sidecar].name"]),
    ("env var value", lambda o: edited(o, *C, 0, "env", 0, "value", "staging"), [f"{WEB}.env[name=MODE].value"]),
    ("env reordered", _reorder_env, []),
    ("env var removed", _drop_env("WORKERS"), [f"{WEB}.env[name=WORKERS].name", f"{WEB}.env[name=WORKERS].value"]),
    ("env var gains valueFrom (undeclared)",
     lambda o: edited(o, *C, 0, "env", 0, "valueFrom", {"fieldRef": {"fieldPath": "metadata.name"}}), []),
    ("env value \"4\" becomes 4", lambda o: edited(o, *C, 0, "env", 1, "value", 4), [f"{WEB}.env[name=WORKERS].value"]),
    ("port name", lambda o: edited(o, *C, 0, "ports", 1, "name", "http-metrics"),
     [f"{WEB}.ports[containerPort=9090].name"]),
    ("port duplicated by protocol makes the key ambiguous", _duplicate_port,
     [f"{WEB}.ports[containerPort=9090].containerPort", f"{WEB}.ports[containerPort=9090].name"]),
    # quantities
    ("cpu 1 equals declared 1000m", lambda o: edited(o, *C, 0, "resources", "limits", "cpu", "1"), []),
    ("cpu 1.0 equals declared 1000m", lambda o: edited(o, *C, 0, "resources", "limits", "cpu", "1.0"), []),
    ("cpu 2", lambda o: edited(o, *C, 0, "resources", "limits", "cpu", "2"), [f"{WEB}.resources.limits.cpu"]),
    ("memory in bytes equals 512Mi", lambda o: edited(o, *C, 0, "resources", "limits", "memory", "536870912"), []),
    ("memory 1Gi", lambda o: edited(o, *C, 0, "resources", "limits", "memory", "1Gi"),
     [f"{WEB}.resources.limits.memory"]),
    ("undeclared requests added", lambda o: edited(o, *C, 0, "resources", "requests", {"cpu": "100m"}), []),
    # null vs absent
    ("declared-absent nodeSelector set", lambda o: edited(o, "spec", "template", "spec", "nodeSelector", {"a": "b"}),
     ["spec.template.spec.nodeSelector"]),
    ("declared-absent nodeSelector set to null", lambda o: edited(o, "spec", "template", "spec", "nodeSelector", None),
     []),
    # defaulted fields git never declared
    ("defaulted revisionHistoryLimit changed", lambda o: edited(o, "spec", "revisionHistoryLimit", 2), []),
    ("defaulted strategy replaced", lambda o: edited(o, "spec", "strategy", {"type": "Recreate"}), []),
    ("defaulted imagePullPolicy changed", lambda o: edited(o, *C, 0, "imagePullPolicy", "Always"), []),
    # object metadata
    ("declared label changed", lambda o: edited(o, "metadata", "labels", "app", "x"), ["metadata.labels.app"]),
    ("declared label removed",
     lambda o: edited(o, "metadata", "labels", {"driftguard.io/managed": "true"}), ["metadata.labels.app"]),
    ("undeclared label added", lambda o: edited(o, "metadata", "labels", "owner", "bob"), []),
    ("undeclared annotation added", lambda o: edited(o, "metadata", "annotations", "note", "hello"), []),
    ("status changed", lambda o: edited(o, "status", {"replicas": 1}), []),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_deny_mode_reports_exactly_the_changed_declared_fields(edit: Edit, expected: list[str]) -> None:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edit(old))["request"], SETTINGS, NOW)
    assert verdict.outcome == ("deny" if expected else "allow")
    if not expected:
        assert verdict.message == "" and verdict.record is None
        return
    assert verdict.record is not None
    assert [f["field"] for f in verdict.record.fields] == expected
    for name in expected:
        assert name in verdict.message


def _undeclared_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    return edited(obj, "metadata", "annotations", "note", "x")


@pytest.mark.parametrize(("drifted", "edit", "outcome"), [
    pytest.param(9, _undeclared_annotation, "allow", id="drift left as it was is not this request's doing"),
    pytest.param(9, lambda o: edited(o, "spec", "replicas", 3), "allow", id="restoring git's value"),
    pytest.param(9, lambda o: edited(o, "spec", "replicas", 12), "deny", id="moving drift further"),
])
def test_already_drifted_objects_judge_only_this_request(drifted: int, edit: Edit, outcome: str) -> None:
    old = edited(live(), "spec", "replicas", drifted)
    verdict = policy.validate(review("UPDATE", old=old, new=edit(old))["request"], SETTINGS, NOW)
    assert verdict.outcome == outcome


def test_the_message_reads_like_the_user_story() -> None:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"],
                              SETTINGS, NOW)
    assert verdict.message == (
        "spec.replicas of Deployment production/my-service is declared in git (3) at "
        "services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org; this request sets 9. "
        "Change it in git: https://github.com/org/k8s-manifests\n"
        "driftguard suggest -- scale deployment/my-service -n production --replicas=9"
        "  # the git change instead: edits a clone, prints the diff"
    )
    assert verdict.record is not None and verdict.record.reason == verdict.message


def test_several_fields_are_all_listed_with_both_values() -> None:
    old = live()
    new = edited(edited(old, "spec", "replicas", 9), *C, 0, "image", "nginx:latest")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW)
    assert verdict.message == (
        "Deployment production/my-service is declared in git at services/my-service/production/deployment.yaml, "
        "commit 1a2b3c4 by alice@org; this request changes 2 declared fields: spec.replicas (git: 3, requested: 9); "
        f"{WEB}.image (git: registry.example/my-service:1.4.2, requested: nginx:latest). "
        "Change them in git: https://github.com/org/k8s-manifests\n"
        "driftguard suggest --set spec.replicas=9 --set 'spec.template.spec.containers[name=web].image=nginx:latest' "
        "deployment/my-service -n production  # the git change instead: edits a clone, prints the diff"
    )


def test_a_removed_field_says_so() -> None:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", ...))["request"],
                              SETTINGS, NOW)
    assert "(3)" in verdict.message and "this request removes it" in verdict.message


def _secret(password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "production"},
            "type": "Opaque", "data": {"password": password}}


def test_secret_values_are_never_rendered() -> None:
    old = live(_secret("czNjcjN0"))
    new = edited(old, "data", "password", "aHVudGVyMg==")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert "data.password of Secret production/db is declared in git (<redacted>)" in verdict.message
    assert "this request sets <redacted>" in verdict.message
    assert verdict.record is not None
    assert verdict.record.fields == ({"field": "data.password", "declared": "<redacted>", "requested": "<redacted>"},)
    text = repr(verdict.record.to_dict()) + verdict.message
    assert "czNjcjN0" not in text and "aHVudGVyMg==" not in text


def test_unchanged_secret_passes() -> None:
    old = live(_secret("czNjcjN0"))
    new = edited(old, "metadata", "labels", "rotated", "no")
    assert policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW).outcome == "allow"


@pytest.mark.parametrize("edit", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_pruning_never_changes_the_answer(edit: Edit) -> None:
    """``edits.changed_fields`` equals the unpruned definition: diff everything, drop what old already had."""
    old = edited(live(), "spec", "template", "spec", "containers", 1, "image", "proxy:drifted")
    new = edit(old)
    stamp = contract.read_stamp(old)
    assert stamp is not None
    naive = [d for d in fields.diff(stamp.declared, new) if not edits.same(fields.lookup(old, d.path), d.actual)]
    assert edits.changed_fields(stamp, old, new) == naive


@pytest.mark.parametrize(("before", "after", "same"), [
    (1, True, False), (0, False, False), (1, 1.0, False), ({"a": [1, "x"]}, {"a": [1, "x"]}, True),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),  # order differs: "not identical" only costs a full diff
    (None, fields.MISSING, False), (fields.MISSING, fields.MISSING, True),
])
def test_identity_is_strict(before: object, after: object, same: bool) -> None:
    assert edits.same(before, after) is same


def test_a_type_flip_in_an_untyped_field_is_a_change() -> None:
    manifest = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"},
                "spec": {"config": {"enabled": 1}}}
    old = live(manifest)
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "config", "enabled", True))["request"],
                              SETTINGS, NOW)
    assert verdict.outcome == "deny" and "spec.config.enabled" in verdict.message


def test_a_warn_mode_warning_puts_the_fix_and_repository_first_and_loses_nothing_to_the_limit() -> None:
    """An admission warning holds 256 characters: the fix and the repository come first, and a long path is
    carried on in a further warning, never cut."""
    stamp = contract.read_stamp(live(enforcement="warn"))
    assert stamp is not None
    deep = "services/" + "very-long-directory-name/" * 12 + "deployment.yaml"
    stamp = dataclasses.replace(stamp, source=dataclasses.replace(stamp.source, path=deep))
    ref = ObjectRef("apps", "Deployment", "production", "my-service")
    texts = messages.field_warnings(ref, stamp, [FieldDrift(("spec", "replicas"), 3, 9)])
    assert all(len(t) <= messages.WARNING_LIMIT for t in texts)
    assert texts[0] == "driftguard warn mode: change it in git: https://github.com/org/k8s-manifests (declared at…"
    assert all(t.startswith("…") for t in texts[1:-1])
    carried = "".join(t.removesuffix("…").removeprefix("…") for t in texts[:-1]).replace(" ", "")
    assert deep in carried and "thereconcilerrestoresgit'svalue" in carried
    assert texts[-1] == ("spec.replicas of Deployment production/my-service is declared in git (3); "
                        "this request sets 9")


@pytest.mark.parametrize("length", [10, 255, 256, 257, 600, 2000])
def test_split_keeps_every_word_within_the_limit(length: int) -> None:
    words = [f"w{i}" for i in range(length)]
    text = " ".join(words)[:length] if length < 300 else " ".join(words)
    parts = messages.split(text)
    assert all(len(p) <= messages.WARNING_LIMIT for p in parts)
    assert " ".join(p.removeprefix("…").removesuffix("…") for p in parts).split() == text.split()
    assert len(parts) == 1 or all(p.endswith("…") for p in parts[:-1])


def test_a_word_longer_than_a_warning_is_broken_where_it_must_be() -> None:
    parts = messages.split("x" * 600)
    assert [len(p) for p in parts] == [256, 256, 92] and "".join(p.strip("…") for p in parts) == "x" * 600


def test_a_namespace_is_named_without_a_namespace_of_its_own() -> None:
    """The API server sets a Namespace request's ``namespace`` to the Namespace's name; the message must not
    read ``Namespace podinfo/podinfo``."""
    old = live({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "podinfo", "labels": {"team": "a"}}})
    old["metadata"].pop("namespace", None)
    request = review("UPDATE", old=old, new=edited(old, "metadata", "labels", "team", "b"))["request"]
    request["namespace"] = "podinfo"
    verdict = policy.validate(request, SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("metadata.labels.team of Namespace podinfo is declared in git"), verdict.message
