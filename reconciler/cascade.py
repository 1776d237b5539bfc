"""A cascading delete pass: what ``reconciler.deletion`` decides, done against the cluster.

An Application being deleted with one of our finalizers has its cycles replaced by delete passes: each
deletes its inventory through the prune path (``Applier.prune``: reverse apply order, each live object's
stamp re-checked), keeps what failed for the next pass, saves the inventory that is left, and once it is
empty removes the finalizer — with a JSON patch guarded by the finalizers list it read, re-read and
retried when someone changed that list meanwhile, so their finalizer is never clobbered.

The caller stops self-heal of the Application's objects first; a heal racing a pass cannot re-create
what it deletes (prune and heal take the same per-object lock, and heal re-checks ownership under it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from driftguard.core.changes import ChangeSet
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import NAMESPACES, Cluster, ResourceError
from reconciler import deletion
from reconciler.apply import Applier
from reconciler.crd import APPLICATIONS
from reconciler.desired import Desired
from reconciler.hooks import HookRun
from reconciler.reconcile import Stop
from reconciler.record import AppState, Event
from reconciler.reporting import Reporter

log = logging.getLogger(__name__)


class Cascade:
    def __init__(self, cluster: Cluster, applier: Applier, reporter: Reporter, *,
                 applier_of: Callable[[AppState], Applier] | None = None,
                 post_delete: Callable[[str, list[Desired], Applier], list[HookRun]] = lambda *_: []) -> None:
        """``applier_of(state)``: the applier that deletes as the Application's ServiceAccount (raises
        ``reconcile.Stop`` naming why there is none it may use; default: ``applier``); ``post_delete(application,
        hooks, applier)``: run the ``PostDelete`` hooks among ``hooks`` (``reconciler.waves``)."""
        self.cluster, self.applier, self.reporter = cluster, applier, reporter
        self._applier_of = applier_of or (lambda _: applier)
        self._post_delete = post_delete

    def run(self, state: AppState) -> bool:
        """One pass over ``state``'s inventory; True when it has to be retried (with backoff)."""
        app, before = str(state.key), state.memory.inventory
        refused = deletion.refusal(state.obj)
        if refused:
            log.warning("Application %s: %s", app, refused)
            self.reporter.emit(state, [Event("Warning", "CascadeRefused", refused)])
            return not self.release(state)
        try:
            applier = self._applier_of(state)
        except Stop as e:  # e.g. its Project is gone: nothing is deleted as the reconciler instead
            message = f"objects not deleted yet: {e.problem.message}"
            log.warning("Application %s is being deleted: %s", app, message)
            self.reporter.emit(state, [Event("Warning", "CascadeWaiting", message)])
            return True
        entries, kept = self._namespaces_kept(before.entries)
        outcomes, keep = applier.prune(entries, app, why="its Application is being deleted", deleting=True)
        if kept:
            self.reporter.emit(state, [Event("Normal", "NamespaceKept", (
                f"not deleted with the Application (it would delete everything in it): {', '.join(map(str, kept))}; "
                f"git opts a Namespace in with the annotation {deletion.NAMESPACE_OPT_IN}: \"true\""))])
        changes = ChangeSet([o.change for o in outcomes])
        remaining = Inventory.of(keep)
        self.reporter.metrics.record_changes(app, changes)
        self.reporter.metrics.managed.labels(app).set(len(remaining))
        with state.lock:
            events = state.deleted(changes, deletion.ours(state.obj))
            if remaining != before:
                self.reporter.save_inventory(state, remaining)
            self.reporter.write_status(state)
        self.reporter.emit(state, events)
        if changes.failed():
            log.warning("Application %s is being deleted: %s", app, state.delete_warning)
            return True
        if deletion.step(state.obj, len(remaining)) is not deletion.Step.RELEASE:
            return False
        self._run_post_delete(state, applier)
        return not self.release(state)

    def _run_post_delete(self, state: AppState, applier: Applier) -> None:
        """The ``PostDelete`` hooks of the last revision rendered, once, after everything else is deleted."""
        hooks = [d for d in state.memory.desired if d.hook]
        if state.memory.post_deleted or not hooks:
            return
        runs = self._post_delete(str(state.key), hooks, applier)
        state.memory.post_deleted = True
        self.reporter.emit(state, [Event("Warning" if r.result == "Failed" else "Normal", f"Hook{r.result}",
                                         f"{r.what}: {r.message}") for r in runs])

    def _namespaces_kept(self, entries: Iterable[Entry]) -> tuple[list[Entry], list[ObjectRef]]:
        """The entries to delete, and the Namespaces to keep (and drop from the inventory): those git
        did not opt in; one that cannot be read is kept for the next pass."""
        delete: list[Entry] = []
        kept: list[ObjectRef] = []
        for entry in entries:
            if entry.ref.kind != "Namespace" or entry.api_version != "v1":
                delete.append(entry)
                continue
            try:
                live = self.cluster.get(NAMESPACES, "", entry.ref.name)
            except ResourceError as e:
                log.warning("%s: cannot read it to check its opt-in: %s", entry.ref, e)
                delete.append(entry)  # prune re-reads it and fails or skips: kept in the inventory either way
                continue
            if live is None or deletion.namespace_opt_in(live):
                delete.append(entry)
            else:
                kept.append(entry.ref)
        return delete, kept

    def release(self, state: AppState, attempts: int = 3) -> bool:
        """Remove our finalizers, guarded by the finalizers list read (re-read and retried when it
        changed meanwhile); True when none of ours is left."""
        obj: dict[str, Any] | None = state.obj
        error: ResourceError | None = None
        for _ in range(attempts):
            if obj is None:
                return True
            operations = deletion.release_patch(obj)
            if not operations:
                return True
            try:
                self.cluster.json_patch(APPLICATIONS, state.key.namespace, state.key.name, operations)
            except ResourceError as e:
                if e.not_found:
                    return True
                error = e
                obj = self.cluster.get(APPLICATIONS, state.key.namespace, state.key.name)
                continue
            log.info("Application %s: inventory deleted; finalizer %s removed", state.key,
                     ", ".join(deletion.ours(obj)))
            return True
        log.warning("Application %s: finalizer not removed: %s", state.key, error)
        return False
