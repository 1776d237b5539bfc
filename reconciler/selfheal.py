"""Self-heal: watch the kinds driftguard manages and put git's value back within a second.

One watch per kind (cluster-wide, ``driftguard.io/managed=true``), started when some Application
declares that kind. Each event is matched to the Application that *declares* the object (the
``Tracker``, filled from desired sets — never from labels, which anyone could forge) and handed to a
small pool of workers that run the same per-object sync as a full cycle (``Applier.sync``). Our own
writes come back as events too; they plan as unchanged and cost nothing. Events for one object are
coalesced: a worker always sees its latest version.

An object that leaves the watch (deleted, or its managed label removed) is re-read before acting.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final

from driftguard import logs
from driftguard.core.contract import LABEL_MANAGED
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import Cluster, ResourceError, WatchEvent
from reconciler.application import AppKey
from reconciler.apply import Applier, Mode, Outcome
from reconciler.desired import Desired
from reconciler.plan import Verdict, plan

log = logging.getLogger(__name__)

SELECTOR: Final = f"{LABEL_MANAGED}=true"
# Kinds whose status changes matter even when git's fields are intact (health is re-assessed).
HEALTH_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                                 "PersistentVolumeClaim", "Pod", "CustomResourceDefinition", "Service"})
Kind = tuple[str, str]  # (apiVersion, kind)


class Tracker:
    """ref → (Application, Desired): who declares what, as of each Application's latest render."""

    def __init__(self) -> None:
        self._by_ref: dict[ObjectRef, tuple[AppKey, Desired]] = {}
        self._by_app: dict[AppKey, frozenset[ObjectRef]] = {}
        self._lock = threading.Lock()

    def declare(self, app: AppKey, desired: Iterable[Desired]) -> None:
        with self._lock:
            mine = {d.ref: d for d in desired}
            for ref in self._by_app.get(app, frozenset()) - mine.keys():
                if self._by_ref.get(ref, (None,))[0] == app:
                    del self._by_ref[ref]
            for ref, d in mine.items():
                owner = self._by_ref.get(ref)
                if owner is None or owner[0] == app:
                    self._by_ref[ref] = (app, d)
            self._by_app[app] = frozenset(mine)

    def drop(self, app: AppKey) -> frozenset[ObjectRef]:
        with self._lock:
            refs = self._by_app.pop(app, frozenset())
            for ref in refs:
                if self._by_ref.get(ref, (None,))[0] == app:
                    del self._by_ref[ref]
            return refs

    def lookup(self, ref: ObjectRef) -> tuple[AppKey, Desired] | None:
        with self._lock:
            return self._by_ref.get(ref)

    def refs(self, app: AppKey) -> frozenset[ObjectRef]:
        with self._lock:
            return self._by_app.get(app, frozenset())

    def kinds(self) -> set[Kind]:
        with self._lock:
            return {(d.api_version, d.ref.kind) for _, d in self._by_ref.values()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_ref)


