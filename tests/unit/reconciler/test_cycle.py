"""One Application's cycle, decided: no-op or full sync or delete pass, and when the next one runs —
as tables over the pure decisions, and through a real ``Controller._cycle`` on in-memory fakes (no
threads: the test calls the cycle itself)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from support.fake_cluster import FakeSource, RecordingCluster
from support.reconciler_builders import REV1, REV2

from driftguard.kube.resources import Cluster, ResourceType
from reconciler import cycle
from reconciler.controller import Controller, Settings
from reconciler.cycle import Requeue
from reconciler.gitsource import GitSource, SourceError
from reconciler.record import AppState

APP = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
       "metadata": {"name": "svc", "namespace": "driftguard-system", "generation": 3},
       "spec": {"source": {"repoURL": "https://git.example/org/repo", "path": "app"},
                "destination": {"namespace": "prod"}, "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}}
WEB = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n"
NOW = 1000.0


def state(**fields: Any) -> AppState:
    s = AppState.new(copy.deepcopy(APP))
    s.force_full = False
    s.next_full = NOW + 30
    for name, value in fields.items():
        setattr(s, name, value)
    return s


SYNCED = (REV1.sha, (), 3)


@pytest.mark.parametrize(("fields", "revision", "full"), [
    pytest.param({"synced": SYNCED}, REV1, False, id="same-revision-same-generation"),
    pytest.param({"synced": SYNCED}, REV2, True, id="new-revision"),
    pytest.param({"synced": (REV1.sha, (), 2)}, REV1, True, id="new-generation"),
    pytest.param({"synced": SYNCED}, dataclasses.replace(REV1, refs=(("values", "9" * 40),)), True,
                 id="a-ref-source-moved"),
    pytest.param({"synced": SYNCED}, None, True, id="revision-unresolved"),
    pytest.param({"synced": SYNCED, "force_full": True}, REV1, True, id="refresh-asked"),
    pytest.param({"synced": SYNCED, "failures": 1}, REV1, True, id="retrying-a-failure"),
    pytest.param({"synced": SYNCED, "next_full": NOW}, REV1, True, id="resync-due"),
    pytest.param({}, REV1, True, id="never-synced"),
])
def test_a_full_sync_or_nothing(fields: dict[str, Any], revision: Any, full: bool) -> None:
    s = state(**fields)
    assert cycle.needs_full(s, revision, due=cycle.full_due(s, NOW)) is full


@pytest.mark.parametrize(("failures", "next_full", "expected"), [
    pytest.param(0, 0.0, 3.0, id="poll"),
    pytest.param(0, NOW + 1.5, 1.5, id="resync-sooner-than-the-poll"),
    pytest.param(0, NOW - 5, 0.0, id="resync-overdue"),
    pytest.param(0, NOW + 60, 3.0, id="resync-later-than-the-poll"),
    pytest.param(1, 0.0, 6.0, id="first-failure-doubles"),
    pytest.param(3, 0.0, 24.0, id="third-failure"),
    pytest.param(5, 0.0, 60.0, id="backoff-capped"),
    pytest.param(50, NOW + 1, 60.0, id="failures-ignore-the-resync"),
])
def test_when_the_next_cycle_runs(failures: int, next_full: float, expected: float) -> None:
    assert cycle.delay(failures, refresh_interval=3.0, max_backoff=60.0, next_full=next_full, now=NOW) == expected


class AppCluster(RecordingCluster):
    """Records the JSON patches sent to the Application (the finalizer's removal)."""

    def __init__(self) -> None:
        super().__init__()
        self.app_patches: list[list[dict[str, Any]]] = []

    def json_patch(self, rt: ResourceType, namespace: str, name: str,
                   operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if rt.kind != "Application":
            return super().json_patch(rt, namespace, name, operations)
        self.app_patches.append([dict(op) for op in operations])
        return {}


class Setup:
    def __init__(self, tmp_path: Path, source: FakeSource, app: dict[str, Any] | None = None) -> None:
        self.cluster = AppCluster()
        self.source = source
        self.controller = Controller(cast(Cluster, self.cluster),
                                     Settings(namespace="driftguard-system", cache_dir=tmp_path),
                                     source=cast(GitSource, source))
        self.state = AppState.new(copy.deepcopy(app or APP))

    def cycle(self) -> Requeue:
        return self.controller._cycle(self.state)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.cluster.events]


def test_a_first_cycle_syncs_then_an_unchanged_revision_is_a_noop(tmp_path: Path) -> None:
    run = Setup(tmp_path, FakeSource(REV1, {"app/web.yaml": WEB}))

    assert run.cycle() == Requeue(failed=False)
    assert ("ConfigMap", "prod", "web") in run.cluster.objects
    assert run.state.synced == (REV1.sha, (), 3) and run.reasons() == ["Synced"]
    run.cluster.calls.clear()
    events, statuses = len(run.cluster.events), len(run.cluster.statuses)

    assert run.cycle() == Requeue(failed=False)
    assert run.source.calls == {"resolve": 2, "read": 1}, "fetched again, rendered once"
    assert sum(run.cluster.calls.values()) == 0, "a no-op makes no API call"
    assert (len(run.cluster.events), len(run.cluster.statuses)) == (events, statuses)


def test_an_unreachable_source_fails_the_cycle_and_is_retried(tmp_path: Path) -> None:
    run = Setup(tmp_path, FakeSource(REV1, resolve_error=SourceError("FetchFailed", "connection refused")))

    assert run.cycle() == Requeue(failed=True)
    assert run.cluster.writes() == 0 and run.cluster.objects == {}
    assert run.reasons() == ["FetchFailed"], "the Ready condition turning False is one Warning"
    conditions = {c["type"]: c for c in run.cluster.statuses[-1]["conditions"]}
    assert conditions["SourceReady"]["status"] == "False"

    assert run.cycle() == Requeue(failed=True)
    assert run.reasons() == ["FetchFailed"], "not repeated while nothing changes"


def test_a_recovered_source_says_so(tmp_path: Path) -> None:
    run = Setup(tmp_path, FakeSource(REV1, {"app/web.yaml": WEB},
                                     resolve_error=SourceError("FetchFailed", "connection refused")))
    assert run.cycle() == Requeue(failed=True)
    run.source.resolve_error = None
    run.state.failures = 1

    assert run.cycle() == Requeue(failed=False)
    assert run.reasons() == ["FetchFailed", "Synced", "Recovered"]


def test_an_invalid_spec_fails_without_fetching(tmp_path: Path) -> None:
    app = copy.deepcopy(APP)
    app["spec"]["source"]["repoURL"] = ""
    run = Setup(tmp_path, FakeSource(REV1, {"app/web.yaml": WEB}), app)

    assert run.cycle() == Requeue(failed=True)
    assert run.source.calls == {} and run.cluster.writes() == 0


def test_an_application_being_deleted_gets_a_delete_pass_not_a_sync(tmp_path: Path) -> None:
    run = Setup(tmp_path, FakeSource(REV1, {"app/web.yaml": WEB}))
    assert run.cycle() == Requeue(failed=False)
    run.state.obj["metadata"].update(deletionTimestamp="2026-03-01T12:00:00Z",
                                     finalizers=["driftguard.io/prune-on-delete"])

    assert run.cycle() == Requeue(failed=False)
    assert run.source.calls["resolve"] == 1, "no fetch while being deleted"
    assert run.cluster.objects == {} and run.reasons()[-1] == "PrunedOnDelete"
    assert run.cluster.app_patches[-1][-1] == {"op": "replace", "path": "/metadata/finalizers", "value": []}


RETRY2 = {"limit": 2, "backoff": {"duration": "1s", "factor": 3, "maxDuration": "5s"}}


def retrying(**fields: Any) -> AppState:
    app = copy.deepcopy(APP)
    app["spec"]["syncPolicy"]["retry"] = RETRY2
    s = AppState.new(app)
    s.force_full, s.next_full = False, NOW - 1  # a failed sync leaves the resync due
    for name, value in fields.items():
        setattr(s, name, value)
    return s


@pytest.mark.parametrize(("fields", "revision", "full"), [
    pytest.param({"failures": 1, "attempted": SYNCED}, REV1, True, id="retry-1-of-2"),
    pytest.param({"failures": 2, "attempted": SYNCED}, REV1, True, id="retry-2-of-2"),
    pytest.param({"failures": 3, "attempted": SYNCED}, REV1, False, id="limit-spent-same-revision"),
    pytest.param({"failures": 3, "attempted": SYNCED}, REV2, True, id="limit-spent-new-revision"),
    pytest.param({"failures": 3, "attempted": SYNCED, "force_full": True}, REV1, True, id="limit-spent-refresh"),
])
def test_retry_limit(fields: dict[str, Any], revision: Any, full: bool) -> None:
    s = retrying(**fields)
    assert cycle.needs_full(s, revision, due=cycle.full_due(s, NOW)) is full


@pytest.mark.parametrize(("failures", "expected"), [(1, 1.0), (2, 3.0), (3, 3.0)])
def test_retry_backoff(failures: int, expected: float) -> None:
    retry = retrying().spec.retry
    assert retry is not None
    # 1s, then 3s (factor 3); the third failure spends the limit: the next cycle is the poll (refreshInterval)
    assert cycle.delay(failures, refresh_interval=3.0, max_backoff=60.0, next_full=NOW, now=NOW,
                       retry=retry) == expected
    assert retry.delay(3) == 5.0, "capped at maxDuration"
