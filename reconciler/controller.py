"""The controller: watch Applications, schedule their cycles, self-heal, keep their status current.

Each Application is *polled* every ``refreshInterval`` (default 3 s): a git fetch, and nothing else
when the revision, the spec and the last result are unchanged — no API call at all. A *full* sync
(render, compare every object, prune) runs when the revision or spec changed, on a push to
``/refresh``, after a failure (with exponential backoff), when a break-glass grant expires, and every
``resync_interval`` as a safety net behind the watches. Cycles of one Application never overlap;
different Applications run on a small worker pool.

This module is the machinery — threads, the Applications watch, the run queue (``reconciler.schedule``) —
and decides nothing itself. A cycle returns a ``cycle.Requeue`` and ``_requeue`` is the one place that
reschedules (``reconciler.cycle`` decides no-op or full, and the delay). Results fold into the
per-Application record purely (``reconciler.record``), returning the Events they call for; the
``Reporter`` writes those, the status and the inventory. Deleting an Application without a cascading
finalizer (``reconciler.deletion``) forgets it — its objects stay, no longer self-healed; with one, its
cycles become delete passes (``reconciler.cascade``) until its inventory is empty.

Leadership: ``run`` campaigns for the Lease first (unless disabled) and does all of this only while
leading. A standby answers ``/refresh`` by annotating the Application, which the leader watches. A
leader that cannot renew (the API server is down longer than the renew deadline) stops everything it
started, waits for it to finish, and campaigns again from nothing, as a restarted process would; only
when something of the lost term is still running does ``run`` return 1 so that the process exits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from driftguard import logs
from driftguard.core.audittrail import Entry
from driftguard.core.changes import ChangeSet
from driftguard.core.clock import format_time
from driftguard.core.inventory import Inventory
from driftguard.core.manifests import Limits
from driftguard.core.marks import MarkKey, Marks
from driftguard.core.objects import ObjectRef
from driftguard.core.projects import Project
from driftguard.kube.resources import NAMESPACES, Cluster, ResourceError, WatchEvent
from reconciler import cycle, deletion, notifications, standby
from reconciler.application import AppKey
from reconciler.apply import Applier, Mode, Outcome
from reconciler.audittrail import AuditTrail
from reconciler.cascade import Cascade
from reconciler.crd import APPLICATIONS, PROJECTS
from reconciler.cycle import Requeue
from reconciler.desired import Desired
from reconciler.fights import FightDetector
from reconciler.gitsource import GitSource
from reconciler.holders import Holders
from reconciler.leader import LeaderElector
from reconciler.metrics import Metrics
from reconciler.notifier import Notifier
from reconciler.perimeter import Perimeter
from reconciler.projects import ProjectSource
from reconciler.reconcile import Reconciler, Result, Stop
from reconciler.record import AppState, Event, Operation, condition, failed, sync_events
from reconciler.renderer import MiB, Renderer, RenderLimits, RenderTools
from reconciler.reporting import Reporter
from reconciler.revision import Revision
from reconciler.schedule import Schedule
from reconciler.selfheal import SelfHeal, Tracker
from reconciler.settings import Settings

__all__ = ["Controller", "Settings"]

log = logging.getLogger(__name__)


def load_marks(settings: Settings) -> Marks:
    """The mark key from ``--mark-key-file`` (ValueError naming the file when unreadable); without one,
    no break-glass grant or drift mark is believed, and the log says so once."""
    ttl = dt.timedelta(seconds=settings.break_glass_ttl)
    path = settings.mark_key_file
    if path is None:
        log.warning("no --mark-key-file: break-glass grants and drift marks are ignored (reverted as drift)")
        return Marks.unkeyed(ttl)
    try:
        return Marks(MarkKey.from_text(path.read_text()), ttl)
    except (OSError, ValueError) as e:
        raise ValueError(f"--mark-key-file {path}: {e}") from None


class NotLeader(Exception):
    """This replica does not lead: it runs no sync. ``leader``: the Lease's holder as last seen ("" if none)."""

    def __init__(self, message: str, leader: str = "", replica: str = "") -> None:
        super().__init__(message)
        self.leader, self.replica = leader, replica  # the Lease's holder; this replica


