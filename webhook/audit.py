"""Recording audit records: a JSON log line, an append-only JSONL file, aggregated Kubernetes Events.

``Recorder.record`` is called on the request path and must never block or fail a decision: it
writes the log line, counts the record, and hands the record to a bounded queue (a full queue drops
the record for the file/Event sinks and counts the drop). One background thread per process drains
the queue: it appends lines to the file at once and folds records into Event *series* — one per
(object, decision, user) — that it writes at most once per flush interval: the first occurrence
creates an ``events.k8s.io/v1`` Event, later ones patch its ``series.count``. A flood of denials on
one object is therefore one create plus one patch per interval, never one write per request.
Each Event carries its series' first record whole (``driftguard.core.audittrail``: the annotation
``driftguard.io/audit-record``, the label ``driftguard.io/audit``), which the reconciler's leader folds
into the durable audit trail before the Event expires. Dry-run records make no Event; a record about an
object that does not exist yet (a denied CREATE) makes one naming the object without a uid.

This module refuses to retry failed Event writes beyond the next flush, to buffer without bound, or
to reach the API server itself: it is given an ``EventApi``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from driftguard.core import audittrail
from driftguard.core.clock import as_micro
from webhook.logs import CTX
from webhook.metrics import Metrics
from webhook.records import AuditRecord

log = logging.getLogger(__name__)
audit_log = logging.getLogger("driftguard.audit")

REPORTING_CONTROLLER: Final = "driftguard.io/webhook"
NOTE_LIMIT: Final = 1024  # bytes, the API server's limit for Event.note
MAX_SERIES: Final = 1024  # distinct (object, decision, user) series held at once
MAX_WRITES_PER_FLUSH: Final = 100
SERIES_IDLE_SECONDS: Final = 600.0  # a series quiet this long is forgotten; the next record starts a new Event
BATCH_SECONDS: Final = 0.05  # how long the writer lets records gather after a write
_REASONS: Final = {"deny": "DriftguardDenied", "warn": "DriftguardWarned", "break-glass": "DriftguardBreakGlass",
                   "audit": "DriftguardAudited"}


class EventApi(Protocol):
    """The two Event writes the aggregator needs (implemented over ``driftguard.kube`` in ``kubeio``)."""

    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


# ---------------------------------------------------------------- Events

@dataclass
class _Series:
    first: AuditRecord
    count: int
    last_time: str
    last_seen: float
    name: str = ""  # the Event's name once created
    written: int = 0  # count at the last successful write


class EventAggregator:
    """Folds records into Event series and writes the changed ones on ``flush``. Not thread-safe."""

    def __init__(self, api: EventApi, metrics: Metrics, instance: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api, self._metrics, self._instance, self._clock = api, metrics, instance[:128], clock
        self._series: dict[tuple[str, str, str], _Series] = {}

    def add(self, record: AuditRecord) -> None:
        key = (record.object_uid or record.object, record.decision, record.user)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                self._metrics.audit_dropped.labels("events").inc()
                return
            series = self._series[key] = _Series(record, 0, record.time, self._clock())
        series.count += 1
        series.last_time = record.time
        series.last_seen = self._clock()

    def flush(self) -> None:
        now = self._clock()
        writes = 0
        for key, series in list(self._series.items()):
            if series.count > series.written and writes < MAX_WRITES_PER_FLUSH:
                writes += 1
                self._write(series)
            elif series.count == series.written and now - series.last_seen > SERIES_IDLE_SECONDS:
                del self._series[key]

    def _write(self, series: _Series) -> None:
        record = series.first
        namespace = record.namespace or "default"
        try:
            if not series.name:
                name = f"{(record.name or 'object')[:200]}.{secrets.token_hex(8)}"
                self._api.create_event(namespace, event_body(record, name, self._instance, series.count,
                                                             series.last_time))
                series.name = name
                self._metrics.event_writes.labels("create").inc()
            else:
                self._api.patch_event(namespace, series.name, {"series": _series(series.count, series.last_time)})
                self._metrics.event_writes.labels("patch").inc()
            series.written = series.count
        except Exception as error:  # an Event is never worth more than a log line
            self._metrics.audit_errors.labels("events").inc()
            log.warning("audit Event write failed", extra={CTX: {"object": record.object, "error": str(error)}})


def event_body(record: AuditRecord, name: str, instance: str, count: int, last_time: str) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event on the record's object; ``series`` once it happened twice."""
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": record.namespace or "default",
                     "labels": {"app.kubernetes.io/name": "driftguard", audittrail.EVENT_LABEL: "true"},
                     "annotations": {audittrail.RECORD_ANNOTATION: audittrail.encode_record(record.to_dict())}},
        "eventTime": as_micro(record.time),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance,
        "action": record.operation.capitalize() + (f"/{record.subresource}" if record.subresource else ""),
        "reason": _REASONS[record.decision],
        "type": "Warning",
        "regarding": {"apiVersion": record.api_version, "kind": record.kind, "namespace": record.namespace,
                      "name": record.name, **({"uid": record.object_uid} if record.object_uid else {})},
        "note": _cut_bytes(f"{record.user}: {record.reason}", NOTE_LIMIT),
    }
    if count > 1:
        body["series"] = _series(count, last_time)
    return body


