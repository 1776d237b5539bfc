"""Resource operations for the reconciler: discovery, get/list/apply/delete/patch, watch, Events, Leases.

Built on ``Kube`` (plain JSON in and out). This module adds what every caller would otherwise repeat:

* **discovery** — ``apiVersion``/``kind`` → REST path and scope, cached per group-version and
  refreshed when a kind is unknown (a CRD established a moment ago);
* **server-side apply** with driftguard's field manager (``force``, optionally ``dryRun=All``);
* **watches** that survive: resourceVersion bookmarks, reconnects, and a relist on 410 Gone;
* **errors that name the object**: ``ResourceError`` reads ``Deployment production/web: <apiserver
  message>``.

It decides nothing: no retries of writes, no caching of objects. Counters of the requests it sends
(by verb, dry runs apart) let benchmarks and metrics prove that a no-op resync writes nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from driftguard.core.clock import format_time
from driftguard.core.contract import FIELD_MANAGER
from driftguard.core.objects import split_api_version
from driftguard.kube.session import Kube, KubeError

log = logging.getLogger(__name__)

APPLY_PATCH: Final = "application/apply-patch+yaml"
JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
WRITE_VERBS: Final = frozenset({"create", "apply", "update", "patch", "patch-status", "delete"})

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


class ResourceError(Exception):
    """An API request about one object (or kind) failed; ``str()`` starts with the subject."""

    def __init__(self, subject: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject, self.status, self.reason, self.message = subject, status, reason, message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def transient(self) -> bool:
        """Worth retrying later unchanged: unreachable, throttled, timed out, server-side trouble."""
        return self.status in {0, 429} or self.status >= 500


class UnknownKind(ResourceError):
    """The API server does not serve this apiVersion/kind (yet)."""


@dataclass(frozen=True, slots=True)
class ResourceType:
    """Where a kind lives in the REST API."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def collection(self, namespace: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}"

    def item(self, namespace: str, name: str, subresource: str = "") -> str:
        path = f"{self.collection(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def subject(self, namespace: str, name: str) -> str:
        where = f"{namespace}/{name}" if self.namespaced and namespace else name
        return f"{self.kind} {where}"


