"""``driftguard import argocd``: Argo CD Applications and AppProjects as driftguard ones, and what did not carry.

One mechanism decides what carries over: driftguard's own CRD schemas (``manifests/crd-application.yaml``,
``crd-project.yaml``). Every field of an Argo CD object's ``spec`` that the driftguard schema has is kept
(recursively, list items included); every other one is dropped and named in the report, with a reason where
driftguard does something else on purpose (``roles``: Kubernetes RBAC; ``syncWindows``: none). The result is
then read by the parser the reconciler itself uses (``parse_application`` / ``parse_project``), and its
problems and warnings are reported too — so what the report says is what driftguard would say. An object whose
destination is another cluster, or that driftguard would refuse outright, is not emitted.

Metadata: the name is kept; an object in Argo CD's namespace (``argocd``) moves to driftguard's
(``driftguard-system``), one elsewhere ("apps in any namespace") keeps its namespace; labels and annotations
are kept except Argo CD's own (``argocd.argoproj.io/…``, ``notifications.argoproj.io/…``, named in the report)
and kubectl's last-applied; Argo CD's cascading finalizer ``resources-finalizer.argocd.argoproj.io`` is kept —
driftguard honours the same name — and any other finalizer is dropped and named. Pure: reading files or a
live cluster is the caller's.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from driftguard.core import projects
from driftguard.core.names import NAMESPACE
from reconciler.application import IN_CLUSTER, IN_CLUSTER_NAME, parse_application
from reconciler.crd import CRD_FILE, PROJECT_CRD_FILE, load

ARGO_GROUP: Final = "argoproj.io"
ARGO_NAMESPACE: Final = "argocd"
CASCADE_FINALIZER: Final = "resources-finalizer.argocd.argoproj.io"
KINDS: Final = {"Application": "Application", "AppProject": projects.KIND}
DROPPED_PREFIXES: Final = ("argocd.argoproj.io/", "notifications.argoproj.io/")
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# Why a field is not carried, where driftguard does it another way on purpose (the rest: not in its schema).
WHY: Final[Mapping[str, str]] = {
    "roles": "project roles and their tokens: driftguard uses Kubernetes RBAC on Applications instead",
    "syncWindows": "driftguard has no sync windows",
    "signatureKeys": "GnuPG key IDs: see the README for verifying commits in driftguard",
    "orphanedResources": "driftguard does not monitor orphaned resources",
    "info": "informational only",
}


@dataclass
class Converted:
    """One Argo CD object: the driftguard object (None: not emitted) and what the report says about it."""

    origin: str  # "Application argocd/guestbook"
    obj: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # carried, but read this
    dropped: list[str] = field(default_factory=list)  # fields not carried over
    refused: str = ""  # why nothing was emitted


@dataclass(frozen=True)
class Schemas:
    application: Mapping[str, Any]
    project: Mapping[str, Any]

    @classmethod
    def load(cls, application: Path = CRD_FILE, project: Path = PROJECT_CRD_FILE) -> Schemas:
        return cls(_spec_schema(load(application)), _spec_schema(load(project)))


def convert(objects: Iterable[Mapping[str, Any]], schemas: Schemas, *, namespace: str = NAMESPACE,
            argocd_namespace: str = ARGO_NAMESPACE) -> list[Converted]:
    """Each Argo CD Application / AppProject of ``objects`` converted (other objects: refused, named)."""
    return [_convert(obj, schemas, namespace=namespace, argocd_namespace=argocd_namespace) for obj in objects]


def _convert(obj: Mapping[str, Any], schemas: Schemas, *, namespace: str, argocd_namespace: str) -> Converted:
    kind, api_version = str(obj.get("kind") or ""), str(obj.get("apiVersion") or "")
    raw_meta = obj.get("metadata")
    metadata: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    name, source_ns = str(metadata.get("name") or ""), str(metadata.get("namespace") or argocd_namespace)
    origin = f"{kind or '(no kind)'} {source_ns}/{name or '(unnamed)'}"
    if api_version.partition("/")[0] != ARGO_GROUP or kind not in KINDS:
        return Converted(origin, None, refused=f"not an Argo CD Application or AppProject ({api_version} {kind})")
    if not name:
        return Converted(origin, None, refused="metadata.name is missing")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return Converted(origin, None, refused="spec is missing or not an object")
    result = Converted(origin, None)
    target_ns = namespace if source_ns == argocd_namespace else source_ns
    out_meta: dict[str, Any] = {"name": name, "namespace": target_ns}
    for key in ("labels", "annotations"):
        kept = _kept_keys(metadata.get(key), key, result)
        if kept:
            out_meta[key] = kept
    finalizers = [f for f in metadata.get("finalizers") or [] if isinstance(f, str)]
    if CASCADE_FINALIZER in finalizers:
        out_meta["finalizers"] = [CASCADE_FINALIZER]
    result.dropped += [f"metadata.finalizers: {f}" for f in finalizers if f != CASCADE_FINALIZER]
    schema = schemas.application if kind == "Application" else schemas.project
    out_spec: dict[str, Any] = _prune(spec, schema, "", result.dropped)
    refusal = _application(out_spec, result) if kind == "Application" else _project(out_spec, result)
    if refusal:
        result.refused = refusal
        return result
    driftguard_kind = KINDS[kind]
    api = "driftguard.io/v1alpha1"
    result.obj = {"apiVersion": api, "kind": driftguard_kind, "metadata": out_meta, "spec": out_spec}
    if kind == "Application":
        spec_read = parse_application(result.obj)
        if spec_read.problems:
            result.refused = "; ".join(spec_read.problems)
            result.obj = None
            return result
        result.notes += list(spec_read.warnings)
    else:
        try:
            projects.parse_project(result.obj)
        except projects.ProjectError as e:
            result.refused, result.obj = str(e), None
    return result


def _application(spec: dict[str, Any], result: Converted) -> str:
    found = spec.get("destination")
    destination: dict[str, Any] = found if isinstance(found, dict) else {}
    server, name = str(destination.get("server") or ""), str(destination.get("name") or "")
    if server not in ("", IN_CLUSTER) or name not in ("", IN_CLUSTER_NAME):
        return (f"destination {server or name} is another cluster: driftguard deploys only into the cluster it runs "
                "in (run a driftguard there)")
    if name:
        destination.pop("name")
        destination["server"] = IN_CLUSTER
    if str(spec.get("project") or "default") == "default":
        result.notes.append(
            "project default: Argo CD's default project permits everything; driftguard's built-in default refuses "
            "cluster RBAC, admission configurations, driftguard's own kinds, kube-system and driftguard-system — "
            "import Argo CD's AppProject named default too if this Application needs more")
    spec.setdefault("enforcement", "deny")
    return ""


def _project(spec: dict[str, Any], result: Converted) -> str:
    kept = []
    for i, destination in enumerate(spec.get("destinations") or []):
        server = str(destination.get("server") or destination.get("name") or "*")
        if server in ("*", IN_CLUSTER, IN_CLUSTER_NAME):
            kept.append(destination)
        else:
            result.dropped.append(f"spec.destinations[{i}]: {server} is another cluster")
    if "destinations" in spec:
        spec["destinations"] = kept
    return ""


def _kept_keys(value: Any, key: str, result: Converted) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    kept = {}
    for k, v in value.items():
        if k == LAST_APPLIED:
            continue
        if str(k).startswith(DROPPED_PREFIXES):
            result.dropped.append(f"metadata.{key}: {k}")
            continue
        kept[str(k)] = v
    return kept


def _prune(value: Any, schema: Mapping[str, Any], path: str, dropped: list[str]) -> Any:
    """``value`` with every field the schema does not have removed (each named in ``dropped``)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return copy.deepcopy(value)
    if isinstance(value, Mapping):
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return copy.deepcopy(dict(value))
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in properties:
                out[str(key)] = _prune(item, properties[key], where, dropped)
            else:
                why = WHY.get(str(key), "not in driftguard's schema")
                dropped.append(f"spec.{where} ({why})")
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_prune(item, schema["items"], f"{path}[{i}]", dropped) for i, item in enumerate(value)]
    return copy.deepcopy(value)


def _spec_schema(crd: Mapping[str, Any]) -> Mapping[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v.get("storage", True))
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def render(results: Iterable[Converted]) -> str:
    """The emitted objects as one YAML stream."""
    return yaml.safe_dump_all([r.obj for r in results if r.obj is not None], sort_keys=False)


def report(results: Iterable[Converted]) -> list[str]:
    """What a user must read: per object, converted or not, and each dropped field and note."""
    lines = []
    for r in results:
        if r.obj is None:
            lines.append(f"✗ {r.origin}: not converted: {r.refused}")
        else:
            target = f"{r.obj['kind']} {r.obj['metadata']['namespace']}/{r.obj['metadata']['name']}"
            lines.append(f"✓ {r.origin} → {target}")
        lines += [f"    not carried over: {d}" for d in r.dropped]
        lines += [f"    note: {n}" for n in r.notes]
    return lines
