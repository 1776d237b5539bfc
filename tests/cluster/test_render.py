"""The render tools inside the image, proven in the cluster: an Application whose path on the in-cluster
git server is a Kustomize overlay (a base with a ConfigMap and a Deployment, an overlay with
``namePrefix``, a ``configMapGenerator`` and a patch) syncs through the reconciler pod as ``make deploy``
installed it. The manifests pass no ``--kustomize`` flag, so the pod runs the ``kustomize`` on its PATH,
the one the Dockerfile copies into /usr/local/bin (``stage_render_tools``); ``status.sync.renderedBy``
names its version and the overlay's objects exist under their prefixed names, stamped as managed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.real_cluster import SYSTEM, Deployed, Repo, eventually, pause_deployment

NS = "rendered"
APP = "rendered"
PATH_IN_REPO = "apps/rendered"

BASE = {
    "kustomization.yaml": "resources: [configmap.yaml, deployment.yaml]\n",
    "configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  LOG_LEVEL: info\n",
    "deployment.yaml": pause_deployment("web"),
}
OVERLAY = {
    "kustomization.yaml": f"""\
namespace: {NS}
namePrefix: prod-
resources: [../../base]
configMapGenerator:
  - name: flags
    literals: [color=blue]
patches:
  - target: {{kind: Deployment, name: web}}
    patch: '[{{"op": "replace", "path": "/spec/replicas", "value": 2}}]'
""",
}


def managed(deployed: Deployed, kind: str) -> list[dict[str, Any]]:
    return list(deployed.must(kind, "-n", NS, "-l", "driftguard.io/managed=true")["items"])


@pytest.mark.timeout(420)
def test_a_kustomize_overlay_is_rendered_by_the_kustomize_in_the_image(deployed: Deployed, tmp_path: Path) -> None:
    repo = Repo(tmp_path / "work", deployed.cluster.git_root / "rendered.git", PATH_IN_REPO)
    for folder, files in (("base", BASE), ("overlays/prod", OVERLAY)):
        (repo.work / PATH_IN_REPO / folder).mkdir(parents=True)
        for name, text in files.items():
            (repo.work / PATH_IN_REPO / folder / name).write_text(text)
    commit = repo.commit("rendered: a kustomize base and a prod overlay")

    deployed.kubectl_run("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": NS}}))
    deployed.apply_application(APP, repo="rendered", path=f"{PATH_IN_REPO}/overlays/prod", namespace=NS)
    status = eventually(lambda: deployed.synced(APP, commit), "the kustomize Application Synced by the reconciler pod",
                        timeout=240)
    rendered_by = status["sync"].get("renderedBy", "")
    assert rendered_by.startswith("kustomize v5.8.1"), status["sync"]

    [web] = managed(deployed, "deployments")
    assert web["metadata"]["name"] == "prod-web" and web["spec"]["replicas"] == 2, web["metadata"]
    configmaps = sorted(c["metadata"]["name"] for c in managed(deployed, "configmaps"))
    assert "prod-settings" in configmaps, configmaps
    [flags] = [name for name in configmaps if name.startswith("prod-flags-")]
    assert len(flags) == len("prod-flags-") + 10, "configMapGenerator's hash suffix"
    eventually(lambda: (deployed.must("deployment", "prod-web", "-n", NS).get("status") or {}).get("readyReplicas")
               == 2, "the rendered Deployment's pods Ready")

    # the pod ran the tool on its PATH: what the image carries, at the version the status names
    selector = "app.kubernetes.io/name=driftguard-reconciler"
    pods = deployed.must("pods", "-n", SYSTEM, "-l", selector)["items"]
    assert pods, "no reconciler pod"
    version = deployed.kubectl_run("exec", "-n", SYSTEM, pods[0]["metadata"]["name"], "--", "kustomize", "version")
    assert version.stdout.strip().startswith("v5.8.1"), version.stdout

    # leave nothing syncing for the modules after this one (its objects stay, unguarded)
    deployed.kubectl_run("delete", "application", APP, "-n", SYSTEM, "--wait=true", timeout=120)
