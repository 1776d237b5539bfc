"""Deleting an Application: cascade (with a finalizer) or let go (without) — the pure decisions.

An Application that carries ``driftguard.io/prune-on-delete`` or Argo CD's
``resources-finalizer.argocd.argoproj.io`` is a *cascading* delete: once it is being deleted, the
reconciler deletes exactly the objects of its inventory (the prune path: reverse apply order, each live
object's stamp re-checked), keeps failed deletions to retry, and removes the finalizer only when the
inventory is empty. Without one of them, deleting the Application deletes nothing: the reconciler
stops managing its objects, which stay as they are, stamped. The reconciler never *adds* a finalizer;
users opt in, as in Argo CD.

The finalizer is removed with a JSON patch that first tests the finalizers list it read, so a
finalizer another party added or removed meanwhile is never clobbered (the patch fails; re-read, retry).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from driftguard.core.contract import CASCADE_FINALIZERS as FINALIZERS  # the names are the contract's


class Step(enum.StrEnum):
    MANAGE = "manage"  # not being deleted: sync as usual
    FORGET = "forget"  # being deleted without our finalizer: stop managing, delete nothing
    PRUNE = "prune"  # being deleted with our finalizer, objects left in the inventory: delete them
    RELEASE = "release"  # being deleted with our finalizer, inventory empty: remove the finalizer


def finalizers_of(app: Mapping[str, Any]) -> list[str]:
    return [str(f) for f in (app.get("metadata") or {}).get("finalizers") or []]


def ours(app: Mapping[str, Any]) -> tuple[str, ...]:
    """Our finalizers on ``app``, in the order they appear."""
    return tuple(f for f in finalizers_of(app) if f in FINALIZERS)


def being_deleted(app: Mapping[str, Any]) -> bool:
    return bool((app.get("metadata") or {}).get("deletionTimestamp"))


def step(app: Mapping[str, Any], inventory_size: int) -> Step:
    """What to do with ``app`` whose inventory holds ``inventory_size`` entries."""
    if not being_deleted(app):
        return Step.MANAGE
    if not ours(app):
        return Step.FORGET
    return Step.PRUNE if inventory_size > 0 else Step.RELEASE


def release_patch(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch removing our finalizers from ``app``, valid only while its finalizers are still the
    list read here (``[]``: none of ours to remove)."""
    have = finalizers_of(app)
    if not any(f in FINALIZERS for f in have):
        return []
    return [{"op": "test", "path": "/metadata/finalizers", "value": have},
            {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in have if f not in FINALIZERS]}]
