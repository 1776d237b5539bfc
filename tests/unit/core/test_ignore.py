"""spec.ignoreDifferences: rules parsed, matched to objects, and an object + rules turned into the declared
fields left out of the comparison (both sides masked, as Argo CD does)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from driftguard.core import contract, fields, ignore
from driftguard.core.ignore import Ignore

DECLARED: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}},
    "spec": {
        "replicas": 3,
        "template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:1.27", "env": [{"name": "MODE", "value": "prod"}]},
                           {"name": "log", "image": "fluent:1"}],
            "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
        }},
    },
}


def live(**spec: Any) -> dict[str, Any]:
    """A live Deployment equal to DECLARED, with ``spec`` keys replaced and managedFields on it."""
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "annotations": {"team": "a"},
                     "managedFields": [
                         {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
                          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                         {"manager": "istio", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {
                             "f:spec": {"f:template": {"f:spec": {"f:containers": {
                                 'k:{"name":"log"}': {".": {}, "f:image": {}}}}}},
                             "f:metadata": {"f:annotations": {"f:team": {}}}}},
                     ]},
        "spec": copy.deepcopy(DECLARED["spec"]),
    }
    obj["spec"].update(spec)
    return obj


def containers(web: str = "nginx:1.27", log: str = "fluent:1", mode: str = "prod") -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "web", "image": web, "env": [{"name": "MODE", "value": mode}]},
                                    {"name": "log", "image": log}],
                     "tolerations": DECLARED["spec"]["template"]["spec"]["tolerations"]}}


WEB_IMAGE = "spec.template.spec.containers[name=web].image"
LOG_IMAGE = "spec.template.spec.containers[name=log].image"


@pytest.mark.parametrize(
    ("name", "rules", "obj", "drifted", "ignored"),
    [
        ("no rules: replicas is drift", Ignore(), live(replicas=5), ["spec.replicas"], []),
        ("pointer ignores replicas", Ignore(("/spec/replicas",)), live(replicas=5), [], ["spec.replicas"]),
        ("pointer ignores only what it names", Ignore(("/spec/replicas",)),
         live(replicas=5, template=containers(web="nginx:2")), [WEB_IMAGE], ["spec.replicas"]),
        ("pointer to a whole branch", Ignore(("/spec/template",)), live(template=containers(web="x", log="y")), [],
         [WEB_IMAGE, "spec.template.spec.containers[name=web].env[name=MODE].value",
          "spec.template.spec.containers[name=web].env[name=MODE].name", "spec.template.spec.containers[name=web].name",
          LOG_IMAGE, "spec.template.spec.containers[name=log].name", "spec.template.spec.tolerations"]),
        ("pointer that resolves nowhere ignores nothing", Ignore(("/spec/nothing/here",)), live(replicas=5),
         ["spec.replicas"], []),
        ("pointer with an escaped key", Ignore(("/metadata/annotations/team",)), None, [], []),
        ("pointer by index into a keyed list (each side its own index)",
         Ignore(("/spec/template/spec/containers/1/image",)), live(template=containers(log="fluent:2")), [],
         [LOG_IMAGE]),
        ("jq selects one container's image", Ignore((), ('.spec.template.spec.containers[] | select(.name == "log")'
                                                         ' | .image',)),
         live(template=containers(web="nginx:2", log="fluent:2")), [WEB_IMAGE], [LOG_IMAGE]),
        ("jq selects a whole element", Ignore((), ('.spec.template.spec.containers[] | select(.name == "web")',)),
         live(template=containers(web="nginx:2", mode="debug")), [],
         ["spec.template.spec.containers[name=web].name", WEB_IMAGE,
          "spec.template.spec.containers[name=web].env[name=MODE].name",
          "spec.template.spec.containers[name=web].env[name=MODE].value"]),
        ("jq into an atomic list removes that element on both sides",
         Ignore((), ('.spec.template.spec.tolerations[] | select(.key == "b")',)),
         live(template={"spec": {**containers()["spec"], "tolerations": [{"key": "a", "operator": "Exists"}]}}), [],
         []),
        ("jq into an atomic list leaves the rest compared",
         Ignore((), ('.spec.template.spec.tolerations[] | select(.key == "b")',)),
         live(template={"spec": {**containers()["spec"], "tolerations": [{"key": "z", "operator": "Exists"}]}}),
         ["spec.template.spec.tolerations"], []),
        ("manager's scale ownership ignores replicas", Ignore((), (), ("kube-controller-manager",)), live(replicas=7),
         [], ["spec.replicas"]),
        ("manager's keyed-list ownership", Ignore((), (), ("istio",)), live(template=containers(log="fluent:9")), [],
         [LOG_IMAGE, 'metadata.annotations.team']),
        ("another manager's fields stay compared", Ignore((), (), ("someone-else",)), live(replicas=7),
         ["spec.replicas"], []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_ignore_table(name: str, rules: Ignore, obj: dict[str, Any] | None, drifted: list[str],
                      ignored: list[str]) -> None:
    if obj is None:  # the escaped-key row: an annotation whose key has a '/'
        declared = {"metadata": {"annotations": {"example.com/team": "a"}}}
        obj = {"metadata": {"annotations": {"example.com/team": "b"}}}
        rules = Ignore(("/metadata/annotations/example.com~1team",))
        drifts, problems = ignore.diff(rules, declared, obj)
        assert (drifts, problems) == ([], ())
        assert ignore.ignored_fields(rules, declared, obj) == ['metadata.annotations["example.com/team"]']
        return
    drifts, problems = ignore.diff(rules, DECLARED, obj)
    assert problems == ()
    assert [d.path_text for d in drifts] == drifted
    assert sorted(ignore.ignored_fields(rules, DECLARED, obj)) == sorted(ignored)


def test_masking_never_changes_its_inputs() -> None:
    obj = live(replicas=5)
    before, declared_before = copy.deepcopy(obj), copy.deepcopy(DECLARED)
    ignore.diff(Ignore(("/spec/replicas",), ('.spec.template.spec.containers[0]',), ("istio",)), DECLARED, obj)
    assert obj == before
    assert declared_before == DECLARED


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        (".spec.template.spec.containers[", "does not compile"),
        ("..|.nope|error(\"boom\")", "failed on this object"),
    ],
)
def test_an_expression_that_cannot_be_evaluated_is_a_problem_and_ignores_nothing(expression: str,
                                                                                  problem: str) -> None:
    drifts, problems = ignore.diff(Ignore((), (expression,)), DECLARED, live(replicas=5))
    assert [d.path_text for d in drifts] == ["spec.replicas"]  # never a silent "ignore everything"
    assert len(problems) == 1
    assert repr(expression) in problems[0]
    assert problem in problems[0]


RULE = {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}


@pytest.mark.parametrize(
    ("wire", "problems"),
    [
        ([RULE], []),
        ("nope", ["spec.ignoreDifferences must be a list of rules"]),
        ([1], ["spec.ignoreDifferences[0] must be an object"]),
        ([{"group": "apps", "jsonPointers": ["/spec/replicas"]}],
         ['spec.ignoreDifferences[0]: kind is required (use "*" for every kind)']),
        ([{"kind": "Deployment"}], ["spec.ignoreDifferences[0]: names no jsonPointers, jqPathExpressions or "
                                    "managedFieldsManagers, so it ignores nothing"]),
        ([{"kind": "Deployment", "jsonPointers": ["spec/replicas"]}],
         ["spec.ignoreDifferences[0].jsonPointers[0]: 'spec/replicas' is not a JSON pointer (it starts with /, "
          "e.g. /spec/replicas)"]),
        ([{"kind": "Deployment", "jsonPointers": ["/a~2b"]}],
         ["spec.ignoreDifferences[0].jsonPointers[0]: '/a~2b': '~' must be followed by 0 or 1 (RFC 6901)"]),
        ([{"kind": "Deployment", "jqPathExpressions": [".a | ("]}],
         ["spec.ignoreDifferences[0].jqPathExpressions[0]: jq expression '.a | (' does not compile: syntax error, "
          "unexpected end of file"]),
        ([{"kind": "Deployment", "jsonPointers": "/spec/replicas"}],
         ["spec.ignoreDifferences[0]: jsonPointers must be a string (lists of strings for jsonPointers, "
          "jqPathExpressions, managedFieldsManagers)"]),
        ([{**RULE, "jsonPointer": ["/x"]}],
         ["spec.ignoreDifferences[0]: unknown field(s) jsonPointer (known: group, kind, name, namespace, "
          "jsonPointers, jqPathExpressions, managedFieldsManagers)"]),
    ],
)
def test_parse_rules_names_each_problem(wire: object, problems: list[str]) -> None:
    rules, found = ignore.parse_rules(wire)
    assert list(found) == problems
    if not problems:
        assert rules == (ignore.Rule("apps", "Deployment", ignore=Ignore(("/spec/replicas",))),)


@pytest.mark.parametrize(
    ("rule", "obj", "applies"),
    [
        ({"group": "apps", "kind": "Deployment"}, ("apps", "Deployment", "web", "shop"), True),
        ({"kind": "Deployment"}, ("apps", "Deployment", "web", "shop"), False),  # no group: the core group
        ({"kind": "ConfigMap"}, ("", "ConfigMap", "c", "shop"), True),
        ({"group": "*", "kind": "*"}, ("apps", "StatefulSet", "db", "shop"), True),
        ({"group": "apps", "kind": "Deployment", "name": "web"}, ("apps", "Deployment", "api", "shop"), False),
        ({"group": "apps", "kind": "Deployment", "namespace": "shop"}, ("apps", "Deployment", "web", "dev"), False),
        ({"group": "apps", "kind": "Deployment", "name": "web", "namespace": "shop"},
         ("apps", "Deployment", "web", "shop"), True),
    ],
)
def test_rule_matching(rule: dict[str, str], obj: tuple[str, str, str, str], applies: bool) -> None:
    rules, problems = ignore.parse_rules([{**rule, "jsonPointers": ["/spec/replicas"]}])
    assert problems == ()
    assert bool(ignore.for_object(rules, *obj)) is applies


def test_rules_for_one_object_are_their_union_each_entry_once() -> None:
    rules, _ = ignore.parse_rules([
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"], "managedFieldsManagers": ["a"]},
        {"group": "*", "kind": "*", "jsonPointers": ["/spec/replicas", "/metadata/labels"]},
    ])
    got = ignore.for_object(rules, "apps", "Deployment", "web", "shop")
    assert got == Ignore(("/spec/replicas", "/metadata/labels"), (), ("a",))
    assert Ignore.decode(got.encode()) == got
    assert got.encode() == '{"jsonPointers":["/spec/replicas","/metadata/labels"],"managedFieldsManagers":["a"]}'


@pytest.mark.parametrize("text", ["x", "[]", '{"jsonPointers":"/a"}', '{"jqPathExpressions":[1]}'])
def test_an_unreadable_annotation_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="not"):
        Ignore.decode(text)


def test_respect_ignore_differences_applies_the_live_value_of_ignored_fields() -> None:
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 3, "template": copy.deepcopy(DECLARED["spec"]["template"])}}
    obj = live(replicas=9, template=containers(log="fluent:live"))
    rules = Ignore(("/spec/replicas",), ('.spec.template.spec.containers[] | select(.name == "log") | .image',))
    applied = ignore.restore_live(rules, desired, obj)
    assert applied["spec"]["replicas"] == 9
    assert fields.lookup(applied, ("spec", "template", "spec", "containers", fields.ListKey((("name", "log"),)),
                                   "image")) == "fluent:live"
    assert fields.lookup(applied, ("spec", "template", "spec", "containers", fields.ListKey((("name", "web"),)),
                                   "image")) == "nginx:1.27"
    assert desired["spec"]["replicas"] == 3  # not modified in place


def test_respect_ignore_differences_drops_an_ignored_field_the_live_object_lacks() -> None:
    desired = {"spec": {"replicas": 3, "paused": False}}
    applied = ignore.restore_live(Ignore(("/spec/replicas",)), desired, {"spec": {"paused": True}})
    assert applied == {"spec": {"paused": False}}


def test_the_stamp_carries_the_rules_and_reads_them_back() -> None:
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"replicas": 3}}
    source = contract.Source("https://git.example/r.git", "a" * 40, "ann", "2026-01-01T00:00:00Z", "web.yaml")
    rules = Ignore(("/spec/replicas",))
    stamped = contract.stamp(manifest, application="argocd/web", source=source, enforcement="deny", ignore=rules)
    assert stamped["metadata"]["annotations"][contract.ANN_IGNORE] == rules.encode()
    stamp = contract.read_stamp(stamped)
    assert stamp is not None
    assert stamp.ignore == rules
    assert stamp.drift({**stamped, "spec": {"replicas": 5}}) == []
    plain = contract.stamp(manifest, application="argocd/web", source=source, enforcement="deny")
    assert contract.ANN_IGNORE not in plain["metadata"]["annotations"]
    assert [d.path_text for d in contract.read_stamp(plain).drift({**plain, "spec": {"replicas": 5}})] == [  # type: ignore[union-attr]
        "spec.replicas"]


def test_an_unreadable_ignore_annotation_freezes_the_object_like_any_unreadable_stamp() -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {}}
    source = contract.Source("r", "a" * 40, "ann", "t", "c.yaml")
    stamped = contract.stamp(manifest, application="a/b", source=source, enforcement="deny")
    stamped["metadata"]["annotations"][contract.ANN_IGNORE] = "[not rules"
    with pytest.raises(contract.ContractError, match=r"driftguard\.io/ignore-differences"):
        contract.read_stamp(stamped)
