"""Installing driftguard's CRDs — ``manifests/crd-application.yaml`` and ``crd-project.yaml`` — (tests, local
mode, ``--install-crd``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import yaml

from driftguard.core import projects
from driftguard.kube import KubeError
from driftguard.kube.resources import CRDS, Cluster, ResourceType
from reconciler import application, health

APPLICATIONS: Final = ResourceType(application.GROUP, application.VERSION, application.KIND, "applications",
                                  namespaced=True)
PROJECTS: Final = ResourceType(projects.GROUP, projects.VERSION, projects.KIND, projects.PLURAL, namespaced=True)
CRD_FILE: Final = Path(__file__).resolve().parents[1] / "manifests" / "crd-application.yaml"
PROJECT_CRD_FILE: Final = CRD_FILE.with_name("crd-project.yaml")


def load(path: Path = CRD_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected one CustomResourceDefinition")
    return document


def install(cluster: Cluster, *paths: Path, timeout: float = 30.0) -> None:
    """Server-side apply the CRDs (default: Application and Project) and wait until each is Established
    and its resource answers a list."""
    for path in paths or (CRD_FILE, PROJECT_CRD_FILE):
        crd = load(path)
        cluster.apply(crd, rt=CRDS)
        wait_established(cluster, crd, timeout=timeout)


def wait_established(cluster: Cluster, crd: dict[str, Any], *, timeout: float = 30.0) -> None:
    """Until the CRD is Established and its resource answers a list; then refresh discovery."""
    name = crd["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = cluster.get(CRDS, "", name)
        if live is not None and health.assess(live)[0] is health.Health.HEALTHY and _served(cluster, crd):
            cluster.discovery.invalidate()
            return
        time.sleep(0.05)
    raise TimeoutError(f"CustomResourceDefinition {name} was not Established within {timeout:.0f}s")


def _served(cluster: Cluster, crd: dict[str, Any]) -> bool:
    """Established is not yet served: a fresh API server can answer 404 for a moment longer."""
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    try:
        cluster.kube.request("GET", f"/apis/{spec['group']}/{version}/{spec['names']['plural']}", query={"limit": "1"})
    except KubeError:
        return False
    return True
