"""The controller: watch Applications, schedule their cycles, self-heal, keep their status current.

Each Application is *polled* every ``refreshInterval`` (default 3 s): a git fetch, and nothing else
when the revision, the spec and the last result are unchanged — no API call at all. A *full* sync
(render, compare every object, prune) runs when the revision or spec changed, on a push to
``/refresh``, after a failure (with exponential backoff), when a break-glass grant expires, and every
``resync_interval`` as a safety net behind the watches. Cycles of one Application never overlap;
different Applications run on a small worker pool.

Self-heal outcomes and full cycles feed the same per-Application record (drift, health, fights), from
which ``status.compose`` derives the status; the status is patched only when it changed. The run queue
lives in ``reconciler.schedule``, the record and the writing of status and Events in ``reconciler.reporting``;
this module decides what happens when.

Deleting an Application: without one of the cascading finalizers (``reconciler.deletion``) it is
forgotten at once — its objects stay and are no longer self-healed; with one, its cycles become delete
passes over its inventory (the prune path) until it is empty, then the finalizer is removed.

Leadership: ``run`` campaigns for the Lease first (unless disabled) and does all of this only while
leading. A standby answers ``/refresh`` by annotating the Application, which the leader watches. A
leader that cannot renew (the API server is down longer than the renew deadline) stops everything it
started, waits for it to finish, and campaigns again from nothing, as a restarted process would; only
when something of the lost term is still running does ``run`` return 1 so that the process exits.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from driftguard.core.changes import Action, ChangeSet
from driftguard.core.contract import PREFIX
from driftguard.core.inventory import Inventory
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import Cluster, ResourceError, WatchEvent
from reconciler import deletion
from reconciler.application import AppKey, parse_application
from reconciler.apply import Applier, Mode, Outcome
from reconciler.desired import Desired
from reconciler.fights import FightDetector
from reconciler.gitsource import GitSource
from reconciler.health import Health
from reconciler.leader import LeaderElector
from reconciler.metrics import Metrics
from reconciler.reconcile import Reconciler, Result, Stop
from reconciler.reporting import APPLICATIONS, AppState, Reporter
from reconciler.revision import Revision
from reconciler.schedule import Schedule
from reconciler.selfheal import SelfHeal, Tracker
from reconciler.status import DeletionReport

log = logging.getLogger(__name__)

ANN_REFRESH: Final = PREFIX + "refresh"


@dataclass(frozen=True)
class Settings:
    namespace: str = "driftguard-system"  # where Applications live; "" for every namespace
    cache_dir: Path = Path.home() / ".cache" / "driftguard" / "git"
    resync_interval: float = 60.0
    max_backoff: float = 60.0
    workers: int = 2
    apply_concurrency: int = 4
    heal_workers: int = 2
    watch_timeout: float = 30.0
    fight_limit: int = 5
    fight_window: float = 60.0
    stop_timeout: float = 30.0  # how long a lost term's threads may take to stop before the process exits


class Controller:
    def __init__(
        self, cluster: Cluster, settings: Settings | None = None, *, source: GitSource | None = None,
        elector: LeaderElector | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings or Settings()
        s = self.settings
        self.source = source or GitSource(s.cache_dir)
        self.applier = Applier(cluster, fights=FightDetector(limit=s.fight_limit, window=s.fight_window),
                               concurrency=s.apply_concurrency)
        self.reconciler = Reconciler(cluster, self.source, self.applier)
        self.tracker = Tracker()
        self.metrics = Metrics(cluster.request_counts)
        self.elector = elector
        self.states: dict[AppKey, AppState] = {}
        self.running = threading.Event()
        self._cv = threading.Condition()  # guards ``states`` and the schedule
        self.schedule: Schedule[AppState] = Schedule(self.states.get, self._cv)
        self.reporter = Reporter(cluster, self.applier.fights, lambda: self.tracker, self.metrics)
        self._selfheal: SelfHeal | None = None
        self._wound_down = True  # every thread of the last term has ended

    # ------------------------------------------------------------ running

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` (0). A lost Lease ends the term and we campaign again; 1 (exit and let the
        replica restart) only when a thread of the lost term would not end, so nothing acts unled."""
        self.running.set()
        try:
            if self.elector is None:
                self._lead(stop)
                return 0
            while self.elector.run(stop, self._lead):
                if not self._wound_down:
                    log.error("leadership lost while a sync or self-heal was still running; exiting")
                    return 1
                log.warning("leadership lost; everything it started has stopped; campaigning again")
            return 0
        finally:
            self.running.clear()

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading.is_set()

    def _lead(self, done: threading.Event) -> None:
        self.metrics.leader.set(1)
        with self._cv:
            self.states.clear()
            self.schedule.clear()
            self.tracker = Tracker()  # a new term starts from nothing, like a new process
        self._selfheal = SelfHeal(self.cluster, self.applier, self.tracker, mode_of=self._mode_of,
                                  on_outcome=self._healed, noted=self._noted, workers=self.settings.heal_workers,
                                  watch_timeout=self.settings.watch_timeout)
        self._selfheal.start()
        threads = [threading.Thread(target=self._watch_applications, args=(done,), name="applications", daemon=True)]
        threads += [threading.Thread(target=self._work, args=(done,), name=f"sync-{i}", daemon=True)
                    for i in range(self.settings.workers)]
        threads.append(threading.Thread(target=self._flush_status, args=(done,), name="status", daemon=True))
        for thread in threads:
            thread.start()
        done.wait()
        self._selfheal.stop()
        with self._cv:
            self._cv.notify_all()
        for thread in threads[1:]:
            thread.join(timeout=self.settings.stop_timeout)
        healers_done = self._selfheal.join(timeout=self.settings.stop_timeout)
        # The Applications watch (threads[0]) only reads, and returns at its next event.
        self._wound_down = healers_done and not any(thread.is_alive() for thread in threads[1:])
        self.metrics.leader.set(0)

    # ------------------------------------------------------------ the public knobs

    def refresh(self, key: AppKey | None = None) -> list[AppKey]:
        """Force a full sync of one Application (or all) now; a standby asks the leader via an annotation."""
        with self._cv:
            keys = [key] if key is not None and key in self.states else ([] if key else list(self.states))
        if not self.leading:
            return self._ask_leader(key)
        for k in keys:
            with self._cv:
                state = self.states.get(k)
                if state is not None:
                    state.force_full = True
                    self.schedule.request(state, 0.0)
        return keys

    def _ask_leader(self, key: AppKey | None) -> list[AppKey]:
        if key is not None:
            targets = [key]
        else:
            items, _ = self.cluster.list(APPLICATIONS, self.settings.namespace)
            targets = [AppKey.of(item) for item in items]
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        asked = []
        for k in targets:
            try:
                self.cluster.merge_patch(APPLICATIONS, k.namespace, k.name,
                                         {"metadata": {"annotations": {ANN_REFRESH: stamp}}})
                asked.append(k)
            except ResourceError as e:
                if not e.not_found:
                    raise
        return asked

    # ------------------------------------------------------------ Applications

    def _watch_applications(self, done: threading.Event) -> None:
        def failed(error: Exception) -> None:
            log.warning("watching Applications: %s", error)

        for event in self.cluster.follow(APPLICATIONS, self.settings.namespace, stop=done,
                                         timeout=self.settings.watch_timeout, on_error=failed):
            if done.is_set():
                return
            self._on_application(event)

    def _on_application(self, event: WatchEvent) -> None:
        key = AppKey.of(event.object)
        with self._cv:
            state = self.states.get(key)
            # Gone, or being deleted without a cascading finalizer: its objects stay, no longer managed.
            if event.type == "DELETED" or deletion.step(event.object, 0) is deletion.Step.FORGET:
                if state is not None:
                    del self.states[key]
                    self._let_go(key)
                    self.metrics.forget(str(key))
                return
            spec = parse_application(event.object)
            if state is None:
                state = AppState(key, event.object, spec, dict(event.object.get("status") or {}))
                state.memory.inventory = _inventory(state.status, key)
                self.states[key] = state
                self.schedule.request(state, 0.0)
                return
            asked = _annotation(event.object, ANN_REFRESH) != _annotation(state.obj, ANN_REFRESH)
            asked = asked or deletion.being_deleted(event.object) != deletion.being_deleted(state.obj)
            state.obj = event.object
            if spec != state.spec or asked:
                state.spec, state.force_full = spec, True
                self.schedule.request(state, 0.0)

    def _noted(self, key: AppKey, ref: ObjectRef) -> bool:
        state = self.states.get(key)
        return state is not None and (ref in state.drift or ref in state.health)

    def _let_go(self, key: AppKey) -> None:
        """Stop self-healing ``key``'s objects (its Application is gone or being deleted)."""
        self.applier.fights.forget(self.tracker.drop(key))
        if self._selfheal is not None:
            self._selfheal.ensure_watches()

    def _mode_of(self, key: AppKey) -> Mode | None:
        state = self.states.get(key)
        if state is None or not state.spec.automated or deletion.being_deleted(state.obj):
            return None
        return Mode(apply=True, self_heal=state.spec.self_heal)

    # ------------------------------------------------------------ scheduling

    def _work(self, done: threading.Event) -> None:
        self.schedule.serve(done, self._cycle, lambda state: self._schedule_after(state, failed=True))

    def _schedule_after(self, state: AppState, *, failed: bool) -> None:
        state.failures = state.failures + 1 if failed else 0
        interval = state.spec.refresh_interval
        if failed:
            interval = min(self.settings.max_backoff, interval * 2 ** min(state.failures, 10))
        elif state.next_full:
            interval = max(0.0, min(interval, state.next_full - time.monotonic()))
        self.schedule.request(state, interval)

    # ------------------------------------------------------------ one cycle

    def _cycle(self, state: AppState) -> None:
        if deletion.being_deleted(state.obj):
            failed = self._delete(state)
            with self._cv:
                self._schedule_after(state, failed=failed)
            return
        spec, app = state.spec, str(state.key)
        revision: Revision | None = None
        full = state.force_full or time.monotonic() >= state.next_full or state.failures > 0
        if spec.valid:
            started = time.monotonic()
            try:
                revision = self.reconciler.resolve(spec)
            except (Stop, ResourceError):
                full = True
            self.metrics.fetch.observe(time.monotonic() - started)
            full = full or revision is None or state.synced != (revision.sha, spec.generation)
        if not full:
            self.metrics.cycles.labels(app, "noop").inc()
            with self._cv:
                self._schedule_after(state, failed=False)
            return
        state.force_full = False
        log.debug("Application %s: full sync at %s", app, revision.short if revision else "?")
        result = self.reconciler.reconcile(
            spec, state.memory, revision=revision,
            save_inventory=lambda inventory: self.reporter.save_inventory(state, inventory),
            on_desired=lambda desired: self._track(state.key, desired),
        )
        failed = self._absorb(state, result)
        with self._cv:
            self._schedule_after(state, failed=failed)

    def _delete(self, state: AppState) -> bool:
        """One pass of a cascading delete (the Application is being deleted and carries one of our
        finalizers): delete its inventory through the prune path, keep what failed, and remove the
        finalizer once the inventory is empty. True when the pass has to be retried (with backoff)."""
        key, app = state.key, str(state.key)
        self._let_go(key)  # first: a self-heal must not re-create what is deleted here
        before = state.memory.inventory
        outcomes, keep = self.applier.prune(before.entries, app, why="its Application is being deleted")
        changes = ChangeSet([o.change for o in outcomes])
        remaining = Inventory.of(keep)
        with state.lock:
            state.deletion = DeletionReport(deletion.ours(state.obj), changes)
            if remaining != before:
                self.reporter.save_inventory(state, remaining)
            self.reporter.write_status(state)
        self.metrics.record_changes(app, changes)
        self.metrics.managed.labels(app).set(len(remaining))
        deleted = [str(c.ref) for c in changes.changes if c.action is Action.DELETED]
        if deleted:
            self.cluster.create_event(state.obj, type_="Normal", reason="PrunedOnDelete",
                                      message=f"deleted {', '.join(deleted[:20])}")
        failed = changes.failed()
        if failed:
            message = "; ".join(str(c) for c in failed[:20]) + "; retrying"
            if message != state.delete_warning:
                self.cluster.create_event(state.obj, type_="Warning", reason="DeleteFailed", message=message)
            state.delete_warning = message
            log.warning("Application %s is being deleted: %s", app, message)
            return True
        if deletion.step(state.obj, len(remaining)) is not deletion.Step.RELEASE:
            return False
        return not self._release(state)

    def _release(self, state: AppState, attempts: int = 3) -> bool:
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

    def _track(self, key: AppKey, desired: list[Desired]) -> None:
        self.tracker.declare(key, desired)
        if self._selfheal is not None:
            self._selfheal.ensure_watches()

    def _absorb(self, state: AppState, result: Result) -> bool:
        """Fold a full cycle's result into the Application's record; write status, Events, metrics."""
        report, app = result.report, str(state.key)
        failed = report.problem is not None or bool(report.failures())
        with state.lock:
            previous_ready = _condition(state.status, "Ready")
            state.report = report
            if report.problem is None:
                assert report.revision is not None
                state.synced = (report.revision.sha, state.spec.generation)
                wanted = {d.ref for d in result.desired}
                state.drift = {r: d for r, d in state.drift.items() if r in wanted}
                state.health = {r: h for r, h in state.health.items() if r in wanted}
                for outcome in result.outcomes:
                    self._note(state, outcome)
                state.next_full = time.monotonic() + self.settings.resync_interval
                for outcome in result.outcomes:
                    self._revisit(state, outcome)
            self.reporter.write_status(state)
            ready = _condition(state.status, "Ready")
        self.reporter.events(state, report, previous_ready, ready)
        self.metrics.cycles.labels(app, "error" if failed else "synced").inc()
        self.metrics.duration.labels(app).observe(report.duration)
        self.metrics.record_changes(app, report.changes)
        self.metrics.managed.labels(app).set(len(state.memory.inventory))
        log.info("Application %s: %s%s (%.3fs)", app, report.changes.summary(),
                 f"; {report.problem.message}" if report.problem else "", report.duration)
        return failed

    def _note(self, state: AppState, outcome: Outcome) -> None:
        """Record one object's outcome (from a full cycle or self-heal). Hold ``state.lock``."""
        ref, app = outcome.ref, str(state.key)
        if outcome.health[0] is Health.HEALTHY:
            state.health.pop(ref, None)
        elif outcome.change.action is not Action.FAILED:
            state.health[ref] = outcome.health
        drift = outcome.drift
        if drift is None:
            if outcome.change.action is not Action.FAILED:
                state.drift.pop(ref, None)
        elif drift.state == "Reverted":
            state.drift.pop(ref, None)
            state.reverted.append(drift)
            self.metrics.reverted.labels(app).inc()
            self.reporter.object_event(ref, "Normal", "DriftReverted", outcome.change.message)
        else:
            state.drift[ref] = drift
        if outcome.untrusted:  # an adopted object carried driftguard.io/ keys the webhook never saw
            self.cluster.create_event(state.obj, type_="Warning", reason="UntrustedMetadataRemoved",
                                      message=str(outcome.change))
        if outcome.fight:
            self.metrics.fights.labels(app).inc()
            message = (f"{ref} was changed back {self.settings.fight_limit}+ times in "
                       f"{self.settings.fight_window:.0f}s; self-heal backs off")
            self.reporter.object_event(ref, "Warning", "FightDetected", message)
            self.cluster.create_event(state.obj, type_="Warning", reason="FightDetected", message=message)

    def _revisit(self, state: AppState, outcome: Outcome) -> None:
        """Make the next full sync happen when a break-glass grant seen in ``outcome`` expires."""
        if outcome.expires_at is None:
            return
        left = (outcome.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        state.next_full = min(state.next_full, time.monotonic() + max(0.0, left) + 0.1)

    def _healed(self, key: AppKey, outcome: Outcome) -> None:
        state = self.states.get(key)
        if state is None:
            return
        quiet = outcome.health[0] is Health.HEALTHY and outcome.ref not in state.health
        if outcome.change.action is Action.UNCHANGED and outcome.ref not in state.drift and (
                quiet or state.health.get(outcome.ref) == outcome.health):
            return
        with state.lock:
            self._note(state, outcome)
            self._revisit(state, outcome)
            state.status_dirty = True
        if outcome.expires_at is not None:
            with self._cv:
                self.schedule.request(state, max(0.0, state.next_full - time.monotonic()))
        self.metrics.record_changes(str(key), ChangeSet([outcome.change]))

    def _flush_status(self, done: threading.Event) -> None:
        while not done.wait(0.1):
            self.reporter.flush(list(self.states.values()))


def _inventory(status: dict[str, Any], key: AppKey) -> Inventory:
    try:
        return Inventory.from_list(status.get("inventory"))
    except (KeyError, ValueError, TypeError) as e:
        log.warning("Application %s: unreadable status.inventory (%s); starting empty, nothing will be pruned", key, e)
        return Inventory()


def _annotation(obj: dict[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key, ""))


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c.get("type") == type_), {})

