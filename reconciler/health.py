"""Health of applied objects, from what the cluster reports about them — and only that.

A Deployment is Healthy once its controller has observed the current generation and every replica
is updated and available; before any controller has written a status it is Progressing, honestly:
a bare control plane has no controller-manager, so its Deployments never roll out. Kinds without a
notion of readiness (ConfigMaps, Services...) are Healthy when they exist. A suspended Job or CronJob
and a paused Deployment are Suspended. The worst state wins, in Argo CD's order: Healthy, Suspended,
Progressing, Missing, Degraded, Unknown (health that cannot be told is the worst: it hides anything).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final


class Health(enum.StrEnum):
    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


ORDER: Final = (Health.HEALTHY, Health.SUSPENDED, Health.PROGRESSING, Health.MISSING, Health.DEGRADED, Health.UNKNOWN)
_SEVERITY: Final = {state: i for i, state in enumerate(ORDER)}


def worst(states: Iterable[Health]) -> Health:
    return max(states, key=_SEVERITY.__getitem__, default=Health.HEALTHY)


def assess(obj: Mapping[str, Any]) -> tuple[Health, str]:
    """(health, why) of one live object."""
    kind = str(obj.get("kind", ""))
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    if kind == "Deployment" and spec.get("paused") is True:
        return Health.SUSPENDED, "rollout paused"
    if kind in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"):
        return _workload(kind, obj, status)
    if kind in ("Job", "CronJob") and spec.get("suspend") is True:
        return Health.SUSPENDED, f"{kind.lower()} suspended"
    if kind == "Job":
        return _job(status)
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase", "")
        return ({"Bound": Health.HEALTHY, "Lost": Health.DEGRADED}.get(phase, Health.PROGRESSING),
                f"phase {phase or 'unknown'}")
    if kind == "Pod":
        phase = status.get("phase", "")
        return ({"Running": Health.HEALTHY, "Succeeded": Health.HEALTHY, "Failed": Health.DEGRADED}
                .get(phase, Health.PROGRESSING), f"phase {phase or 'Pending'}")
    if kind == "CustomResourceDefinition":
        return (Health.HEALTHY, "established") if _condition(status, "Established") else (
            Health.PROGRESSING, "not yet established")
    if kind == "Service" and (obj.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress")
        return (Health.HEALTHY, "load balancer ready") if ingress else (
            Health.PROGRESSING, "waiting for a load balancer address")
    return Health.HEALTHY, ""


def _workload(kind: str, obj: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[Health, str]:
    if not status or "observedGeneration" not in status:
        return Health.PROGRESSING, "no controller has reported on it yet"
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return Health.PROGRESSING, "waiting for the controller to observe the new spec"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Health.DEGRADED, str(condition.get("message") or "progress deadline exceeded")
    if kind == "DaemonSet":
        want, updated, ready = (int(status.get(k) or 0) for k in
                                ("desiredNumberScheduled", "updatedNumberScheduled", "numberAvailable"))
    else:
        want = int((obj.get("spec") or {}).get("replicas", 1))
        updated = int(status.get("updatedReplicas", status.get("replicas", 0)) or 0)
        ready = int(status.get("availableReplicas", status.get("readyReplicas", 0)) or 0)
    if updated < want or ready < want:
        return Health.PROGRESSING, f"{min(updated, ready)}/{want} replicas updated and available"
    return Health.HEALTHY, f"{want}/{want} replicas available"


def _job(status: Mapping[str, Any]) -> tuple[Health, str]:
    if _condition(status, "Failed"):
        return Health.DEGRADED, "job failed"
    if _condition(status, "Complete"):
        return Health.HEALTHY, "job complete"
    return Health.PROGRESSING, "job running"


def _condition(status: Mapping[str, Any], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])
