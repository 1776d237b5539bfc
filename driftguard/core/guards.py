"""What git owns even where its manifest declares nothing: references, and what a pod runs as. No I/O.

``Edit.changes`` judges the fields git declares. Two rules judge what it does not, on every managed
object, in ``deny`` and ``warn`` mode alike (``off`` checks nothing):

* **References belong to git.** Nobody but the reconciler adds an entry to ``metadata.ownerReferences``
  (the garbage collector deletes an object together with its owners: an owner added by hand is a
  delete around the webhook) or to ``metadata.finalizers`` (a finalizer blocks deletion and prune).
  Finalizers in a ``kubernetes.io`` domain are the control plane's own bookkeeping (e.g.
  ``service.kubernetes.io/load-balancer-cleanup``) and pass; so does everything once deletion began.
* **The strict pod profile.** Under a pod template (a Pod's ``spec``, a workload's
  ``spec.template.spec``, a CronJob's ``spec.jobTemplate.spec.template.spec``), a container, init
  container, ephemeral container or volume that git does not list is drift, and so is a change to a
  container's ``image``, ``command``, ``args`` or ``securityContext``, to the pod's ``securityContext``,
  ``hostPID``, ``hostNetwork``, ``hostIPC``, ``serviceAccountName``/``serviceAccount``, or to a
  ``hostPath`` volume: these decide what runs, with which privileges and credentials. What git declares
  is left to its declared value (no double report); only what *this request* changes counts.

Each finding is a ``Guarded`` (a ``FieldDrift`` for the audit record plus why it matters).

Shared by both components: the webhook judges a request with ``violations``; the reconciler asks
``undeclared`` what a write *around* the webhook left on a live workload — a container, init container,
ephemeral container or volume git does not list under its pod template, or ``hostPID``/``hostNetwork``/
``hostIPC`` set true where git says nothing — and removes it as drift.
Pods themselves are left out there: their containers cannot be removed, and the control plane adds a
volume of its own (``kube-api-access-…``) to every Pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core.fields import MISSING, FieldDrift, ListKey, Path, lookup

POD_SPECS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS: Final = {"containers": "container", "initContainers": "init container",
                          "ephemeralContainers": "ephemeral container"}
CONTAINER_FIELDS: Final = {"image": "decides what runs", "command": "decides what runs",
                           "args": "decides what runs", "securityContext": "decides the container's privileges"}
POD_FIELDS: Final = {
    "securityContext": "decides the pod's privileges",
    "hostPID": "shares the node's process namespace",
    "hostNetwork": "shares the node's network",
    "hostIPC": "shares the node's IPC namespace",
    "serviceAccountName": "decides the pod's API credentials",
    "serviceAccount": "decides the pod's API credentials",
}
HOST_NAMESPACES: Final = ("hostPID", "hostNetwork", "hostIPC")
SYSTEM_FINALIZER_DOMAIN: Final = "kubernetes.io"


@dataclass(frozen=True, slots=True)
class Guarded:
    """One change to something git owns without declaring it."""

    drift: FieldDrift  # declared: MISSING, actual: what the request sets
    why: str
    added: bool = False  # a whole list element the request adds

    @property
    def field(self) -> str:
        return self.drift.path_text


def violations(kind: str, declared: Mapping[str, Any], old: Mapping[str, Any],
               new: Mapping[str, Any]) -> list[Guarded]:
    """Everything this request changes that git owns without declaring it (see the module docstring)."""
    metadata = old.get("metadata") or {}
    if isinstance(metadata, Mapping) and metadata.get("deletionTimestamp"):
        return []
    found = list(_references(old, new))
    location = POD_SPECS.get(kind)
    if location is not None:
        found += _pod(location, declared, old, new)
    return found


def undeclared(kind: str, declared: Mapping[str, Any], live: Mapping[str, Any]) -> list[Guarded]:
    """Whole elements under a workload's pod template in ``live`` that git (``declared``) does not list."""
    location = POD_SPECS.get(kind)
    if location is None or kind == "Pod":
        return []
    git, have = _mapping(lookup(declared, location)) or {}, _mapping(lookup(live, location))
    if have is None:
        return []
    found: list[Guarded] = []
    for field, noun in {**CONTAINER_LISTS, "volumes": "volume"}.items():
        found += _elements((*location, field), noun, git.get(field), git.get(field), have.get(field), {})
    for field in HOST_NAMESPACES:  # never defaulted to true by the API server: only a write sets them
        if field not in git and have.get(field) is True:
            found.append(Guarded(FieldDrift((*location, field), MISSING, True), POD_FIELDS[field]))
    return found