class Busy(Exception):
    """An on-demand sync of the Application is already waiting."""


class Controller:
    def __init__(
        self, cluster: Cluster, settings: Settings | None = None, *, source: GitSource | None = None,
        elector: LeaderElector | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings or Settings()
        s = self.settings
        self.source = source or GitSource(s.cache_dir, max_file=s.max_file_bytes, max_total=s.max_revision_bytes)
        self.applier = Applier(cluster, fights=FightDetector(limit=s.fight_limit, window=s.fight_window),
                               concurrency=s.apply_concurrency, marks=load_marks(s))
        self.tracker = Tracker()
        self.metrics = Metrics(cluster.request_counts)
        self.elector = elector
        self.states: dict[AppKey, AppState] = {}
        self.running = threading.Event()
        self._cv = threading.Condition()  # guards ``states`` and the schedule
        self.schedule: Schedule[AppState] = Schedule(self.states.get, self._cv)
        self.reporter = Reporter(cluster, self.applier.fights, lambda: self.tracker, self.metrics)
        self.holders = Holders(cluster)
        self.perimeter = Perimeter(
            cluster, s.system_namespace, name=s.webhook_configuration, report=self.reporter.perimeter,
            restored=lambda kind, cause: self.metrics.perimeter_restored.labels(kind, cause).inc(),
            interval=s.perimeter_interval, watch_timeout=s.watch_timeout, settle=s.perimeter_settle,
        ) if s.webhook_configuration else None
        covered = self.perimeter.uncovered if self.perimeter is not None else None
        self.projects = ProjectSource(cluster, s.projects_in, s.system_namespace)
        tools = RenderTools({"kustomize": s.kustomize, "helm": s.helm, "jsonnet": s.jsonnet})
        limits = RenderLimits(timeout=s.render_timeout, memory=s.render_memory * MiB,
                              max_output=s.render_max_output * MiB, max_objects=s.max_objects,
                              parse=Limits(max_nodes=s.max_yaml_nodes, max_depth=s.max_yaml_depth))
        self.reconciler = Reconciler(cluster, self.source, self.applier, uncovered=(
            (lambda namespace: covered(namespace, self._namespace_labels)) if covered else lambda _: ""),
            projects=self.projects, renderer=Renderer(tools, limits),
            rendered=lambda by, result, seconds: self.metrics.renders.labels(by, result).observe(seconds),
            allow_local=s.allow_local_repos, oci_plain_http_loopback=s.oci_plain_http_loopback,
            default_service_account=s.default_service_account, wave_timeout=s.wave_timeout)
        self.cascade = Cascade(cluster, self.applier, self.reporter, applier_of=self._cascade_applier,
                               post_delete=self.reconciler.waves.post_delete)
        self.audit_trail = AuditTrail(
            cluster, s.audit_namespace or s.system_namespace, retention=s.audit_retention,
            max_records=s.audit_max_records, flush_seconds=s.audit_flush, watch_timeout=s.watch_timeout,
            on_entry=self._audited,
        ) if s.audit_trail else None
        self.notifier = Notifier(cluster, allow_loopback=s.notify_loopback)
        self.reporter.on_event, self.reporter.on_status = self._notify_event, self._notify_status
        self.reporter.on_perimeter = self._notify_perimeter
        if self.audit_trail is not None:
            self.audit_trail.on_new = self._notify_audit
        if elector is not None and elector.on_foreign is None:
            elector.on_foreign = self._lease_reclaimed
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

    def not_leader(self) -> NotLeader:
        """What a standby says to a sync: who leads (the Lease's holder), or that no one does right now."""
        elector = self.elector
        assert elector is not None
        lease = f"Lease {elector.namespace}/{elector.name}"
        holder = elector.holder
        if not holder or holder == elector.identity:
            return NotLeader(f"this reconciler replica ({elector.identity}) is a standby and no replica holds the "
                             f"{lease} right now (a failover): try again in a few seconds", replica=elector.identity)
        return NotLeader(f"this reconciler replica ({elector.identity}) is a standby; the leader, which runs syncs, "
                         f"is {holder} ({lease}): send the sync to it (`kubectl -n {elector.namespace} port-forward "
                         f"pod/{holder} 8081:8080`, then `driftguard sync --server http://127.0.0.1:8081`)", holder,
                         elector.identity)

    def _lead(self, done: threading.Event) -> None:
        self.metrics.leader.set(1)
        with self._cv:
            self.states.clear()
            self.schedule.clear()
            self.tracker = Tracker()  # a new term starts from nothing, like a new process
        self._selfheal = SelfHeal(self.cluster, self.applier, self.tracker, mode_of=self._mode_of,
                                  applier_of=self._applier_of, on_outcome=self._healed, noted=self._noted,
                                  workers=self.settings.heal_workers,
                                  watch_timeout=self.settings.watch_timeout)
        self._selfheal.start()
        threads = [threading.Thread(target=self._watch_applications, args=(done,), name="applications", daemon=True),
                   threading.Thread(target=self._watch_projects, args=(done,), name="projects", daemon=True)]
        threads += [threading.Thread(target=self._work, args=(done,), name=f"sync-{i}", daemon=True)
                    for i in range(self.settings.workers)]
        threads.append(threading.Thread(target=self._flush_status, args=(done,), name="status", daemon=True))
        for thread in threads:
            thread.start()
        if self.audit_trail is not None:
            self.audit_trail.start(done)
        self.notifier.start(done)
        if self.perimeter is not None:
            # Not joined: like the Applications watch they end at their next event, and all they ever
            # write is the webhook registration, which any term may restore.
            self.perimeter.run(done)
        done.wait()
        if self.perimeter is not None:
            self.perimeter.finish()  # before the Lease goes: an uninstall under way takes the configurations away
        self._selfheal.stop()
        with self._cv:
            self._cv.notify_all()
        for thread in threads[2:]:
            thread.join(timeout=self.settings.stop_timeout)
        healers_done = self._selfheal.join(timeout=self.settings.stop_timeout)
        healers_done &= self.audit_trail.join(self.settings.stop_timeout) if self.audit_trail is not None else True
        healers_done &= self.notifier.join(self.settings.stop_timeout)
        # The Applications and Projects watches (threads[:2]) only read, and return at their next event.
        self._wound_down = healers_done and not any(thread.is_alive() for thread in threads[2:])
        self.metrics.leader.set(0)

    def _namespace_labels(self, name: str) -> Mapping[str, str] | None:
        try:
            namespace = self.cluster.get(NAMESPACES, "", name)
        except ResourceError:
            return None
        return ((namespace or {}).get("metadata") or {}).get("labels") or {}

    def _lease_reclaimed(self, lease: Mapping[str, Any], holder: str) -> None:
        self.metrics.perimeter_restored.labels("Lease", "foreign-holder").inc()
        self.reporter.perimeter(lease, "LeaseReclaimed", f"Lease held by {holder!r}, which is not one of the "
                                "reconciler's Pods; taken back (whoever wrote it can write Leases in this namespace: "
                                "see `driftguard doctor`)")

    # ------------------------------------------------------------ the public knobs

    def refresh(self, key: AppKey | None = None) -> list[AppKey]:
        """Force a full sync of one Application (or all) now; a standby asks the leader via an annotation."""
        with self._cv:
            keys = [key] if key is not None and key in self.states else ([] if key else list(self.states))
        if not self.leading:
            return standby.ask_leader(self.cluster, self.settings.namespace, key)
        for k in keys:
            with self._cv:
                state = self.states.get(k)
                if state is not None:
                    state.force_full = True
                    self.schedule.request(state, 0.0)
        return keys

    def sync(self, key: AppKey, operation: Operation, timeout: float) -> Operation | None:
        """Run ``operation`` (an on-demand sync, already authorised) on ``key`` by its next cycle, soon; wait up to
        ``timeout`` for it. None: no such Application. ``Busy``: another is waiting; ``NotLeader``: a standby."""
        if not self.leading:
            raise self.not_leader()
        with self._cv:
            state = self.states.get(key)
            if state is None:
                return None
            if state.operation is not None:
                raise Busy(f"a sync of {key} asked by {state.operation.initiator} is waiting to run")
            if deletion.being_deleted(state.obj):
                raise Busy(f"Application {key} is being deleted; it is not synced any more")
            state.operation = operation
            self.schedule.request(state, 0.0)
        operation.done.wait(timeout)
        return operation

    # ------------------------------------------------------------ Applications

    def _watch_applications(self, done: threading.Event) -> None:
        def failed(error: Exception) -> None:
            log.warning("watching Applications: %s", error)

        for event in self.cluster.follow(APPLICATIONS, self.settings.applications_in, stop=done,
                                         timeout=self.settings.watch_timeout, on_error=failed):
            if done.is_set():
                return
            self._on_application(event)

    def _watch_projects(self, done: threading.Event) -> None:
        """A Project changed: its Applications sync now (the change takes effect at once, not at the resync)."""
        reported: list[str] = []

        def failed(error: Exception) -> None:
            if str(error) not in reported:  # e.g. the Project CRD not installed: said once, not every retry
                reported.append(str(error))
                log.warning("watching Projects in %s: %s", self.projects.namespace, error)

        for event in self.cluster.follow(PROJECTS, self.projects.namespace, stop=done,
                                         timeout=self.settings.watch_timeout, on_error=failed):
            if done.is_set():
                return
            name = str((event.object.get("metadata") or {}).get("name") or "")
            with self._cv:
                for state in self.states.values():
                    if state.spec.project == name and not state.force_full:
                        state.force_full = True
                        self.schedule.request(state, 0.0)

    def _on_application(self, event: WatchEvent) -> None:
        key = AppKey.of(event.object)
        if not self.settings.watches(key.namespace):
            return  # another reconciler's, or nobody's
        with self._cv:
            state = self.states.get(key)
            # Gone, or being deleted without a cascading finalizer: its objects stay, no longer managed.
            if event.type == "DELETED" or deletion.step(event.object, 0) is deletion.Step.FORGET:
                if state is not None:
                    del self.states[key]
                    self._let_go(key)
                    self.metrics.forget(str(key))
                    # Nothing of it is managed any more: off the Namespaces' and CRDs' marks (I/O, not here).
                    threading.Thread(target=self.holders.update, args=(str(key), Inventory()), daemon=True,
                                     name="unmark").start()
                return
            if state is None:
                state = self.states[key] = AppState.new(event.object)
                self.schedule.request(state, 0.0)
            elif state.seen(event.object):
                self.schedule.request(state, 0.0)

    def _noted(self, key: AppKey, ref: ObjectRef) -> bool:
        state = self.states.get(key)
        return state is not None and (ref in state.drift or ref in state.health)

    def _let_go(self, key: AppKey) -> None:
        """Stop self-healing ``key``'s objects (its Application is gone or being deleted)."""
        self.applier.fights.forget(self.tracker.drop(key))
        if self._selfheal is not None:
            self._selfheal.ensure_watches()

    def _applier_of(self, key: AppKey) -> Applier | None:
        state = self.states.get(key)
        return state.memory.applier if state is not None else None

    def _cascade_applier(self, state: AppState) -> Applier:
        """A cascading delete prunes as the Application's ServiceAccount too, chosen afresh (the reconciler
        may have restarted since the last sync); ``Stop`` when its project no longer permits one."""
        return self.reconciler.applier_for(state.spec, self.reconciler.project(state.spec))[0]

    def _mode_of(self, key: AppKey) -> Mode | None:
        state = self.states.get(key)
        if state is None or not state.spec.automated or deletion.being_deleted(state.obj):
            return None
        return Mode(apply=True, self_heal=state.spec.self_heal)

    # ------------------------------------------------------------ scheduling

    def _work(self, done: threading.Event) -> None:
        self.schedule.serve(done, self._run, lambda state: self._requeue(state, Requeue(failed=True)))

    def _run(self, state: AppState) -> None:
        with logs.bound(application=str(state.key)):
            self._requeue(state, self._cycle(state))

    def _requeue(self, state: AppState, result: Requeue) -> None:
        """The one place a cycle's next run is scheduled."""
        with self._cv:
            state.failures = state.failures + 1 if result.failed else 0
            self.schedule.request(state, cycle.delay(
                state.failures, refresh_interval=state.spec.refresh_interval,
                max_backoff=self.settings.max_backoff, next_full=state.next_full, now=time.monotonic(),
                retry=state.spec.retry))

    # ------------------------------------------------------------ one cycle

    def _cycle(self, state: AppState) -> Requeue:
        if deletion.being_deleted(state.obj):
            with self._cv:
                asked, state.operation = state.operation, None
            if asked is not None:
                asked.done.set()  # no report: POST /sync answers that it was not run
            self._let_go(state.key)  # first: a self-heal must not re-create what the pass deletes
            return Requeue(failed=self.cascade.run(state))
        if state.operation is not None:
            return self._operate(state)
        spec, app = state.spec, str(state.key)
        due = cycle.full_due(state, time.monotonic())
        # A due full sync checks the project first: git is never fetched for a spec (or a Project) not yet
        # permitted. A poll fetches only after a good full sync of this spec (a Project change forces one).
        project = self._project(state) if due else None
        revision = self._resolve(state) if project is not None or not due else None
        if not cycle.needs_full(state, revision, due=due):
            self.metrics.cycles.labels(app, "noop").inc()
            return Requeue()
        state.force_full = False
        with logs.bound(revision=revision.sha if revision else None):
            log.debug("Application %s: full sync at %s", app, revision.short if revision else "?")
            result = self.reconciler.reconcile(
                spec, state.memory, revision=revision, project=project,
                save_inventory=lambda inventory: self.reporter.save_inventory(state, inventory),
                on_desired=lambda desired: self._track(state.key, desired),
            )
            at = result.report.revision
            new = at is not None and state.attempted != (at.sha, at.refs, spec.generation)
            result.report.attempt = 1 if new else state.failures + 1  # of this revision and spec (syncPolicy.retry)
            return Requeue(failed=self._absorb(state, result))

    def _operate(self, state: AppState) -> Requeue:
        """An on-demand sync: git's state applied whatever ``syncPolicy.automated`` says (drift reverted,
        stale objects pruned only with ``prune``), recorded with its initiator; a dry run reports what it would
        do and records nothing."""
        with self._cv:
            op, state.operation = state.operation, None
        assert op is not None
        try:
            with logs.bound(initiator=op.initiator):
                log.info("Application %s: sync asked by %s%s", state.key, op.initiator,
                         " (dry run)" if op.dry_run else "")
                if op.dry_run:
                    spec = dataclasses.replace(state.spec, automated=False)
                    memory = dataclasses.replace(state.memory)  # nothing it learns is kept
                    result = self.reconciler.reconcile(spec, memory, save_inventory=lambda _: None)
                    result.report.initiator = op.initiator
                    op.report = result.report
                    return Requeue()
                spec = dataclasses.replace(state.spec, automated=True, prune=op.prune, self_heal=True)
                result = self.reconciler.reconcile(
                    spec, state.memory, save_inventory=lambda inventory: self.reporter.save_inventory(state, inventory),
                    on_desired=lambda desired: self._track(state.key, desired), on_demand=True)
                result.report.initiator = op.initiator
                op.report = result.report
                state.force_full = True  # the next cycle compares again under the Application's own policy
                return Requeue(failed=self._absorb(state, result))
        finally:
            op.done.set()

    def _project(self, state: AppState) -> Project | None:
        """The Application's Project when it permits the Application (None: the full cycle says why)."""
        if not state.spec.valid:
            return None
        try:
            return self.reconciler.project(state.spec)
        except (Stop, ResourceError):
            return None

    def _resolve(self, state: AppState) -> Revision | None:
        """The target revision (None when the spec is invalid or it cannot be resolved: the full cycle
        that follows says why)."""
        if not state.spec.valid:
            return None
        started = time.monotonic()
        try:
            return self.reconciler.resolve(state.spec)
        except (Stop, ResourceError):
            return None
        finally:
            self.metrics.fetch.observe(time.monotonic() - started)

    def _track(self, key: AppKey, desired: list[Desired]) -> None:
        self.tracker.declare(key, desired)
        if self._selfheal is not None:
            self._selfheal.ensure_watches()

    def _absorb(self, state: AppState, result: Result) -> bool:
        """Fold a full cycle's result into the Application's record; write status, Events, metrics.
        True when the cycle failed."""
        report = result.report
        with state.lock:
            before = condition(state.status, "Ready")
            events = state.absorb(result, self.settings, now=time.monotonic(), wall=dt.datetime.now(dt.UTC))
            self.reporter.synced(state, report)  # metrics first: whoever sees the status sees them too
            self.reporter.emit(state, events)
            self.reporter.write_status(state)
            after = condition(state.status, "Ready")
        self.reporter.emit(state, sync_events(report, before, after))
        self.holders.update(str(state.key), state.memory.inventory)
        return failed(report)

    def _healed(self, key: AppKey, outcome: Outcome) -> None:
        state = self.states.get(key)
        if state is None:
            return
        with state.lock:
            events = state.heard(outcome, self.settings, now=time.monotonic(), wall=dt.datetime.now(dt.UTC))
            if events is None:
                return
            self.reporter.emit(state, events)
        if outcome.expires_at is not None:
            with self._cv:
                self.schedule.request(state, max(0.0, state.next_full - time.monotonic()))
        self.metrics.record_changes(str(key), ChangeSet([outcome.change]))

    def _audited(self, entry: Entry) -> None:
        """A webhook audit record: a warn-mode change it admitted names the user of the drift it made (a scale's
        user, which no drift mark can carry); status is rewritten by the next flush."""
        record = entry.record
        application = str(record.get("application") or "")
        if record.get("decision") != "warn" or "/" not in application:
            return
        namespace, _, name = application.partition("/")
        state = self.states.get(AppKey(namespace, name))
        if state is None:
            return
        fields = tuple(str(f.get("field") or "") for f in record.get("fields") or [] if isinstance(f, Mapping))
        with state.lock:
            if state.attribute(str(record.get("object") or ""), fields, str(record.get("user") or ""),
                               str(record.get("time") or "")):
                state.status_dirty = True

    # ------------------------------------------------------------ notifications (reconciler.notifier)

    def _notice(self, state: AppState, trigger: str | None, obj: str, user: str, message: str, *, count: int = 1,
                when: str = "") -> None:
        if trigger is not None:
            self.notifier.notify(state.obj, notifications.Notice(
                trigger, str(state.key), obj, user, message, when or format_time(dt.datetime.now(dt.UTC)), count))

    def _notify_event(self, state: AppState, event: Event) -> None:
        about = f"{event.about.kind} {event.about.namespace}/{event.about.name}".replace(" /", " ") if event.about \
            else f"Application {state.key}"
        self._notice(state, notifications.trigger_of_event(event.type, event.reason, event.about is not None),
                     about, "", f"{event.reason}: {event.message}")

    def _notify_status(self, state: AppState, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        health = after.get("health") or {}
        if notifications.degraded(before.get("health") or {}, health):
            self._notice(state, "on-health-degraded", f"Application {state.key}", "",
                         str(health.get("message") or "health is Degraded"))

    def _notify_perimeter(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        trigger = notifications.trigger_of_event("Warning", reason, True)
        name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
        for state in list(self.states.values()):
            self._notice(state, trigger, name, "", message)

    def _notify_audit(self, entry: Entry, new: int) -> None:
        record = entry.record
        state = next((st for key, st in list(self.states.items()) if str(key) == entry.application), None)
        if state is not None:
            self._notice(state, notifications.trigger_of_decision(str(record.get("decision"))),
                         str(record.get("object") or ""), str(record.get("user") or ""),
                         str(record.get("reason") or ""), count=new, when=entry.last)

    def _flush_status(self, done: threading.Event) -> None:
        while not done.wait(0.1):
            self.reporter.flush(list(self.states.values()))

