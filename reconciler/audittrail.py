"""The durable audit trail's writer: the leader folds the webhook's audit Events into trail ConfigMaps.

Every webhook replica aggregates its audit records into ``events.k8s.io/v1`` Events (a few writes a
second however many requests), each carrying its series' first record (``driftguard.core.audittrail``).
Events expire. While leading, ``AuditTrail`` watches those Events in every namespace (label-selected:
``driftguard.io/audit=true``) and folds each into the trail of the record's Application — a ConfigMap in
``--audit-namespace`` (driftguard's own by default) — or into ``driftguard-audit-cluster`` for records of
no Application. A trail is written at most once per ``--audit-flush`` and only when its folded content
changed, so a flood of denials costs one ConfigMap write per interval, never one per request; the fold
bounds it by ``--audit-retention``, ``--audit-max-records`` and a byte size a ConfigMap holds.

Writes carry the resourceVersion read: a conflict (another term's last write) re-reads the trail and
folds again at the next flush; folding is idempotent (one entry per Event, the highest count), so a
relist, a restart or two writers converge. Its own ``Cluster`` view counts its requests apart from
the controller's (``request_counts``), on the same connections.

This module never decides what a record says: it moves what the webhook wrote.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from driftguard.core import audittrail
from driftguard.core.audittrail import Entry
from driftguard.kube.resources import CONFIGMAPS, Cluster, ResourceError, ResourceType

log = logging.getLogger(__name__)

AUDIT_EVENTS = ResourceType("events.k8s.io", "v1", "Event", "events", namespaced=True)
SELECTOR = f"{audittrail.EVENT_LABEL}=true"


@dataclass
class _Trail:
    application: str
    entries: list[Entry] = field(default_factory=list)  # as stored
    pending: list[Entry] = field(default_factory=list)  # heard since the last write
    version: str = ""  # the ConfigMap's resourceVersion ("": not created yet)
    stale: bool = False  # a write conflicted: re-read before the next one


class AuditTrail:
    def __init__(self, cluster: Cluster, namespace: str, *, retention: float, max_records: int,
                 flush_seconds: float, watch_timeout: float = 30.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 on_entry: Callable[[Entry], None] = lambda _: None) -> None:
        """``on_entry``: told of each record heard (the controller names a drift's user from it)."""
        # the same connections with counters of its own (a test's fake cluster is used as it is)
        self.cluster = Cluster(cluster.kube, cluster.discovery) if isinstance(cluster, Cluster) else cluster
        self.namespace = namespace
        self.retention, self.max_records, self.flush_seconds = retention, max_records, flush_seconds
        self.watch_timeout = watch_timeout
        self._clock = clock
        self._on_entry = on_entry
        self._lock = threading.Lock()
        self._trails: dict[str, _Trail] = {}
        self._threads: list[threading.Thread] = []
        self._seen: dict[str, int] = {}  # Event → the highest count heard (or stored) this term
        # Called with each entry heard and how many occurrences are new this term (notifications).
        self.on_new: Callable[[Entry, int], None] | None = None

    # ------------------------------------------------------------ running

    def start(self, done: threading.Event) -> None:
        """Watch and flush until ``done`` (a new term starts from what the trails hold)."""
        with self._lock:
            self._trails, self._seen = {}, {}
        watcher = threading.Thread(target=self._watch, args=(done,), name="audit-watch", daemon=True)
        flusher = threading.Thread(target=self._flush_loop, args=(done, watcher), name="audit-flush", daemon=True)
        self._threads = [watcher, flusher]
        flusher.start()  # it reads the trails, then starts the watch: what they hold is not new

    def join(self, timeout: float) -> bool:
        """Wait for the writer (the watch only reads: it ends at its next event). True when it ended."""
        if len(self._threads) < 2:
            return True
        self._threads[1].join(timeout)
        return not self._threads[1].is_alive()

    def request_counts(self) -> dict[str, int]:
        return self.cluster.request_counts()

    def _watch(self, done: threading.Event) -> None:
        reported: list[str] = []

        def failed(error: Exception) -> None:
            if str(error) not in reported:  # e.g. no RBAC to list Events: said once
                reported.append(str(error))
                log.warning("audit trail: watching the webhook's audit Events: %s", error)

        try:
            for event in self.cluster.follow(AUDIT_EVENTS, "", label_selector=SELECTOR, stop=done,
                                             timeout=self.watch_timeout, on_error=failed):
                if done.is_set():
                    return
                if event.type in ("ADDED", "MODIFIED"):  # DELETED: the Event expired, the trail keeps it
                    entry = audittrail.entry_of_event(event.object)
                    if entry is not None:
                        self.heard(entry)
                        self._on_entry(entry)
        except Exception:  # the trail never takes the leader down with it
            log.exception("audit trail: the watch of audit Events stopped")

    def heard(self, entry: Entry) -> None:
        name = audittrail.trail_name(entry.application)
        with self._lock:
            trail = self._trails.setdefault(name, _Trail(entry.application, stale=True))
            trail.pending.append(entry)
            new = entry.count - self._seen.get(entry.event, 0)
            self._seen[entry.event] = max(entry.count, self._seen.get(entry.event, 0))
        if new > 0 and self.on_new is not None:
            self._guarded(lambda: self.on_new(entry, new) if self.on_new is not None else None)

    def _flush_loop(self, done: threading.Event, watcher: threading.Thread) -> None:
        self._guarded(self._load)
        watcher.start()
        while not done.wait(self.flush_seconds):
            self._guarded(self.flush)
        self._guarded(self.flush)  # what the term heard last

    @staticmethod
    def _guarded(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:  # the trail never takes the leader down with it; the next flush tries again
            log.exception("audit trail: %s failed", getattr(step, "__name__", "a step"))

    # ------------------------------------------------------------ writing

    def _load(self) -> None:
        """Every trail as stored, once per term (one list)."""
        try:
            items, _ = self.cluster.list(CONFIGMAPS, self.namespace, label_selector=f"{audittrail.TRAIL_LABEL}=true")
        except ResourceError as e:
            log.warning("audit trail: reading the trails in %s: %s", self.namespace, e)
            return
        with self._lock:
            for item in items:
                metadata = item.get("metadata") or {}
                trail = self._trails.setdefault(str(metadata.get("name")), _Trail(
                    str((metadata.get("annotations") or {}).get(audittrail.APPLICATION_ANNOTATION) or "")))
                trail.entries = audittrail.parse(str((item.get("data") or {}).get(audittrail.TRAIL_KEY) or ""))
                trail.version = str(metadata.get("resourceVersion") or "")
                trail.stale = False
                for entry in trail.entries:
                    self._seen[entry.event] = max(entry.count, self._seen.get(entry.event, 0))

    def flush(self) -> int:
        """Write each trail whose folded content changed (new entries, or old ones past the retention);
        the number written."""
        now = self._clock()
        with self._lock:
            work = [(name, trail, list(trail.pending)) for name, trail in self._trails.items()]
        written = 0
        for name, trail, pending in work:
            if trail.stale and not self._reread(name, trail):
                continue
            folded = audittrail.fold([*trail.entries, *pending], now=now, retention=self.retention,
                                     max_records=self.max_records)
            if folded != trail.entries and self._write(name, trail, folded, len(pending)):
                written += 1
            elif folded == trail.entries:
                self._taken(trail, pending)
        return written

    def _taken(self, trail: _Trail, pending: list[Entry]) -> None:
        with self._lock:
            del trail.pending[:len(pending)]

    def _reread(self, name: str, trail: _Trail) -> bool:
        try:
            live = self.cluster.get(CONFIGMAPS, self.namespace, name)
        except ResourceError as e:
            log.warning("audit trail %s/%s: not read: %s", self.namespace, name, e)
            return False
        trail.entries = audittrail.parse(str(((live or {}).get("data") or {}).get(audittrail.TRAIL_KEY) or ""))
        trail.version = str(((live or {}).get("metadata") or {}).get("resourceVersion") or "")
        trail.stale = False
        return True

    def _write(self, name: str, trail: _Trail, folded: list[Entry], pending: int) -> bool:
        body = audittrail.trail_configmap(name, self.namespace, trail.application, folded)
        try:
            if trail.version:
                body["metadata"]["resourceVersion"] = trail.version
                written = self.cluster.replace(CONFIGMAPS, body)
            else:
                written = self.cluster.create(CONFIGMAPS, body)
        except ResourceError as e:
            trail.stale = True  # 409: written by another term, or created meanwhile: read, fold again
            if not e.conflict:
                log.warning("audit trail %s/%s: not written: %s", self.namespace, name, e)
            return False
        with self._lock:
            del trail.pending[:pending]
        trail.entries = folded
        trail.version = str((written.get("metadata") or {}).get("resourceVersion") or "")
        return True