# ---------------------------------------------------------------- references

def _references(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Guarded]:
    before = {_owner_key(o) for o in _list(old, "ownerReferences")}
    for owner in _list(new, "ownerReferences"):
        if _owner_key(owner) not in before:
            path: Path = ("metadata", "ownerReferences", ListKey((("uid", _text(owner, "uid")),)))
            shown = f"{_text(owner, 'kind')}/{_text(owner, 'name')}"
            yield Guarded(FieldDrift(path, MISSING, shown),
                          "the garbage collector deletes an object together with its owners")
    had = set(_list(old, "finalizers"))
    for finalizer in _list(new, "finalizers"):
        if finalizer not in had and not _system_finalizer(finalizer):
            yield Guarded(FieldDrift(("metadata", "finalizers"), MISSING, finalizer),
                          "a finalizer blocks deletion and prune")


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    metadata = obj.get("metadata")
    values = metadata.get(key) if isinstance(metadata, (dict, Mapping)) else None
    if not values or not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, (str, dict, Mapping))]


def _owner_key(owner: object) -> object:
    return _text(owner, "uid") or repr(owner)


def _text(obj: object, key: str) -> str:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, str) else ""


def _system_finalizer(name: object) -> bool:
    if not isinstance(name, str):
        return False
    domain = name.split("/", 1)[0] if "/" in name else ""
    return domain == SYSTEM_FINALIZER_DOMAIN or domain.endswith("." + SYSTEM_FINALIZER_DOMAIN)


# ---------------------------------------------------------------- the strict pod profile

def _pod(location: tuple[str, ...], declared: Mapping[str, Any], old: Mapping[str, Any],
         new: Mapping[str, Any]) -> list[Guarded]:
    git, before, after = (_mapping(lookup(tree, location)) for tree in (declared, old, new))
    if after is None or before == after:  # nothing under the template moved: no rule below can fire
        return []
    git, before = git or {}, before or {}
    found: list[Guarded] = []
    for field, why in POD_FIELDS.items():
        found += _changed((*location, field), field in git, before.get(field, MISSING), after.get(field, MISSING), why)
    for field, noun in CONTAINER_LISTS.items():
        found += _elements((*location, field), noun, git.get(field), before.get(field), after.get(field),
                           CONTAINER_FIELDS)
    found += _elements((*location, "volumes"), "volume", git.get("volumes"), before.get("volumes"),
                       after.get("volumes"), {"hostPath": "mounts a path of the node"})
    return found


def _elements(path: Path, noun: str, git: object, before: object, after: object,  # noqa: PLR0917
              guarded_fields: Mapping[str, str]) -> list[Guarded]:
    git_items, old_items = _by_name(git), _by_name(before)
    found: list[Guarded] = []
    for name, element in _by_name(after).items():
        here: Path = (*path, ListKey((("name", name),)))
        listed = ", ".join(git_items) or "none"
        if name not in git_items and name not in old_items:
            found.append(Guarded(FieldDrift(here, MISSING, element),
                                 f"a {noun} git does not list (git lists {listed}) runs or mounts whatever it names",
                                 added=True))
            continue
        ours, was = git_items.get(name, {}), old_items.get(name, {})
        for field, why in guarded_fields.items():
            found += _changed((*here, field), field in ours, was.get(field, MISSING), element.get(field, MISSING),
                              why)
    return found


def _changed(path: Path, declared: bool, before: object, after: object, why: str) -> list[Guarded]:
    if declared or before == after or (before is MISSING and after is None):
        return []
    return [Guarded(FieldDrift(path, MISSING, after), why)]


def _by_name(items: object) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, Sequence) or isinstance(items, str):
        return {}
    return {item["name"]: item for item in items if isinstance(item, Mapping) and isinstance(item.get("name"), str)}


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, (dict, Mapping)) else None
