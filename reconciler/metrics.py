"""Prometheus metrics of the reconciler, on a registry of its own (tests build as many as they like)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from driftguard.core.changes import ChangeSet


class _RequestCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "driftguard_apiserver_requests", "Requests sent to the API server, by verb.", labels=["verb"]
        )
        for verb, count in sorted(self._counts().items()):
            family.add_metric([verb], count)
        yield family


class Metrics:
    def __init__(self, request_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("driftguard_reconcile", "Reconcile cycles, by Application and result "
                              "(synced, error, noop).", ["application", "result"], registry=r)
        self.duration = Histogram("driftguard_reconcile_duration_seconds", "Duration of full sync cycles.",
                                  ["application"], registry=r,
                                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.changes = Counter("driftguard_object_changes", "Object changes, by Application and action.",
                               ["application", "action"], registry=r)
        self.reverted = Counter("driftguard_drift_reverted", "Drifted objects put back to git's state.",
                                ["application"], registry=r)
        self.fights = Counter("driftguard_fights", "Fights detected (an object reverted too often).",
                              ["application"], registry=r)
        self.managed = Gauge("driftguard_managed_objects", "Objects in the Application's inventory.",
                             ["application"], registry=r)
        self.sync_state = Gauge("driftguard_application_sync", "1 for the Application's current sync state.",
                                ["application", "state"], registry=r)
        self.fetch = Histogram("driftguard_git_fetch_duration_seconds", "git fetch and revision resolution.",
                               registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.perimeter_restored = Counter(
            "driftguard_perimeter_restored", "driftguard's own objects put back after a change admission cannot "
            "stop, by kind and cause (missing, altered, foreign-holder).", ["kind", "cause"], registry=r)
        self.leader = Gauge("driftguard_leader", "1 while this replica is the leader.", registry=r)
        self.renders = Histogram("driftguard_render_duration_seconds", "Renders of a revision by a tool or of a "
                                 "plain directory (cached revisions are not rendered again), by renderer and result.",
                                 ["renderer", "result"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        r.register(_RequestCollector(request_counts))

    def record_changes(self, application: str, changes: ChangeSet) -> None:
        for action, count in changes.counts().items():
            self.changes.labels(application, action.value).inc(count)

    def set_state(self, application: str, state: str) -> None:
        for candidate in ("Synced", "OutOfSync", "Error", "Unknown"):
            self.sync_state.labels(application, candidate).set(1 if candidate == state else 0)

    def forget(self, application: str) -> None:
        with contextlib.suppress(KeyError):
            self.managed.remove(application)
        for candidate in ("Synced", "OutOfSync", "Error", "Unknown"):
            with contextlib.suppress(KeyError):
                self.sync_state.remove(application, candidate)
