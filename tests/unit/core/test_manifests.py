"""Parsing git manifests: all or nothing, every error names file and line."""

from __future__ import annotations

import pytest

from driftguard.core.manifests import ManifestError, check_unique, parse_documents
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
