"""Installing the Application CRD from ``manifests/crd-application.yaml`` (tests, local mode, ``--install-crd``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import yaml

from driftguard.kube.resources import CRDS, Cluster
from reconciler import health

CRD_FILE: Final = Path(__file__).resolve().parents[1] / "manifests" / "crd-application.yaml"


def load(path: Path = CRD_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected one CustomResourceDefinition")
    return document


def install(cluster: Cluster, path: Path = CRD_FILE, *, timeout: float = 30.0) -> None:
    """Server-side apply the CRD and wait until it is Established and served."""
    crd = load(path)
    cluster.apply(crd, rt=CRDS)
    name = crd["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = cluster.get(CRDS, "", name)
        if live is not None and health.assess(live)[0] is health.Health.HEALTHY:
            cluster.discovery.invalidate()
            return
        time.sleep(0.05)
    raise TimeoutError(f"CustomResourceDefinition {name} was not Established within {timeout:.0f}s")
