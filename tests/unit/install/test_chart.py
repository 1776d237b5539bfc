"""The Helm chart is generated from manifests/ (``make chart``), so it cannot drift from the kustomize base.

Here, without helm: the committed chart is byte for byte what the generator renders now (no file more,
none less), every value is used by a template, and the generator refuses a base whose shape it no
longer templates. That `helm template` with the defaults renders exactly `kustomize build manifests/`
is proven with the real tools in tests/integration/install/test_chart_render.py.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftguard.install import manifests_dir
from driftguard.install.chart import ChartError, render_chart, write_chart

CHART = manifests_dir().parent / "charts" / "driftguard"


def test_the_committed_chart_is_what_make_chart_generates() -> None:
    rendered = render_chart()
    committed = {str(p.relative_to(CHART)): p.read_text() for p in CHART.rglob("*") if p.is_file()}
    assert set(committed) == set(rendered), "run `make chart`"
    stale = sorted(name for name in rendered if committed[name] != rendered[name])
    assert not stale, f"run `make chart`: {stale} differ from manifests/"


def test_every_manifest_is_a_template_and_nothing_else_is() -> None:
    kustomization = yaml.safe_load((manifests_dir() / "kustomization.yaml").read_text())
    templates = {name for name in render_chart() if name.startswith("templates/") and name.endswith(".yaml")}
    assert templates == {f"templates/{resource}" for resource in kustomization["resources"]}


def leaves(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value and not prefix.endswith(".resources"):
        return [leaf for key, child in value.items() for leaf in leaves(child, f"{prefix}.{key}")]
    return [prefix]


def test_every_value_is_used_by_a_template_and_every_template_value_exists() -> None:
    chart = render_chart()
    values = yaml.safe_load(chart["values.yaml"])
    defined = {f".Values{leaf}" for leaf in leaves(values)}
    used = {match for name, text in chart.items() if name.startswith("templates/")
            for match in re.findall(r"\.Values(?:\.\w+)+", text)}
    assert defined, "no values"
    assert used == defined


def test_defaults_are_the_base_values() -> None:
    values = yaml.safe_load(render_chart()["values.yaml"])
    assert values["image"] == {"repository": "driftguard", "tag": "dev", "pullPolicy": "IfNotPresent"}
    assert values["webhook"]["replicas"] == values["reconciler"]["replicas"] == 2
    assert values["webhook"]["resources"]["limits"] == {"memory": "256Mi"}
    assert values["webhook"]["networkPolicy"]["podCIDRs"] == ["10.244.0.0/16"]


def edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        path = directory / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}: the case no longer tests anything"
        path.write_text(text.replace(old, new, 1))
    return apply


@pytest.mark.parametrize(("change", "message"), [
    (edit("webhook.yaml", "  replicas: 2\n", ""), "Deployment driftguard-webhook: expected exactly one line `replicas"),
    (edit("reconciler.yaml", "image: driftguard:dev", "image: driftguard@sha256:00"), "not repository:tag"),
    (edit("reconciler.yaml", "image: driftguard:dev", "image: other:dev"), "differs from the other Deployment"),
    (edit("webhook.yaml", "          resources:\n", "          resourcez:\n"), "a `resources:` block"),
    (edit("networkpolicy-webhook.yaml", "except: [10.244.0.0/16]", "except:\n              - 10.244.0.0/16"),
     "expected exactly one line"),
], ids=["replicas-gone", "digest", "two-images", "resources-gone", "networkpolicy-shape"])
def test_the_generator_refuses_a_base_it_no_longer_templates(tmp_path: Path, change: Callable[[Path], None],
                                                             message: str) -> None:
    base = tmp_path / "manifests"
    shutil.copytree(manifests_dir(), base)
    shutil.copy(manifests_dir().parent / "pyproject.toml", tmp_path / "pyproject.toml")
    render_chart(base)  # the copy renders before the change
    change(base)
    with pytest.raises(ChartError, match=re.escape(message)):
        render_chart(base)


def test_write_chart_removes_files_the_chart_no_longer_has(tmp_path: Path) -> None:
    target = tmp_path / "driftguard"
    (target / "templates").mkdir(parents=True)
    (target / "templates" / "gone.yaml").write_text("kind: Gone\n")
    written = write_chart(target)
    assert written and not (target / "templates" / "gone.yaml").exists()
    assert {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} == set(render_chart())
