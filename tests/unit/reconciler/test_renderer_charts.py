"""A chart's dependencies, judged before helm runs (``Renderer._missing_dependencies``): no tool needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.renderer import Renderer, RenderError


@pytest.mark.parametrize(("chart_yaml", "outcome"), [
    ("apiVersion: v2\nname: web\nversion: 0.1.0\n", False),
    ("apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- {name: lib, version: 1.0.0, "
     "repository: 'https://charts.example'}\n", True),
    ("apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- {name: lib, version: 1.0.0, "
     "repository: 'file://../../outside'}\n", "leaves the repository"),
    ("apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- {name: lib, version: 1.0.0, "
     "repository: '@stable'}\n", "an alias no configuration here defines"),
    ("- not\n- a mapping\n", "Chart.yaml is not a mapping"),
    ("a: [unclosed\n", "chart/Chart.yaml"),
], ids=["none", "from a repository", "file outside", "alias", "a list", "not YAML"])
def test_dependencies_are_fetched_only_from_a_declared_url(tmp_path: Path, chart_yaml: str,
                                                            outcome: bool | str) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(chart_yaml)
    if isinstance(outcome, bool):
        assert Renderer._missing_dependencies(tmp_path, chart, "chart") is outcome
    else:
        with pytest.raises(RenderError, match=outcome):
            Renderer._missing_dependencies(tmp_path, chart, "chart")


def test_a_vendored_dependency_needs_no_fetch(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    (chart / "charts").mkdir(parents=True)
    (chart / "charts" / "lib-1.0.0.tgz").write_bytes(b"")
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n"
                                      "- {name: lib, version: 1.0.0, repository: 'https://charts.example'}\n")
    assert Renderer._missing_dependencies(tmp_path, chart, "chart") is False
