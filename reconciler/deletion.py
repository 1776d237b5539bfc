"""Deleting an Application: cascade (with a finalizer) or let go (without) — the pure decisions.

An Application that carries ``driftguard.io/prune-on-delete`` or Argo CD's
``resources-finalizer.argocd.argoproj.io`` is a *cascading* delete: once it is being deleted, the
reconciler deletes exactly the objects of its inventory (the prune path: reverse apply order, each live
object's stamp re-checked), keeps failed deletions to retry, and removes the finalizer only when the
inventory is empty. Without one of them, deleting the Application deletes nothing: the reconciler
stops managing its objects, which stay as they are, stamped. The reconciler never *adds* a finalizer;
users opt in, as in Argo CD.

Two limits (issue 10), because deleting an Application is easier to get than deleting what it manages:

* **Who set the finalizer.** The reconciler cannot see who added a finalizer. On an Application that
  is itself managed (deployed from git by an app-of-apps), the finalizer is honoured only when the
  reconciler's own apply owns it (its ``managedFields`` entry as field manager ``driftguard``, i.e.
  git's manifest declares it); otherwise the cascade is *refused*: the finalizer is removed and nothing
  is deleted, with a Warning Event. On an Application created by hand, the webhook's Applications rule
  is what admits a finalizer only from git or the admin group.
* **Namespaces.** Deleting a Namespace deletes everything in it, managed or not. A cascading delete
  deletes a Namespace of its inventory only when git opts in on that Namespace with the annotation
  ``cascade.driftguard.io/delete-namespace: "true"`` (read from the Namespace's stamp: git's declared
  values, not the live annotation). Otherwise the Namespace is kept — its managed objects are still
  deleted — and dropped from the inventory, with an Event. (Ordinary prune, git no longer declaring the
  Namespace, is git's own decision and is unaffected.)

The finalizer is removed with a JSON patch that first tests the finalizers list it read, so a
finalizer another party added or removed meanwhile is never clobbered (the patch fails; re-read, retry).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any, Final

from driftguard.core import contract
from driftguard.core.contract import CASCADE_FINALIZERS as FINALIZERS  # the names are the contract's

NAMESPACE_OPT_IN: Final = "cascade.driftguard.io/delete-namespace"  # not driftguard.io/: git may set it


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


def refusal(app: Mapping[str, Any]) -> str:
    """Why ``app``'s cascading finalizers are not honoured ("" when they are): on a managed Application,
    each must be owned by the reconciler's apply (git declares it)."""
    if not contract.is_managed(app):
        return ""
    owned = _applied_finalizers(app)
    foreign = [f for f in ours(app) if f not in owned]
    if not foreign:
        return ""
    return (f"finalizer {', '.join(foreign)} on Application {_name(app)} was not set by git (the Application is "
            f"deployed from git, whose manifest does not declare it), so deleting it deletes nothing; to delete "
            f"what it manages, declare the finalizer in git")


def namespace_opt_in(namespace: Mapping[str, Any]) -> bool:
    """Whether git declares ``cascade.driftguard.io/delete-namespace: "true"`` on this live Namespace."""
    try:
        stamp = contract.read_stamp(namespace)
    except contract.ContractError:
        return False
    annotations = ((stamp.declared.get("metadata") or {}).get("annotations") or {}) if stamp else {}
    return isinstance(annotations, Mapping) and annotations.get(NAMESPACE_OPT_IN) == "true"


def _applied_finalizers(app: Mapping[str, Any]) -> set[str]:
    owned: set[str] = set()
    for entry in (app.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != contract.FIELD_MANAGER or entry.get("operation") != "Apply":
            continue
        finalizers = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:finalizers") or {}
        owned.update(json.loads(key[2:]) for key in finalizers if key.startswith("v:"))
    return owned


def _name(app: Mapping[str, Any]) -> str:
    metadata = app.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def release_patch(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch removing our finalizers from ``app``, valid only while its finalizers are still the
    list read here (``[]``: none of ours to remove)."""
    have = finalizers_of(app)
    if not any(f in FINALIZERS for f in have):
        return []
    return [{"op": "test", "path": "/metadata/finalizers", "value": have},
            {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in have if f not in FINALIZERS]}]
