"""Parsing git manifests: all or nothing, every error names file and line."""

from __future__ import annotations

import random

import pytest

from driftguard.core import manifests
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
        ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": "j"}', "bad.yaml:1", "no metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n- name: x\n", "bad.yaml:1", "no metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: !!set b\n", "bad.yaml:4",
         "invalid YAML: expected a mapping node, but found scalar"),
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


# Two readers: libyaml's parser (fast) where PyYAML has it, and the pure-Python one (the reference, with the
# tab handling above) for text holding what libyaml reads differently. They must never disagree.
AGREE = [
    GOOD,
    HEAD + "  a: b\n  c: d\n",
    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: &n cm\n  labels: {a: *n, 'q k': \"x\"}\n"
    "data:\n  lit: |+\n    keep\n\n  fold: >2\n      indented\n    more\n  strip: |-\n    s\n"
    "  esc: \"\\u263A \\x41 \\\n    continued\"\n  multi: 'one\n    two'\n"
    "  n: [0x1F, 1_000, -.inf, .NaN, +12, 0b101, 1:20, 2001-12-14, yes, Off, ~, '']\n  empty:\n"
    "  nested:\n  - - a\n  - {x: [1, {y: z}]}\n...\n---\n# a comment\n",
    "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: crlf\r\ndata:\r\n  k: |\r\n    l1\r\n    l2\r\n"
    "  url: http://x.org/a#frag\r\n",
    "%YAML 1.1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"\\u00e9\"}\ndata: {a: \u2028b, c: \x85 d}\n",
    '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"a": "b\\n"}}',
    BOMB,
    "a: " + "[" * 250 + "]" * 250,
    HEAD + "  a: b\n  a: c\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: [1, 2\n",
    "a: &x [*x]\n",
    "x: &base {a: '1'}\n" + HEAD + "  <<: *base\n  b: '2'\n",
]


def _read(text: str) -> object:
    try:
        return [(m.obj, m.line) for m in parse_documents(text, "cm.yaml")]
    except ManifestError as e:
        return str(e)


def _reference(text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(manifests, "_WITH_LIBYAML", False)
        return _read(text)


@pytest.mark.parametrize("text", AGREE)
def test_libyaml_reads_as_the_reference(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not manifests._REFERENCE_ONLY.search(text)
    assert _read(text) == _reference(text, monkeypatch)


def test_libyaml_is_the_reader_for_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    assert manifests._WITH_LIBYAML, "PyYAML without libyaml: every render takes the pure-Python reader (slow)"
    monkeypatch.setattr(manifests, "_Loader", None)  # the reference reader is not asked
    assert [d.ref.name for d in parse_documents(HEAD + "  a: b\n", "cm.yaml")] == ["x"]
    with pytest.raises(TypeError):  # a tab needs the reference
        parse_documents(HEAD + "  a:\tb\n", "cm.yaml")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"c": [n?ull]}}',
                 "cm.yaml:1: invalid YAML: expected ',' or ']', but got '?'", id="? in a flow plain scalar"),
    pytest.param(HEAD + "  a: b\n\ufeff", "cm.yaml:7: invalid YAML: could not find expected ':'",
                 id="a byte order mark after the start"),
    pytest.param(HEAD + "  a: >#c\n    x\n", "cm.yaml:6: invalid YAML: expected chomping or indentation "
                 "indicators, but found '#'", id="a comment glued to a block scalar's header"),
    pytest.param(HEAD + "  f: {a: !!str, b: c}\n", "cm.yaml:6: invalid YAML: expected ',' or '}', but got ':'",
                 id="a tag before a comma in a flow mapping"),
])
def test_what_libyaml_reads_differently_is_read_by_the_reference(text: str, message: str) -> None:
    # libyaml accepts each of these; PyYAML's reader (and, for the first two, kubectl's go-yaml) refuses it
    assert manifests._REFERENCE_ONLY.search(text)
    with pytest.raises(ManifestError) as info:
        parse_documents(text, "cm.yaml")
    assert str(info.value) == message


FUZZ_ALPHABET = [*":-[]{}#&*|>'\"%@`,~.=09aZ\n\r \\\x00\x85\u2028\u00e9", "  ", "\n  ", ": ", "- ", "---\n", "...\n"]


def test_the_readers_agree_on_mutated_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261203)
    compared = 0
    for _ in range(600):
        text = rng.choice(AGREE[:6])
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(text) + 1)
            cut = rng.choice((0, 0, 1, 3))
            text = text[:at] + (rng.choice(FUZZ_ALPHABET) if rng.random() < 0.7 else "") + text[at + cut:]
        if manifests._REFERENCE_ONLY.search(text):
            continue
        assert _read(text) == _reference(text, monkeypatch), repr(text)
        compared += 1
    assert compared > 400
