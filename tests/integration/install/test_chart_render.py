"""The Helm chart renders, with the real helm, exactly what the real kustomize renders from manifests/.

helm and kustomize come from ``resolve_render_tools()`` (``make tools``). Objects are compared parsed
(helm's ``# Source:`` comments and either tool's key order and quoting do not matter), by identity and
then whole. With values set, the render differs from the base in exactly the fields those values name.
No API server is needed (the chart is installed into a real cluster in tests/cluster/test_helm_chart.py).
"""

from __future__ import annotations

import copy
import difflib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftguard.install import manifests_dir
from driftguard.local.controlplane.binaries import resolve_render_tools

pytestmark = pytest.mark.integration

CHART = manifests_dir().parent / "charts" / "driftguard"
Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    return resolve_render_tools()


def run(*command: str | Path) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def by_identity(rendered: str) -> dict[Key, dict[str, Any]]:
    objects: dict[Key, dict[str, Any]] = {}
    for document in yaml.safe_load_all(rendered):
        if not document:
            continue
        meta = document["metadata"]
        key = (document["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in objects, f"{key} rendered twice"
        objects[key] = document
    return objects


def helm_template(tools: dict[str, Path], *args: str) -> dict[Key, dict[str, Any]]:
    return by_identity(run(tools["helm"], "template", "driftguard", CHART, *args))


def assert_same(rendered: dict[Key, dict[str, Any]], expected: dict[Key, dict[str, Any]]) -> None:
    assert expected, "kustomize rendered nothing"
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        if rendered[key] != obj:
            diff = difflib.unified_diff(json.dumps(obj, indent=1, sort_keys=True).splitlines(),
                                        json.dumps(rendered[key], indent=1, sort_keys=True).splitlines(),
                                        "kustomize build manifests/", "helm template charts/driftguard", lineterm="")
            pytest.fail(f"{key} differs:\n" + "\n".join(diff), pytrace=False)


def test_helm_lint_is_clean(tools: dict[str, Path]) -> None:
    output = run(tools["helm"], "lint", "--strict", CHART)
    assert "0 chart(s) failed" in output, output


def test_helm_template_with_defaults_renders_exactly_kustomize_build(tools: dict[str, Path]) -> None:
    kustomized = by_identity(run(tools["kustomize"], "build", manifests_dir()))
    assert {kind for kind, _, _ in kustomized} >= {"Namespace", "CustomResourceDefinition", "Deployment",
                                                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    assert_same(helm_template(tools), kustomized)


def test_values_change_exactly_the_fields_they_name(tools: dict[str, Path], tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example.org/platform/driftguard", "tag": "0.1.0", "pullPolicy": "Always"},
        "webhook": {"replicas": 3, "resources": {"requests": {"cpu": "250m", "memory": "192Mi"},
                                                 "limits": {"memory": "384Mi"}},
                    "networkPolicy": {"podCIDRs": ["10.42.0.0/16", "fd00:42::/56"]}},
        "reconciler": {"replicas": 1, "resources": {"requests": {"cpu": "50m", "memory": "256Mi"},
                                                    "limits": {"memory": "1Gi"}}},
        "ui": {"replicas": 1, "resources": {"requests": {"cpu": "20m", "memory": "128Mi"},
                                            "limits": {"memory": "256Mi"}}},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    expected = copy.deepcopy(by_identity(run(tools["kustomize"], "build", manifests_dir())))
    for component in ("webhook", "reconciler", "ui"):
        deployment = expected[("Deployment", "driftguard-system", f"driftguard-{component}")]
        deployment["spec"]["replicas"] = values[component]["replicas"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        container["image"] = "registry.example.org/platform/driftguard:0.1.0"
        container["imagePullPolicy"] = "Always"
        container["resources"] = values[component]["resources"]
    policy = expected[("NetworkPolicy", "driftguard-system", "driftguard-webhook")]
    policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["except"] = ["10.42.0.0/16", "fd00:42::/56"]
    assert_same(helm_template(tools, "-f", str(tmp_path / "values.yaml")), expected)

    # --set works too, and a tag that YAML would read as a number stays a string
    rendered = helm_template(tools, "--set-string", "image.tag=1.10", "--set", "webhook.replicas=4")
    webhook = rendered[("Deployment", "driftguard-system", "driftguard-webhook")]
    assert webhook["spec"]["replicas"] == 4
    assert webhook["spec"]["template"]["spec"]["containers"][0]["image"] == "driftguard:1.10"
