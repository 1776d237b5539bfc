"""driftguard.kube.resources against a scripted API (no server): discovery, requests, errors, watches."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster, Discovery, ResourceError, UnknownKind

CORE = {"resources": [
    {"name": "configmaps", "kind": "ConfigMap", "namespaced": True},
    {"name": "configmaps/status", "kind": "ConfigMap", "namespaced": True},
    {"name": "namespaces", "kind": "Namespace", "namespaced": False},
]}


class ScriptedKube:
    """Answers ``request``/``stream`` from a script; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], Any, str]] = []
        self.answers: dict[tuple[str, str], list[Any]] = {}
        self.streams: list[list[dict[str, Any]] | KubeError] = []

    def answer(self, method: str, path: str, *responses: Any) -> None:
        self.answers.setdefault((method, path), []).extend(responses)

    def request(self, method: str, path: str, *, body: object | None = None, query: Mapping[str, str] | None = None,
                content_type: str = "application/json", headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.calls.append((method, path, dict(query or {}), body, content_type))
        queue = self.answers.get((method, path)) or [{}]
        response = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(response, KubeError):
            raise response
        return cast(dict[str, Any], response)

    def stream(
        self, path: str, query: Mapping[str, str] | None = None, *, timeout: float = 60.0
    ) -> Iterator[dict[str, Any]]:
        self.calls.append(("WATCH", path, dict(query or {}), None, ""))
        script = self.streams.pop(0) if self.streams else []
        if isinstance(script, KubeError):
            raise script
        yield from script


@pytest.fixture
def kube() -> ScriptedKube:
    k = ScriptedKube()
    k.answer("GET", "/api/v1", CORE)
    return k


def cluster_of(kube: ScriptedKube) -> Cluster:
    return Cluster(cast(Kube, kube))


def test_discovery_resolves_caches_and_refreshes_unknown_kinds(kube: ScriptedKube) -> None:
    discovery = Discovery(cast(Kube, kube), negative_ttl=0.0)
    rt = discovery.resolve("v1", "ConfigMap")
    assert (rt.plural, rt.namespaced) == ("configmaps", True)
    assert rt.item("prod", "web") == "/api/v1/namespaces/prod/configmaps/web"
    discovery.resolve("v1", "Namespace")
    assert len(kube.calls) == 1, "one discovery request per group-version"
    kube.answer("GET", "/apis/x.io/v1", KubeError(404, "NotFound", "no"), {"resources": [
        {"name": "widgets", "kind": "Widget", "namespaced": False}]})
    with pytest.raises(UnknownKind, match=r"^Widget x\.io/v1: the API server does not serve kind Widget"):
        discovery.resolve("x.io/v1", "Widget")
    assert discovery.resolve("x.io/v1", "Widget").collection() == "/apis/x.io/v1/widgets"  # its CRD arrived


def test_apply_is_server_side_apply_as_driftguard(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "prod"}}
    cluster.apply(obj, dry_run=True)
    method, path, query, body, content_type = kube.calls[-1]
    assert (method, path, content_type, body) == (
        "PATCH", "/api/v1/namespaces/prod/configmaps/web", "application/apply-patch+yaml", obj)
    assert query == {"fieldManager": "driftguard", "force": "true", "dryRun": "All"}
    cluster.apply(obj)
    assert "dryRun" not in kube.calls[-1][2]
    assert cluster.request_counts() == {"apply-dry-run": 1, "apply": 1} and cluster.write_count() == 1


def test_errors_start_with_the_object(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    rt = cluster.discovery.resolve("v1", "ConfigMap")
    kube.answer("PATCH", "/api/v1/namespaces/prod/configmaps/web",
                KubeError(422, "Invalid", 'ConfigMap "web" is invalid: data.k: Invalid value'))
    with pytest.raises(ResourceError) as error:
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "prod"}})
    assert str(error.value) == 'ConfigMap prod/web: ConfigMap "web" is invalid: data.k: Invalid value'
    assert error.value.status == 422
    kube.answer("GET", "/api/v1/namespaces/prod/configmaps/gone", KubeError(404, "NotFound", "not found"))
    assert cluster.get(rt, "prod", "gone") is None
    kube.answer("DELETE", "/api/v1/namespaces/prod/configmaps/gone", KubeError(404, "NotFound", "not found"))
    assert cluster.delete(rt, "prod", "gone") is False


def test_delete_carries_preconditions_and_background_propagation(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    rt = cluster.discovery.resolve("v1", "ConfigMap")
    assert cluster.delete(rt, "prod", "web", uid="u-1", resource_version="7") is True
    assert kube.calls[-1][3] == {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                                 "preconditions": {"uid": "u-1", "resourceVersion": "7"}}


def test_lists_follow_continue_tokens(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    rt = cluster.discovery.resolve("v1", "ConfigMap")
    kube.answer("GET", "/api/v1/namespaces/prod/configmaps",
                {"metadata": {"continue": "t1", "resourceVersion": "5"}, "items": [{"metadata": {"name": "a"}}]},
                {"metadata": {"resourceVersion": "6"}, "items": [{"metadata": {"name": "b"}}]})
    items, version = cluster.list(rt, "prod", label_selector="driftguard.io/managed=true")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"] and version == "6"
    assert items[0]["kind"] == "ConfigMap" and items[0]["apiVersion"] == "v1"
    assert kube.calls[-1][2] == {"limit": "500", "labelSelector": "driftguard.io/managed=true", "continue": "t1"}


def test_follow_relists_after_410_and_resumes_from_bookmarks(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    rt = cluster.discovery.resolve("v1", "ConfigMap")
    listing = {"metadata": {"resourceVersion": "10"}, "items": [{"metadata": {"name": "a", "resourceVersion": "9"}}]}
    kube.answer("GET", "/api/v1/configmaps", listing)
    kube.streams = [
        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
         {"type": "MODIFIED", "object": {"metadata": {"name": "a", "resourceVersion": "21"}}}],
        [{"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}],
        [{"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "30"}}}],
    ]
    stop = threading.Event()
    seen = []
    for event in cluster.follow(rt, stop=stop):
        seen.append((event.type, event.object["metadata"]["name"]))
        if len(seen) == 4:
            stop.set()
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "a"), ("DELETED", "a")]
    watches = [q for m, _, q, _, _ in kube.calls if m == "WATCH"]
    assert [w.get("resourceVersion") for w in watches] == ["10", "21", "10"]
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)


def test_follow_reports_errors_and_retries(kube: ScriptedKube) -> None:
    cluster = cluster_of(kube)
    rt = cluster.discovery.resolve("v1", "ConfigMap")
    kube.answer("GET", "/api/v1/configmaps", {"metadata": {"resourceVersion": "1"}, "items": []})
    kube.streams = [KubeError(0, "Unreachable", "connection refused"),
                    [{"type": "ADDED", "object": {"metadata": {"name": "b", "resourceVersion": "2"}}}]]
    errors: list[Exception] = []
    stop = threading.Event()
    for event in cluster.follow(rt, stop=stop, on_error=errors.append):
        assert event.object["metadata"]["name"] == "b"
        stop.set()
    assert [str(e) for e in errors] == ["ConfigMap watch: connection refused"]
