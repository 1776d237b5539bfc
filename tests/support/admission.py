"""Builders for admission tests: git manifests, the live objects the reconciler stamps, reviews.

Live objects look like what the API server returns: the stamp plus server-set metadata and defaults
git never declared, so tests exercise "defaulted fields are never compared".
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, cast

from driftguard.core import contract
from driftguard.core.contract import Enforcement, Source
from driftguard.core.marks import MarkKey, Marks
from driftguard.core.names import RECONCILER_USER
from webhook.reviews import Review
from webhook.settings import Settings

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
REPO = "https://github.com/org/k8s-manifests"
SOURCE = Source(
    repo=REPO,
    commit="1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
    author="alice@org",
    committed_at="2024-05-01T10:00:00Z",
    path="services/my-service/production/deployment.yaml",
)
LAPTOP = "laptop"
SRE_GROUP = "sre"
SETTINGS = Settings(break_glass_groups=(SRE_GROUP,))
LIVE_UID = "0b1c2d3e-uid"  # live()'s uid
MARK_KEY = MarkKey(b"admission-tests-mark-key-32bytes")
MARKS = Marks(MARK_KEY, dt.timedelta(hours=1))  # sealed for live()'s uid


def deployment_manifest() -> dict[str, Any]:
    """What git declares for Deployment production/my-service."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "my-service", "namespace": "production", "labels": {"app": "my-service"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "my-service"}},
            "template": {
                "metadata": {"labels": {"app": "my-service"}, "annotations": {"team": "payments"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example/my-service:1.4.2",
                            "ports": [{"containerPort": 8080}, {"containerPort": 9090, "name": "metrics"}],
                            "env": [{"name": "MODE", "value": "production"}, {"name": "WORKERS", "value": "4"}],
                            "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
                        },
                        {"name": "sidecar", "image": "registry.example/proxy:2.0"},
                    ],
                    "nodeSelector": None,
                },
            },
        },
    }


def live(manifest: dict[str, Any] | None = None, enforcement: Enforcement = "deny") -> dict[str, Any]:
    """The stamped object as the API server stores it: stamp, server metadata, defaults."""
    obj = contract.stamp(
        manifest or deployment_manifest(),
        application="driftguard-system/my-service",
        source=SOURCE,
        enforcement=enforcement,
    )
    metadata = obj["metadata"]
    metadata.update({"uid": LIVE_UID, "resourceVersion": "1201", "generation": 4,
                     "creationTimestamp": "2024-05-01T10:01:00Z"})
    if obj.get("kind") == "Deployment":
        spec = obj["spec"]
        spec.update({"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}})
        pod = spec["template"]["spec"]
        pod.update({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"})
        pod.pop("nodeSelector", None)
        for container in pod["containers"]:
            container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
            for port in container.get("ports", []):
                port["protocol"] = "TCP"
        pod["containers"][0]["resources"]["limits"]["cpu"] = "1"
        obj["status"] = {"replicas": 3, "readyReplicas": 3}
    return obj


def edited(obj: dict[str, Any], *path_and_value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``path = value`` set (``...`` as value deletes)."""
    out = copy.deepcopy(obj)
    *path, value = path_and_value
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def review(
    operation: str,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    user: str = LAPTOP,
    groups: tuple[str, ...] = ("engineers", "system:authenticated"),
    subresource: str = "",
    dry_run: bool = False,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    extra: dict[str, list[str]] | None = None,
) -> Review:
    """An AdmissionReview; ``extra`` defaults to what a real token for ``user`` carries (``extras_for``)."""
    obj = new or old or {}
    group, _, version = str(obj.get("apiVersion", "apps/v1")).rpartition("/")
    kind = str(obj.get("kind", "Deployment"))
    metadata = obj.get("metadata") or {}
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": user, "groups": list(groups), "extra": extras_for(user) if extra is None else extra},
        "object": new,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if subresource:
        request["subResource"] = subresource
    return cast(Review, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})


def scale_review(replicas: int | None, *, old_replicas: int = 3, user: str = LAPTOP,
                 groups: tuple[str, ...] = ("engineers",)) -> Review:
    def scale(count: int | None) -> dict[str, Any]:
        spec = {} if count is None else {"replicas": count}
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "my-service", "namespace": "production"}, "spec": spec}

    built = review("UPDATE", new=scale(replicas), old=scale(old_replicas), user=user, groups=groups,
                   subresource="scale")
    request = cast(dict[str, Any], built["request"])
    request["kind"] = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    request["resource"] = {"group": "apps", "version": "v1", "resource": "deployments"}
    return built


RECONCILER = RECONCILER_USER
CREDENTIAL = {"authentication.kubernetes.io/credential-id": ["JTI=6020b3c3-102a-491d-8ce3-522a7040550e"]}
POD_BOUND = {**CREDENTIAL, "authentication.kubernetes.io/pod-name": ["driftguard-reconciler-7d9f8c-x2x4q"],
             "authentication.kubernetes.io/pod-uid": ["dfc03159-7068-4733-8856-be87e3c22ac7"]}


def extras_for(user: str) -> dict[str, list[str]]:
    """``userInfo.extra`` of a real credential: the reconciler's pod-bound token, others' plain tokens."""
    if user == RECONCILER:
        return POD_BOUND
    return CREDENTIAL if user.startswith("system:serviceaccount:") else {}


def apply_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply the ``add`` operations a mutating webhook returns (all driftguard ever emits)."""
    out = copy.deepcopy(obj)
    for op in patch:
        assert op["op"] == "add", op
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = out
        for key in parents:
            target = target[key]
        target[last] = op["value"]
    return out
