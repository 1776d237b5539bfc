"""Where a standby passes a sync on to: the leader's Pod, only when it is a running Pod of the reconciler's
ServiceAccount with an IP and a container port named http (``reconciler.service.pod_url``)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.service import pod_url

SA = "driftguard-reconciler"


def pod(*, sa: str = SA, phase: str = "Running", ip: str = "10.0.0.7", ports: list[dict[str, Any]] | None = None,
        deleting: bool = False) -> dict[str, Any]:
    declared = [{"name": "http", "containerPort": 8080}] if ports is None else ports
    return {"metadata": {"name": "r-0", **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "reconciler", "ports": declared}]},
            "status": {"phase": phase, "podIP": ip}}


@pytest.mark.parametrize(("given", "url"), [
    (pod(), "http://10.0.0.7:8080"),
    (pod(ip="fd00::7"), "http://[fd00::7]:8080"),
    (pod(ports=[{"name": "metrics", "containerPort": 9090}, {"name": "http", "containerPort": 8081}]),
     "http://10.0.0.7:8081"),
    (pod(sa="someone-else"), None),  # a Pod of another ServiceAccount is not one of ours: nothing is sent to it
    (pod(phase="Pending"), None),
    (pod(ip=""), None),
    (pod(ports=[]), None),
    (pod(ports=[{"name": "http", "containerPort": "8080"}]), None),
    (pod(deleting=True), None),
    ({}, None),
])
def test_pod_url(given: dict[str, Any], url: str | None) -> None:
    assert pod_url(given, SA) == url