def _series(count: int, last_time: str) -> dict[str, Any]:
    return {"count": count, "lastObservedTime": as_micro(last_time)}


def _cut_bytes(text: str, limit: int) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[: limit - 3].decode(errors="ignore") + "..."


# ---------------------------------------------------------------- the recorder

class Recorder:
    """Every sink behind one never-failing ``record`` call."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        file: Path | None = None,
        events: EventApi | None = None,
        instance: str = "",
        queue_size: int = 4096,
        flush_seconds: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._file = file
        self._aggregator = EventAggregator(events, metrics, instance or _instance()) if events else None
        self._queue_size = queue_size
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._pid = 0

    def record(self, record: AuditRecord) -> None:
        try:
            audit_log.info("audit", extra={CTX: {"audit": record.to_dict()}})
            self._metrics.audit_records.labels(record.decision, str(record.dry_run).lower()).inc()
            if self._file is None and not self._wants_event(record):
                return
            self._ensure_writer().put_nowait(record)
        except queue.Full:
            self._metrics.audit_dropped.labels("queue").inc()
        except Exception:
            log.exception("audit recording failed", extra={CTX: {"uid": record.uid}})

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, flush Events, stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                log.warning("audit queue still full at shutdown; records dropped")
            thread.join(timeout)

    def _wants_event(self, record: AuditRecord) -> bool:
        return self._aggregator is not None and not record.dry_run

    def _ensure_writer(self) -> queue.Queue[AuditRecord | None]:
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # first use, or a fork after it
                self._pid = os.getpid()
                self._queue = queue.Queue(self._queue_size)
                self._thread = threading.Thread(target=self._run, args=(self._queue,), name="driftguard-audit",
                                                daemon=True)
                self._thread.start()
            return self._queue

    def _run(self, inbox: queue.Queue[AuditRecord | None]) -> None:
        deadline = time.monotonic() + self._flush_seconds
        stopping = False
        while not stopping:
            batch, stopping = _drain(inbox, max(0.0, deadline - time.monotonic()))
            self._write_file(batch)
            for record in batch:
                if self._wants_event(record) and self._aggregator is not None:
                    self._aggregator.add(record)
            if (stopping or time.monotonic() >= deadline) and self._aggregator is not None:
                self._aggregator.flush()
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self._flush_seconds
            if batch and not stopping:
                time.sleep(BATCH_SECONDS)  # in a flood: a few file writes per second, not one per record

    def _write_file(self, batch: list[AuditRecord]) -> None:
        if self._file is None or not batch:
            return
        try:
            append_lines(self._file, [serialise(r) for r in batch])
        except OSError as error:
            self._metrics.audit_errors.labels("file").inc(len(batch))
            log.warning("audit file write failed", extra={CTX: {"file": str(self._file), "error": str(error)}})


def serialise(record: AuditRecord) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines with one ``O_APPEND`` write (workers sharing the file never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, "".join(line + "\n" for line in lines).encode())
    finally:
        os.close(fd)


def _drain(inbox: queue.Queue[AuditRecord | None], wait: float) -> tuple[list[AuditRecord], bool]:
    """Block up to ``wait`` for one record, then take whatever else is queued; True on the stop sentinel."""
    batch: list[AuditRecord] = []
    try:
        item = inbox.get(timeout=wait) if wait > 0 else inbox.get_nowait()
        while True:
            if item is None:
                return batch, True
            batch.append(item)
            if len(batch) >= 512:
                return batch, False
            item = inbox.get_nowait()
    except queue.Empty:
        return batch, False


def _instance() -> str:
    return os.environ.get("POD_NAME") or os.uname().nodename
