"""In-memory stand-ins for ``driftguard.kube.resources.Cluster`` (enough for ``Applier``, and with
``RecordingCluster`` for a ``Controller``'s status and Events) and for ``GitSource`` (``FakeSource``).

Server-side apply is modelled crudely but honestly for these tests: applied top-level fields replace
the stored ones, labels and annotations merge, an apply that changes nothing is not a write
(resourceVersion stays, as with the real API server), and an apply carrying a resourceVersion
conflicts unless the object is at that version.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from driftguard.kube.resources import Page, ResourceError, ResourceType

TYPES = {"ConfigMap": ResourceType("", "v1", "ConfigMap", "configmaps", True),
         "Namespace": ResourceType("", "v1", "Namespace", "namespaces", False),
         "Secret": ResourceType("", "v1", "Secret", "secrets", True)}


class FakeDiscovery:
    def resolve(self, api_version: str, kind: str) -> ResourceType:
        if kind not in TYPES:
            raise ResourceError(f"{kind} {api_version}", 404, "NotFound", "the API server does not serve it")
        return TYPES[kind]

    def invalidate(self) -> None:
        pass


class FakeCluster:
    def __init__(self) -> None:
        self.discovery = FakeDiscovery()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, ResourceError] = {}  # verb → error to raise
        self.log: list[tuple[str, str]] = []  # (verb, name) of every write, in order
        self._version = 100

    def writes(self) -> int:
        return sum(n for verb, n in self.calls.items() if verb in ("apply", "patch", "delete"))

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(obj))
        stored["metadata"].setdefault("uid", f"uid-{stored['metadata']['name']}")
        stored["metadata"]["resourceVersion"] = self._next()
        self.objects[self._key(stored)] = stored
        return copy.deepcopy(stored)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get")
        found = self.objects.get((rt.kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def pages(self, rt: ResourceType, namespace: str = "", *, label_selector: str = "",
              limit: int = 500) -> Iterator[Page]:
        self._call("list")
        items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == rt.kind and ns == namespace]
        yield Page(items, self._next())

    def list(
        self, rt: ResourceType, namespace: str = "", *, label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """All ``rt`` objects in ``namespace`` whose labels match ``label_selector`` (``key=value`` only)."""
        self._call("list")
        key, _, value = label_selector.partition("=")
        items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items()) if k == rt.kind
                 and ns == namespace and (not key or (o["metadata"].get("labels") or {}).get(key) == value)]
        return items, self._next()

    def follow(self, rt: ResourceType, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
               stop: threading.Event | None = None, timeout: float = 30.0,
               on_error: Callable[[Exception], None] | None = None) -> Iterator[Any]:
        """A watch that hears nothing until ``stop`` (the audit trail's watch of the webhook's Events)."""
        if stop is not None:
            stop.wait()
        yield from ()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False, rt: ResourceType | None = None) -> dict[str, Any]:
        self._call("apply-dry-run" if dry_run else "apply")
        key = self._key(obj)
        current = copy.deepcopy(self.objects.get(key) or {"metadata": {}})
        wanted_version = obj["metadata"].get("resourceVersion")
        if wanted_version and wanted_version != current["metadata"].get("resourceVersion"):
            raise ResourceError(f"{key[0]} {key[1]}/{key[2]}", 409, "Conflict", "the object has been modified")
        merged = {**current, **{k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}}
        metadata = {**current["metadata"], **{k: v for k, v in obj["metadata"].items()
                                               if k not in ("labels", "annotations")}}
        for field in ("labels", "annotations"):
            metadata[field] = {**current["metadata"].get(field, {}), **obj["metadata"].get(field, {})}
        merged["metadata"] = metadata
        if merged == current or dry_run:
            return merged if dry_run else current
        self.log.append(("apply", key[2]))
        return self.put(merged)

    def json_patch(self, rt: ResourceType, namespace: str, name: str,
                   operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        self._call("patch")
        obj = copy.deepcopy(self.objects[(rt.kind, namespace, name)])
        for op in operations:
            path = op["path"].split("/")[1:]
            if path == ["metadata", "resourceVersion"]:
                found: Any = obj["metadata"]["resourceVersion"]
            else:
                _, where, key = path
                key = key.replace("~1", "/").replace("~0", "~")
                found = obj["metadata"].get(where, {}).get(key)
            if op["op"] == "test" and found != op["value"]:
                raise ResourceError(f"{rt.kind} {namespace}/{name}", 422, "Invalid", "test failed")
            if op["op"] == "remove":
                del obj["metadata"][where][key]
        self.log.append(("patch", name))
        return self.put(obj)

    def delete(self, rt: ResourceType, namespace: str, name: str, *, uid: str = "", resource_version: str = "",
               propagation: str = "Background") -> bool:
        self._call("delete")
        return self.objects.pop((rt.kind, namespace, name), None) is not None

    def _call(self, verb: str) -> None:
        self.calls[verb] += 1
        if verb in self.fail:
            raise self.fail[verb]

    def _next(self) -> str:
        self._version += 1
        return str(self._version)

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        metadata = obj["metadata"]
        return str(obj["kind"]), str(metadata.get("namespace") or ""), str(metadata["name"])


class RecordingCluster(FakeCluster):
    """FakeCluster plus what a controller writes about Applications: status patches and Events, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []  # (kind of the involved object, reason, message)

    def request_counts(self) -> dict[str, int]:
        return dict(self.calls)

    def patch_status(self, rt: ResourceType, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        self.statuses.append(copy.deepcopy(dict(status)))
        return {}

    def create_event(self, involved: Mapping[str, Any], *, type_: str, reason: str, message: str,
                     component: str = "") -> None:
        self.events.append((str(involved.get("kind")), reason, message))


class FakeSource:
    """A ``GitSource`` stand-in: one revision of ``files`` ((repository path → content)), or an error."""

    def __init__(self, revision: Any, files: Mapping[str, bytes] | None = None, *,
                 resolve_error: Exception | None = None, read_error: Exception | None = None) -> None:
        self.revision, self.files = revision, dict(files or {})
        self.resolve_error, self.read_error = resolve_error, read_error
        self.calls: Counter[str] = Counter()

    def resolve(self, url: str, target: str, credentials: Any = None) -> Any:
        self.calls["resolve"] += 1
        if self.resolve_error is not None:
            raise self.resolve_error
        return self.revision

    def paths(self, url: str, sha: str, path: str, *, credentials: Any = None) -> list[str]:
        if self.read_error is not None:
            raise self.read_error
        return [p for p in sorted(self.files) if p.startswith(path + "/")]

    def read(self, url: str, sha: str, path: str, want: Any, *, credentials: Any = None) -> list[tuple[str, bytes]]:
        self.calls["read"] += 1
        if self.read_error is not None:
            raise self.read_error
        return [(p, c) for p, c in sorted(self.files.items()) if p.startswith(path + "/") and want(p)]
