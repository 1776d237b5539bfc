"""A HorizontalPodAutoscaler on a managed object whose replicas git declares: say what will happen. Pure.

An HPA scales its target through ``*/scale``. When git declares the target's ``spec.replicas`` (and no
``spec.ignoreDifferences`` rule takes it out), driftguard denies every one of those scales (``deny``), or
admits each and has the reconciler put git's count back (``warn``): the autoscaler can never work. Creating
such an HPA (or pointing one at such a target) is admitted — the HPA itself is not driftguard's — with
warnings that say so and name the two fixes: remove ``replicas`` from git, or ignore ``/spec/replicas``.

HPAs carry no ``driftguard.io/managed`` label, so the ``autoscalers`` webhook entry has no objectSelector
and ``failurePolicy: Ignore`` (it only ever warns: a webhook outage must not block HPA writes). The target
is read as a scale request's parent is (``kubeio.ClusterAccess.read_parent``, path from ``target_path``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from driftguard.core import contract, fields, ignore
from driftguard.core.contract import ContractError
from driftguard.core.objects import ObjectRef, split_api_version
from webhook import messages
from webhook.edits import STAMPS
from webhook.reviews import KubeObject, Request

GROUP: Final = "autoscaling"
KIND: Final = "HorizontalPodAutoscaler"
RESOURCE: Final = "horizontalpodautoscalers"
# Targets whose plural is known without discovery (a custom resource with a scale subresource is not read).
PLURALS: Final[Mapping[tuple[str, str], str]] = {
    ("apps", "Deployment"): "deployments", ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets", ("", "ReplicationController"): "replicationcontrollers",
}
REPLICAS: Final = ("spec", "replicas")


def is_autoscaler(request: Request) -> bool:
    """A CREATE or UPDATE of an HPA itself (not its status)."""
    kind = request.get("kind") or {}
    return ((kind.get("group"), kind.get("kind")) == (GROUP, KIND) and not request.get("subResource")
            and request.get("operation") in ("CREATE", "UPDATE"))


def target(obj: Mapping[str, Any] | None, namespace: str) -> ObjectRef | None:
    """The object ``spec.scaleTargetRef`` names, when it is a kind this module can read."""
    ref = ((obj or {}).get("spec") or {}).get("scaleTargetRef")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref.get("name"):
        return None
    group, _ = split_api_version(str(ref.get("apiVersion") or ""))
    kind = str(ref.get("kind") or "")
    if (group, kind) not in PLURALS:
        return None
    return ObjectRef(group, kind, namespace, ref["name"])


def needs_target(request: Request) -> bool:
    """Whether to read the target: a new HPA, or one pointed at another object, that is not itself git's."""
    if not is_autoscaler(request) or contract.is_managed(request.get("object")):
        return False
    namespace = request.get("namespace", "")
    now = target(request.get("object"), namespace)
    if now is None:
        return False
    return request["operation"] == "CREATE" or target(request.get("oldObject"), namespace) != now


def target_path(request: Request) -> str:
    """The URL path of the HPA's target (``needs_target`` holds)."""
    ref = target(request.get("object"), request.get("namespace", ""))
    assert ref is not None
    version = str(((request.get("object") or {}).get("spec") or {}).get("scaleTargetRef", {}).get("apiVersion"))
    prefix = f"/apis/{version}" if ref.group else f"/api/{version}"
    return f"{prefix}/namespaces/{quote(ref.namespace)}/{PLURALS[(ref.group, ref.kind)]}/{quote(ref.name)}"


def warnings(request: Request, found: KubeObject | None, error: str = "") -> list[str]:
    """What to tell whoever writes this HPA about its target (``found``: as read; None: absent)."""
    hpa = ObjectRef(GROUP, KIND, request.get("namespace", ""), request.get("name", "")
                    or str(((request.get("object") or {}).get("metadata") or {}).get("name", "")))
    ref = target(request.get("object"), request.get("namespace", ""))
    if ref is None:
        return []
    if error:
        return messages.split(f"driftguard: could not read {ref} to check whether git declares its replicas "
                              f"({error}); if it does, every scale {hpa} makes will be denied")
    if found is None:
        return []
    try:
        stamp = STAMPS.read(found)
    except ContractError:
        return []
    if stamp is None or stamp.enforcement == "off":
        return []
    masked = ignore.mask(stamp.ignore, stamp.declared, found)
    replicas = fields.lookup(masked.declared, REPLICAS)
    if replicas is fields.MISSING:
        return []
    return messages.autoscaler_warnings(hpa, ref, stamp, fields.render_value(replicas))