NAMESPACES: Final = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
EVENTS: Final = ResourceType("", "v1", "Event", "events", namespaced=True)
LEASES: Final = ResourceType("coordination.k8s.io", "v1", "Lease", "leases", namespaced=True)
CONFIGMAPS: Final = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)
PODS: Final = ResourceType("", "v1", "Pod", "pods", namespaced=True)
SERVICES: Final = ResourceType("", "v1", "Service", "services", namespaced=True)
VALIDATING_WEBHOOKS: Final = ResourceType("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                                          "validatingwebhookconfigurations", namespaced=False)
MUTATING_WEBHOOKS: Final = ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                                        "mutatingwebhookconfigurations", namespaced=False)
CRDS: Final = ResourceType(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    resource_version: str


class Discovery:
    """apiVersion + kind → ResourceType, cached per group-version, refreshed on a miss."""

    def __init__(self, kube: Kube, *, negative_ttl: float = 1.0) -> None:
        self._kube = kube
        self._cache: dict[tuple[str, str], dict[str, ResourceType]] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._negative_ttl = negative_ttl
        self._lock = threading.Lock()

    def resolve(self, api_version: str, kind: str) -> ResourceType:
        group, version = split_api_version(api_version)
        with self._lock:
            known = self._cache.get((group, version), {}).get(kind)
        if known is not None:
            return known
        kinds = self._refresh(group, version, kind)
        if kind not in kinds:
            raise UnknownKind(
                f"{kind} {api_version}", 404, "NotFound",
                f"the API server does not serve kind {kind} in {api_version} (is its CRD installed?)",
            )
        return kinds[kind]

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._misses.clear()

    def _refresh(self, group: str, version: str, kind: str) -> dict[str, ResourceType]:
        key = (group, version)
        with self._lock:
            missed = self._misses.get((group, version + "/" + kind), 0.0)
            if time.monotonic() - missed < self._negative_ttl:
                return self._cache.get(key, {})
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            body = self._kube.request("GET", path)
        except KubeError as e:
            if e.status != 404:
                raise ResourceError(f"{kind} {group + '/' if group else ''}{version}", e.status, e.reason,
                                    f"discovery failed: {e.message}") from e
            body = {}
        kinds = {
            str(r["kind"]): ResourceType(group, version, str(r["kind"]), str(r["name"]), bool(r.get("namespaced")))
            for r in body.get("resources", [])
            if "/" not in str(r.get("name", ""))
        }
        with self._lock:
            self._cache[key] = kinds
            if kind not in kinds:
                self._misses[(group, version + "/" + kind)] = time.monotonic()
        return kinds


class Cluster:
    """Object-level operations against one API server, in plain JSON, errors naming the object."""

    def __init__(self, kube: Kube, discovery: Discovery | None = None, *, field_manager: str = FIELD_MANAGER) -> None:
        self.kube = kube
        self.discovery = discovery or Discovery(kube)
        self.field_manager = field_manager
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.acting_for = ""  # the impersonated user ("": this client's own identity)
        self._impersonation: Callable[[], Mapping[str, str]] | None = None

    def acting_as(self, user: str, extra: Callable[[], Mapping[str, str]]) -> Cluster:
        """This cluster (same connections, discovery and counters) with every request sent as ``user``: the
        ``Impersonate-User`` header, and an ``Impersonate-Extra-<key>`` header per item of ``extra()`` (called
        for each request, so a value may expire). The caller needs RBAC ``impersonate`` on the user (for a
        ServiceAccount: ``serviceaccounts`` in its namespace) and on ``userextras/<key>``; the API server adds a
        ServiceAccount's groups itself."""
        view = copy.copy(self)
        view.acting_for = user

        def headers() -> Mapping[str, str]:
            out = {"Impersonate-User": user}
            for key, value in extra().items():
                out["Impersonate-Extra-" + urllib.parse.quote(key.lower(), safe="")] = value
            return out

        view._impersonation = headers
        return view

    # ------------------------------------------------------------ bookkeeping

    def request_counts(self) -> dict[str, int]:
        """Requests sent so far, by verb (``apply``, ``apply-dry-run``, ``get``, ``list``, ``patch-status``...)."""
        with self._count_lock:
            return dict(self._counts)

    def write_count(self) -> int:
        with self._count_lock:
            return sum(n for verb, n in self._counts.items() if verb in WRITE_VERBS)

    def _send(
        self, verb: str, subject: str, method: str, path: str, *,
        body: object | None = None, query: Mapping[str, str] | None = None, content_type: str = "application/json",
    ) -> dict[str, Any]:
        with self._count_lock:
            self._counts[verb] += 1
        headers = self._impersonation() if self._impersonation is not None else None
        try:
            return self.kube.request(method, path, body=body, query=query, content_type=content_type, headers=headers)
        except KubeError as e:
            raise ResourceError(subject, e.status, e.reason, e.message) from e

    # ------------------------------------------------------------ reading

    def resource_for(self, obj: Mapping[str, Any]) -> ResourceType:
        return self.discovery.resolve(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            return self._send("get", rt.subject(namespace, name), "GET", rt.item(namespace, name))
        except ResourceError as e:
            if e.not_found:
                return None
            raise

    def pages(
        self, rt: ResourceType, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
        limit: int = 500,
    ) -> Iterator[Page]:
        """A (paginated) list, one page at a time; the last page's resourceVersion suits a watch.

        ``field_selector`` ``metadata.name=X`` lets RBAC rules restricted by ``resourceNames`` list/watch."""
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        subject = f"{rt.kind} list" + (f" in {namespace}" if namespace else "")
        while True:
            body = self._send("list", subject, "GET", rt.collection(namespace), query=query)
            metadata = body.get("metadata") or {}
            yield Page(list(body.get("items") or []), str(metadata.get("resourceVersion", "")))
            token = metadata.get("continue")
            if not token:
                return
            query = {**query, "continue": str(token)}

    def list(
        self, rt: ResourceType, namespace: str = "", *, label_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """All items (with apiVersion/kind filled in) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        version = ""
        for page in self.pages(rt, namespace, label_selector=label_selector):
            for item in page.items:
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
            items.extend(page.items)
            version = page.resource_version
        return items, version

    # ------------------------------------------------------------ writing

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False, rt: ResourceType | None = None) -> dict[str, Any]:
        """Server-side apply ``obj`` as driftguard (force), optionally as a dry run."""
        rt = rt or self.resource_for(obj)
        namespace, name = _namespace_name(obj)
        query = {"fieldManager": self.field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return self._send(
            "apply-dry-run" if dry_run else "apply", rt.subject(namespace, name), "PATCH",
            rt.item(namespace, name), body=dict(obj), query=query, content_type=APPLY_PATCH,
        )

    def create(self, rt: ResourceType, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        namespace, name = _namespace_name(obj)
        return self._send(
            "create-dry-run" if dry_run else "create", rt.subject(namespace, name or "(generated)"), "POST",
            rt.collection(namespace), body=dict(obj), query={"dryRun": "All"} if dry_run else None,
        )

    def replace(self, rt: ResourceType, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """PUT ``obj`` (carrying its resourceVersion: a 409 means somebody else wrote first)."""
        namespace, name = _namespace_name(obj)
        return self._send("update-dry-run" if dry_run else "update", rt.subject(namespace, name), "PUT",
                          rt.item(namespace, name), body=dict(obj), query={"dryRun": "All"} if dry_run else None)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, *, uid: str = "", resource_version: str = "",
        propagation: str = "Background",
    ) -> bool:
        """Delete one object; False when it was already gone. Preconditions guard against races."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        try:
            self._send("delete", rt.subject(namespace, name), "DELETE", rt.item(namespace, name), body=body)
        except ResourceError as e:
            if e.not_found:
                return False
            raise
        return True

    def json_patch(
        self, rt: ResourceType, namespace: str, name: str, operations: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        return self._send(
            "patch", rt.subject(namespace, name), "PATCH", rt.item(namespace, name),
            body=[dict(op) for op in operations], content_type=JSON_PATCH,
        )

    def merge_patch(
        self, rt: ResourceType, namespace: str, name: str, patch: Mapping[str, Any], *, subresource: str = ""
    ) -> dict[str, Any]:
        return self._send(
            f"patch-{subresource}" if subresource else "patch", rt.subject(namespace, name), "PATCH",
            rt.item(namespace, name, subresource), body=dict(patch), content_type=MERGE_PATCH,
        )

    def patch_status(self, rt: ResourceType, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource (keys set to None are removed)."""
        return self.merge_patch(rt, namespace, name, {"status": dict(status)}, subresource="status")

    def create_event(
        self, involved: Mapping[str, Any], *, type_: Literal["Normal", "Warning"], reason: str, message: str,
        component: str = "driftguard-reconciler",
    ) -> None:
        """Record a core/v1 Event about ``involved`` (best effort: failures are logged, not raised)."""
        metadata = involved.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "default")
        now = _now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata.get('name', 'object')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                "name": metadata.get("name"), "namespace": metadata.get("namespace"),
                "uid": metadata.get("uid"), "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self.create(EVENTS, event)
        except ResourceError as e:
            log.warning("could not record Event %s on %s: %s", reason, event["involvedObject"], e)

    # ------------------------------------------------------------ watching

    def watch(
        self, rt: ResourceType, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
        resource_version: str = "", timeout: float = 60.0,
    ) -> Iterator[WatchEvent]:
        """One watch connection (with bookmarks). Raises ResourceError(410) when the version is too old."""
        query = {"allowWatchBookmarks": "true"}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        if resource_version:
            query["resourceVersion"] = resource_version
        subject = f"{rt.kind} watch" + (f" in {namespace}" if namespace else "")
        with self._count_lock:
            self._counts["watch"] += 1
        try:
            for raw in self.kube.stream(rt.collection(namespace), query, timeout=timeout):
                kind, obj = str(raw.get("type", "")), raw.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 500)
                    raise ResourceError(subject, code, str(obj.get("reason", "")), str(obj.get("message", "")))
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    obj.setdefault("apiVersion", rt.api_version)
                    obj.setdefault("kind", rt.kind)
                    yield WatchEvent(kind, obj)  # type: ignore[arg-type]
        except KubeError as e:
            raise ResourceError(subject, e.status, e.reason, e.message) from e

    def follow(
        self, rt: ResourceType, namespace: str = "", *, label_selector: str = "", field_selector: str = "",
        stop: threading.Event | None = None, timeout: float = 30.0, on_error: Callable[[Exception], None] | None = None,
    ) -> Iterator[WatchEvent]:
        """List then watch, for ever (until ``stop``): every listed object is yielded as ADDED.

        Reconnects from the last seen resourceVersion (bookmarks keep it fresh); relists after 410
        Gone or any other failure. Errors go to ``on_error`` and never end the iteration.
        """
        stop = stop or threading.Event()
        version = ""
        failures = 0
        while not stop.is_set():
            try:
                if not version:
                    for page in self.pages(rt, namespace, label_selector=label_selector,
                                           field_selector=field_selector):
                        for item in page.items:
                            item.setdefault("apiVersion", rt.api_version)
                            item.setdefault("kind", rt.kind)
                            yield WatchEvent("ADDED", item)
                        version = page.resource_version
                for event in self.watch(rt, namespace, label_selector=label_selector, field_selector=field_selector,
                                        resource_version=version, timeout=timeout):
                    version = str((event.object.get("metadata") or {}).get("resourceVersion") or version)
                    failures = 0
                    if event.type != "BOOKMARK":
                        yield event
                    if stop.is_set():
                        return
            except ResourceError as e:
                if e.gone:
                    version = ""  # our version is too old: relist, we may have missed events
                    continue
                failures += 1
                if on_error is not None:
                    on_error(e)
                stop.wait(min(0.1 * 2 ** min(failures - 1, 6), 5.0))


def _namespace_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _now_rfc3339() -> str:
    return format_time(dt.datetime.now(dt.UTC))
