"""What the controller writes back about Applications: status, inventory and Events — the only writer.

The record (``reconciler.record.AppState``) is filled by full cycles, self-heal outcomes and delete
passes, whose folds return the Events they call for; ``emit`` writes them (and counts the reverts and
fights among them), ``write_status`` patches the status ``status.compose`` derives from the record, only
when it changed (self-heal marks it dirty; ``flush`` writes dirty ones in batches). The inventory is
written on its own, whenever ``reconcile`` or a delete pass hands one over (before anything new is
created), not with the rest of the status.

This module decides nothing: when to sync, what drifted and what to delete are decided elsewhere.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from driftguard.core.inventory import Inventory
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.crd import APPLICATIONS
from reconciler.fights import FightDetector
from reconciler.metrics import Metrics
from reconciler.record import AppState, Event, failed
from reconciler.selfheal import Tracker
from reconciler.status import Snapshot, SyncReport, compose, patch_for, sync_state

log = logging.getLogger(__name__)



class Reporter:
    """Writes Applications' status and inventory, and Events about them and their objects.

    ``tracker`` is called each time: a new leadership term brings a new ``Tracker``."""

    def __init__(self, cluster: Cluster, fights: FightDetector, tracker: Callable[[], Tracker],
                 metrics: Metrics) -> None:
        self.cluster = cluster
        self.fights = fights
        self.tracker = tracker
        self.metrics = metrics
        # Notifications (reconciler.notifier via the controller): every Event written, every status change.
        self.on_event: Callable[[AppState, Event], None] | None = None
        self.on_status: Callable[[AppState, Mapping[str, Any], Mapping[str, Any]], None] | None = None
        self.on_perimeter: Callable[[Mapping[str, Any], str, str], None] | None = None

    def snapshot(self, state: AppState) -> Snapshot:
        fights = self.fights.fighting(self.tracker().refs(state.key))
        return Snapshot(state.spec, state.report, state.memory.inventory,
                        drift=[*state.drift.values(), *state.reverted], health=dict(state.health), fights=fights,
                        deletion=state.deletion, history=state.history)

    def write_status(self, state: AppState) -> None:
        """Compose and patch the status if it changed. Hold ``state.lock``."""
        state.status_dirty = False
        current = compose(self.snapshot(state), state.status, dt.datetime.now(dt.UTC))
        patch = patch_for(state.status, current)
        if not patch:
            return
        try:
            self.cluster.patch_status(APPLICATIONS, state.key.namespace, state.key.name, patch)
        except ResourceError as e:
            log.warning("Application %s: status not written: %s", state.key, e)
            return
        before, state.status = state.status, current
        self.metrics.set_state(str(state.key), sync_state(self.snapshot(state)))
        if self.on_status is not None:
            self.on_status(state, before, current)

    def save_inventory(self, state: AppState, inventory: Inventory) -> None:
        with state.lock:
            patch = {"inventory": inventory.to_list(), "inventoryCount": len(inventory)}
            self.cluster.patch_status(APPLICATIONS, state.key.namespace, state.key.name, patch)
            state.status.update(patch)
            state.memory.inventory = inventory

    def flush(self, states: Iterable[AppState]) -> None:
        """Write the status of each of ``states`` that self-heal changed since it was last written."""
        for state in states:
            if state.status_dirty and state.report is not None:
                with state.lock:
                    self.write_status(state)

    def synced(self, state: AppState, report: SyncReport) -> None:
        """Count and log a full cycle (before its status is written: a status says Synced only once the
        metrics agree)."""
        app = str(state.key)
        self.metrics.cycles.labels(app, "error" if failed(report) else "synced").inc()
        self.metrics.duration.labels(app).observe(report.duration)
        self.metrics.record_changes(app, report.changes)
        self.metrics.managed.labels(app).set(len(state.memory.inventory))
        log.info("Application %s: %s%s (%.3fs)", app, report.changes.summary(),
                 f"; {report.problem.message}" if report.problem else "", report.duration)

    def emit(self, state: AppState, events: Iterable[Event]) -> None:
        """Write ``events`` (about ``state``'s Application or one of its objects). The reverted and fights
        counters count the object Events of those reasons."""
        app = str(state.key)
        for event in events:
            if self.on_event is not None:
                self.on_event(state, event)
            if event.about is None:
                self.cluster.create_event(state.obj, type_=event.type, reason=event.reason, message=event.message)
                continue
            if event.reason == "DriftReverted":
                self.metrics.reverted.labels(app).inc()
            elif event.reason == "FightDetected":
                self.metrics.fights.labels(app).inc()
            self.cluster.create_event(self._involved(event.about), type_=event.type, reason=event.reason,
                                      message=event.message)

    def perimeter(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event about one of driftguard's own objects put back (``reconciler.perimeter``, the
        Lease); counted in ``driftguard_perimeter_restored_total`` by the caller's cause."""
        self.cluster.create_event(obj, type_="Warning", reason=reason, message=message)
        if self.on_perimeter is not None:
            self.on_perimeter(obj, reason, message)

    def _involved(self, ref: ObjectRef) -> dict[str, Any]:
        found = self.tracker().lookup(ref)
        api_version = found[1].api_version if found else ""
        return {"apiVersion": api_version, "kind": ref.kind,
                "metadata": {"name": ref.name, "namespace": ref.namespace or None}}
