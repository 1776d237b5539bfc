"""Render: which files count, all-or-nothing parsing with file:line errors."""

from __future__ import annotations

import pytest

from driftguard.core.manifests import Limits, ManifestError
from reconciler.render import render

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"


def test_multi_document_list_and_json_in_path_order() -> None:
    files = [
        ("app/z.json", b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "json"}}'),
        ("app/a.yaml", (CM.format("one") + "---\n# comment only\n---\n" + CM.format("two")).encode()),
        ("app/list.yaml", b"apiVersion: v1\nkind: List\nitems:\n- " + CM.format("three").replace("\n", "\n  ")
         .encode()),
    ]
    names = [m.ref.name for m in render(files)]
    assert names == ["one", "two", "three", "json"]


def test_line_numbers_point_at_the_document() -> None:
    manifests = render([("app/a.yaml", ("---\n" + CM.format("one") + "---\n" + CM.format("two")).encode())])
    assert [(m.path, m.line) for m in manifests] == [("app/a.yaml", 2), ("app/a.yaml", 7)]


@pytest.mark.parametrize(("content", "message"), [
    (CM.format("x") + "data:\n  a: b: c\n", "app/bad.yaml:6: invalid YAML: mapping values are not allowed here"),
    ("apiVersion: v1\nmetadata:\n  name: x\n", "app/bad.yaml:1: object has no kind"),
    (CM.format("ok") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
     "app/bad.yaml:6: ConfigMap has no metadata.name (only a hook, annotated argocd.argoproj.io/hook, may use "
     "metadata.generateName instead)"),
    ("- just\n- a list\n", "app/bad.yaml:1: expected a Kubernetes object (a mapping), found list"),
])
def test_errors_name_file_and_line(content: str, message: str) -> None:
    with pytest.raises(ManifestError) as error:
        render([("app/good.yaml", CM.format("good").encode()), ("app/bad.yaml", content.encode())])
    assert str(error.value) == message


def test_duplicates_across_files_are_refused() -> None:
    with pytest.raises(ManifestError, match=r"^app/b.yaml:1: ConfigMap x is also declared at app/a.yaml:1$"):
        render([("app/a.yaml", CM.format("x").encode()), ("app/b.yaml", CM.format("x").encode())])


def test_non_utf8_is_an_error_and_a_bom_is_not() -> None:
    assert render([("a.yaml", b"\xef\xbb\xbf" + CM.format("bom").encode())])[0].ref.name == "bom"
    with pytest.raises(ManifestError, match=r"^a.yaml:1: not UTF-8 text"):
        render([("a.yaml", b"\xff\xfe\x00")])


def test_nothing_rendered_is_an_empty_list() -> None:
    assert render([]) == []


def test_a_path_over_the_object_limit_is_refused_and_the_parse_limits_apply() -> None:
    files = [(f"app/{i}.yaml", CM.format(f"cm{i}").encode()) for i in range(3)]
    assert len(render(files, max_objects=3)) == 3
    with pytest.raises(ManifestError, match=r"more than 2 objects \(--max-objects\)"):
        render(files, max_objects=2)
    text = CM.format("deep") + "extra: " + "[" * 30 + "]" * 30 + "\n"
    deep = [("app/deep.yaml", text.encode())]
    with pytest.raises(ManifestError, match="nested more than 20 levels deep"):
        render(deep, limits=Limits(max_depth=20))
