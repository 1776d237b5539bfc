"""Mark the Namespaces and CRDs that hold managed objects, so the webhook can deny deleting them.

Deleting a Namespace, or a CRD, deletes what is in it, and those deletes are made by the namespace
controller or the API server itself — never a request on the managed object that the webhook could
judge (issue 10, path 3). So the reconciler marks each Namespace holding one of an Application's
objects (a namespace it created for ``CreateNamespace=true`` included: it holds them like any other) and
each CRD whose custom resources it manages with ``driftguard.io/holds-managed: "true"`` and the
Applications' names in ``driftguard.io/holds-managed-by`` (the contract's marks, which the webhook
reads), and takes its name off — the mark itself when no Application is left — when it holds none any
more: after every full sync, from the inventory; when the Application is deleted, from nothing.

Stateless across restarts: what to un-mark is found by listing the marked Namespaces and CRDs (label
selector), not remembered. Each write is a merge patch carrying the resourceVersion read, so two
Applications marking one Namespace at once cannot lose a name (the loser retries at its next sync).

``held``, ``patch_for`` are the pure parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from driftguard.core import contract
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.objects import split_api_version
from driftguard.kube.resources import CRDS, NAMESPACES, Cluster, ResourceError, ResourceType

log = logging.getLogger(__name__)

SELECTOR = f"{contract.LABEL_HOLDS_MANAGED}=true"
Holder = tuple[str, str]  # ("Namespace" | "CustomResourceDefinition", name)


def held(entries: Iterable[Entry], crd_of: Callable[[Entry], str | None]) -> set[Holder]:
    """What holds ``entries``: each namespaced object's Namespace, and each custom resource's CRD
    (``crd_of``: the CRD's name, None for built-in kinds)."""
    out: set[Holder] = set()
    for entry in entries:
        if entry.ref.namespace:
            out.add(("Namespace", entry.ref.namespace))
        crd = crd_of(entry)
        if crd:
            out.add(("CustomResourceDefinition", crd))
    return out


def patch_for(obj: Mapping[str, Any], application: str, holds: bool) -> dict[str, Any] | None:
    """The merge patch putting ``application`` on (``holds``) or off ``obj``'s mark; None when nothing
    changes. The last name off removes the mark."""
    names = list(contract.holders_of(obj))
    marked = contract.holds_managed(obj)
    if holds and application not in names:
        names.append(application)
    elif not holds and application in names:
        names.remove(application)
    elif marked == bool(names):
        return None
    metadata = obj.get("metadata") or {}
    return {"metadata": {
        "resourceVersion": metadata.get("resourceVersion"),
        "labels": {contract.LABEL_HOLDS_MANAGED: "true" if names else None},
        "annotations": {contract.ANN_HOLDS_MANAGED: ",".join(sorted(names)) if names else None},
    }}


class Holders:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def update(self, application: str, inventory: Inventory) -> None:
        """Mark what ``application``'s inventory is in, un-mark what it no longer is in. Never raises."""
        try:
            wanted = held(inventory.entries, self._crd_of())
            marked = {(kind, str(obj["metadata"]["name"])): (rt, obj) for kind, rt in (
                ("Namespace", NAMESPACES), ("CustomResourceDefinition", CRDS))
                for obj in self.cluster.list(rt, label_selector=SELECTOR)[0]}
        except ResourceError as e:
            log.warning("Application %s: cannot mark the Namespaces and CRDs holding its objects: %s", application, e)
            return
        for holder, (rt, obj) in marked.items():
            if holder not in wanted and application in contract.holders_of(obj):
                self._patch(rt, obj, application, holds=False)
        for kind, name in sorted(wanted):
            rt = NAMESPACES if kind == "Namespace" else CRDS
            found = marked.get((kind, name))
            current = found[1] if found else self._get(rt, name)
            if current is not None:
                self._patch(rt, current, application, holds=True)

    def _crd_of(self) -> Callable[[Entry], str | None]:
        known: dict[tuple[str, str], str | None] = {}

        def crd_of(entry: Entry) -> str | None:
            group, _ = split_api_version(entry.api_version)
            if not group or "." not in group:
                return None  # core and the built-in groups without a dot (apps, batch, policy…)
            key = (entry.api_version, entry.ref.kind)
            if key not in known:
                try:
                    rt = self.cluster.discovery.resolve(entry.api_version, entry.ref.kind)
                    name = f"{rt.plural}.{rt.group}"
                    known[key] = name if self.cluster.get(CRDS, "", name) is not None else None
                except ResourceError:
                    known[key] = None  # its kind is gone: nothing to mark
            return known[key]

        return crd_of

    def _get(self, rt: ResourceType, name: str) -> dict[str, Any] | None:
        try:
            return self.cluster.get(rt, "", name)
        except ResourceError as e:
            log.warning("%s: cannot read it to mark it: %s", rt.subject("", name), e)
            return None

    def _patch(self, rt: ResourceType, obj: Mapping[str, Any], application: str, *, holds: bool) -> None:
        patch = patch_for(obj, application, holds)
        if patch is None:
            return
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            self.cluster.merge_patch(rt, "", name, patch)
        except ResourceError as e:  # a conflict: another Application marked it meanwhile; next sync again
            log.info("%s: holds-managed mark not %s for %s: %s", rt.subject("", name),
                     "set" if holds else "removed", application, e.message)
