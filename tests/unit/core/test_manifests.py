"""Parsing git manifests: all or nothing, every error names file and line."""

from __future__ import annotations

import pytest

from driftguard.core.manifests import Limits, ManifestError, check_unique, parse_documents
from driftguard.core.objects import ObjectRef

GOOD = """\
# a comment-only document is ignored
---
apiVersion: v1
kind: Namespace
metadata: {name: production}
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: production
spec: {replicas: 3}
"""


def test_multi_document_with_lines() -> None:
    docs = parse_documents(GOOD, "svc/all.yaml")
    assert [(str(d.ref), d.line) for d in docs] == [("Namespace production", 3), ("Deployment production/web", 8)]
    assert docs[1].ref == ObjectRef("apps", "Deployment", "production", "web")


def test_list_is_expanded() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n" \
           "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    assert [d.ref.name for d in parse_documents(text, "l.yaml")] == ["a", "b"]


def test_json_is_yaml() -> None:
    [doc] = parse_documents('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}', "j.json")
    assert doc.ref.name == "j"


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n", "bad.yaml:4", "invalid YAML"),
        ("a: [1, 2\nb: 3\n", "bad.yaml:", "invalid YAML"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "bad.yaml:1", "no kind"),
        ("kind: ConfigMap\nmetadata: {name: a}\n", "bad.yaml:1", "no apiVersion"),
        ("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "bad.yaml:2", "no metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n", "bad.yaml:1", "no metadata.name"),
        ("- just\n- a list\n", "bad.yaml:1", "found list"),
        ("plain text\n", "bad.yaml:1", "found str"),
    ],
)
def test_errors_name_file_and_line(text: str, where: str, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_documents(text, "bad.yaml")
    assert str(info.value).startswith(where) and problem in str(info.value)


def test_duplicates_name_both_files() -> None:
    a = parse_documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "a.yaml")
    b = parse_documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "b.yaml")
    with pytest.raises(ManifestError, match=r"b.yaml:1: ConfigMap x is also declared at a.yaml:1"):
        check_unique(a + b)


HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"


@pytest.mark.parametrize(("body", "data"), [
    pytest.param("  a: b\t\n  c: d\n", {"a": "b", "c": "d"}, id="trailing tab after a value"),
    pytest.param("  a:\tb\n", {"a": "b"}, id="tab after the colon"),
    pytest.param("  a: b\t# note\n", {"a": "b"}, id="tab before a comment"),
    pytest.param("  a: b\n\t\n  c: d\n", {"a": "b", "c": "d"}, id="a blank line holding a tab"),
    pytest.param("  f: {x: '1',\ty: '2'}\n", {"f": {"x": "1", "y": "2"}}, id="tab inside a flow mapping"),
    pytest.param("  a: b\tc\n", {"a": "b\tc"}, id="tab inside a plain scalar"),
    pytest.param("  a: |\n    x\ty\t\n", {"a": "x\ty\t\n"}, id="tabs in a literal block are content"),
    pytest.param('  a: "p\tq"\n', {"a": "p\tq"}, id="tab in a quoted scalar"),
])
def test_tabs_are_read_as_kubectl_reads_them(body: str, data: dict[str, object]) -> None:
    [doc] = parse_documents(HEAD + body, "cm.yaml")
    assert doc.obj["data"] == data


BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param(HEAD + "\tb: c\n", r"^cm.yaml:6: invalid YAML: found character '\\t' that cannot start any token",
                 id="a tab used as indentation (kubectl refuses it too)"),
    pytest.param(HEAD + "  a: b\n  a: c\n",
                 r"^cm.yaml:7: invalid YAML: mapping key 'a' is repeated \(first at line 6\)", id="a repeated key"),
    pytest.param(HEAD.replace("  name: x\n", "  name: x\n  name: y\n"),
                 r"^cm.yaml:5: invalid YAML: mapping key 'name' is repeated", id="a repeated metadata.name"),
    pytest.param(BOMB, r"^cm.yaml:\d+: the document starting at line 1 expands to more than 1,000,000 nodes",
                 id="an alias bomb"),
    pytest.param("a: " + "[" * 20000 + "]" * 20000, r"^cm.yaml:1: nested more than 200 levels deep",
                 id="20,000 levels of nesting"),
    pytest.param("a: " + "[" * 250 + "]" * 250, r"^cm.yaml:1: nested more than 200 levels deep",
                 id="just past the depth limit"),
    pytest.param("a: &x [*x]\n", r"^cm.yaml:1: a YAML alias refers to a node that contains it", id="a recursive alias"),
])
def test_refused_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_documents(text, "cm.yaml")


def test_merge_keys_may_be_overridden() -> None:
    [doc] = parse_documents("x: &base {a: '1', b: '2'}\n" + HEAD + "  <<: *base\n  a: '3'\n", "cm.yaml")
    assert doc.obj["data"] == {"a": "3", "b": "2"}


def test_limits_are_the_callers_to_raise() -> None:
    nested = HEAD + "  a: '" + "x" * 10 + "'\n  n: " + "[" * 150 + "]" * 150 + "\n"
    with pytest.raises(ManifestError, match="nested more than 100 levels"):
        parse_documents(nested, "cm.yaml", Limits(max_depth=100))
    assert parse_documents(nested, "cm.yaml")  # the default (200) admits it
    with pytest.raises(ManifestError, match="expands to more than 10 nodes"):
        parse_documents(HEAD + "  a: b\n  c: d\n", "cm.yaml", Limits(max_nodes=10))