class SelfHeal:
    def __init__(
        self, cluster: Cluster, applier: Applier, tracker: Tracker, *,
        mode_of: Callable[[AppKey], Mode | None], on_outcome: Callable[[AppKey, Outcome], None],
        noted: Callable[[AppKey, ObjectRef], bool] = lambda app, ref: False,
        applier_of: Callable[[AppKey], Applier | None] = lambda app: None,
        workers: int = 2, watch_timeout: float = 30.0,
    ) -> None:
        """``noted(app, ref)``: whether the Application's record holds something about ``ref`` (drift,
        health) that an unchanged object must clear — such events are never dropped early;
        ``applier_of(app)``: the applier its last sync used (acting as its ServiceAccount; None: ``applier``).
        Watches are the reconciler's own; every write and read of a heal goes out as the Application's."""
        self.cluster, self.applier, self.tracker = cluster, applier, tracker
        self._applier_of = applier_of
        self._mode_of, self._on_outcome, self._noted = mode_of, on_outcome, noted
        self._workers, self._watch_timeout = workers, watch_timeout
        self._stop = threading.Event()
        self._watches: dict[Kind, threading.Event] = {}
        self._queue: OrderedDict[ObjectRef, tuple[WatchEvent, bool]] = OrderedDict()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._workers_started: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._workers):
            self._spawn(self._work, f"selfheal-{i}")
        self._workers_started = list(self._threads)

    def stop(self) -> None:
        self._stop.set()
        for stop in self._watches.values():
            stop.set()
        with self._ready:
            self._ready.notify_all()

    def join(self, timeout: float) -> bool:
        """After ``stop``: wait for the workers (a heal in flight finishes); True when all have ended.
        Watch threads are not waited for: they only read, and leave at their next event or timeout."""
        deadline = time.monotonic() + timeout
        for thread in self._workers_started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._workers_started)

    def ensure_watches(self) -> None:
        """Watch every kind some Application declares; stop watching kinds nobody declares."""
        wanted = self.tracker.kinds()
        for kind, stop in list(self._watches.items()):
            if kind not in wanted:
                stop.set()
                del self._watches[kind]
        for kind in wanted - self._watches.keys():
            stop = threading.Event()
            self._watches[kind] = stop
            self._spawn(functools.partial(self._watch, kind, stop), f"watch-{kind[1]}")

    def watched(self) -> set[Kind]:
        return set(self._watches)

    # ------------------------------------------------------------ threads

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, kind: Kind, stop: threading.Event) -> None:
        while not (stop.is_set() or self._stop.is_set()):
            try:
                rt = self.cluster.discovery.resolve(*kind)
            except ResourceError as e:
                log.debug("not watching %s yet: %s", kind, e)
                stop.wait(1.0)
                continue
            for event in self.cluster.follow(rt, label_selector=SELECTOR, stop=stop, timeout=self._watch_timeout,
                                             on_error=lambda e: log.info("watch %s: %s", kind[1], e)):
                if self._stop.is_set():
                    return
                self._enqueue(event)

    def _enqueue(self, event: WatchEvent) -> None:
        ref = ObjectRef.of(event.object)
        found = self.tracker.lookup(ref)
        if found is None:
            return
        if event.type != "DELETED" and ref.kind not in HEALTH_KINDS and not self._noted(found[0], ref):
            p = plan(found[1], event.object, now=dt.datetime.now(dt.UTC), marks=self.applier.marks)
            if p.verdict is Verdict.UNCHANGED and not p.clear:
                return  # our own writes, and relists of thousands of objects, stop here
        with self._ready:
            self._queue.pop(ref, None)
            self._queue[ref] = (event, event.type == "DELETED")
            self._ready.notify()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                while not self._queue and not self._stop.is_set():
                    self._ready.wait()
                if self._stop.is_set():
                    return
                ref, (event, gone) = self._queue.popitem(last=False)
            with logs.bound(object=str(ref)):
                try:
                    self._heal(ref, event.object, gone)
                except Exception:  # a worker must outlive any one object
                    log.exception("self-heal of %s failed", ref)

    def _heal(self, ref: ObjectRef, live: dict[str, Any], gone: bool) -> None:
        found = self.tracker.lookup(ref)
        if found is None:
            return
        app, desired = found
        mode = self._mode_of(app)
        if mode is None:
            return
        with logs.bound(application=str(app)):
            applier = self._applier_of(app) or self.applier
            outcome = applier.sync_if(lambda: self._still(ref, app), desired, None if gone else live, mode,
                                      refetch=gone)
            if outcome is not None:
                self._on_outcome(app, outcome)

    def _still(self, ref: ObjectRef, app: AppKey) -> bool:
        """Whether ``app`` still declares ``ref`` and wants it synced (asked under the object's lock)."""
        found = self.tracker.lookup(ref)
        return found is not None and found[0] == app and self._mode_of(app) is not None
