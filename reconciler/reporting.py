"""What the controller knows of each Application, and what it writes back: status, inventory, Events.

``AppState`` is the per-Application record. Full cycles and self-heal outcomes fill it; ``status.compose``
derives the status from it, and the status is patched only when that changed (self-heal marks it dirty;
``flush`` writes dirty ones in batches). The inventory is written on its own, whenever ``reconcile`` or a
delete pass hands one over (before anything new is created), not with the rest of the status.

This module decides nothing: when to sync, what drifted and what to delete are the controller's. The
record's own lock (``AppState.lock``) guards it while status is composed and written; the scheduling
fields (``due``, ``running``, ``again``) belong to ``reconciler.schedule`` and its lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from driftguard.core.changes import Action
from driftguard.core.inventory import Inventory
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import Cluster, ResourceError, ResourceType
from reconciler import application as appmod
from reconciler.application import AppKey, AppSpec
from reconciler.apply import DriftRecord
from reconciler.fights import FightDetector
from reconciler.health import Health
from reconciler.metrics import Metrics
from reconciler.reconcile import Memory
from reconciler.selfheal import Tracker
from reconciler.status import DeletionReport, Snapshot, SyncReport, compose, patch_for, sync_state

log = logging.getLogger(__name__)

APPLICATIONS: Final = ResourceType(appmod.GROUP, appmod.VERSION, appmod.KIND, "applications", namespaced=True)
REVERTED_KEPT: Final = 20


@dataclass(eq=False)
class AppState:
    key: AppKey
    obj: dict[str, Any]
    spec: AppSpec
    status: dict[str, Any]
    memory: Memory = field(default_factory=Memory)
    report: SyncReport | None = None
    synced: tuple[str, int] = ("", -1)  # (sha, generation) of the last good full sync
    drift: dict[ObjectRef, DriftRecord] = field(default_factory=dict)
    reverted: deque[DriftRecord] = field(default_factory=lambda: deque(maxlen=REVERTED_KEPT))
    health: dict[ObjectRef, tuple[Health, str]] = field(default_factory=dict)
    failures: int = 0
    force_full: bool = True
    next_full: float = 0.0
    due: float | None = None
    running: bool = False
    again: bool = False
    status_dirty: bool = False
    deletion: DeletionReport | None = None  # the last pass of a cascading delete
    delete_warning: str = ""  # the last DeleteFailed message recorded as an Event (not repeated per retry)
    lock: threading.RLock = field(default_factory=threading.RLock)


class Reporter:
    """Writes Applications' status and inventory, and Events about them and their objects.

    ``tracker`` is called each time: a new leadership term brings a new ``Tracker``."""

    def __init__(self, cluster: Cluster, fights: FightDetector, tracker: Callable[[], Tracker],
                 metrics: Metrics) -> None:
        self.cluster = cluster
        self.fights = fights
        self.tracker = tracker
        self.metrics = metrics

    def snapshot(self, state: AppState) -> Snapshot:
        fights = self.fights.fighting(self.tracker().refs(state.key))
        return Snapshot(state.spec, state.report, state.memory.inventory,
                        drift=[*state.drift.values(), *state.reverted], health=dict(state.health), fights=fights,
                        deletion=state.deletion)

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
        state.status = current
        self.metrics.set_state(str(state.key), sync_state(self.snapshot(state)))

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

    def events(self, state: AppState, report: SyncReport, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Events for a full cycle: what it wrote and pruned, and a change of the Ready condition."""
        short = report.revision.short if report.revision else "?"
        if report.applied.writes():
            self.cluster.create_event(state.obj, type_="Normal", reason="Synced",
                                      message=f"{short}: {report.applied.summary()}")
        deleted = [str(c.ref) for c in report.pruned.changes if c.action is Action.DELETED]
        if deleted:
            self.cluster.create_event(state.obj, type_="Normal", reason="Pruned",
                                      message=f"{short}: deleted {', '.join(deleted[:20])}")
        moved = (before.get("status"), before.get("reason")) != (after.get("status"), after.get("reason"))
        if moved and after.get("status") == "False":
            self.cluster.create_event(state.obj, type_="Warning", reason=str(after.get("reason")),
                                      message=str(after.get("message")))
        elif moved and after.get("status") == "True" and before:
            self.cluster.create_event(state.obj, type_="Normal", reason="Recovered", message=str(after.get("message")))

    def object_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        found = self.tracker().lookup(ref)
        api_version = found[1].api_version if found else ""
        involved = {"apiVersion": api_version, "kind": ref.kind,
                    "metadata": {"name": ref.name, "namespace": ref.namespace or None}}
        self.cluster.create_event(involved, type_="Warning" if type_ == "Warning" else "Normal",
                                  reason=reason, message=message)
