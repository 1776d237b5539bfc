"""Prometheus metrics for one webhook app.

Each ``Metrics`` owns a registry, so tests can build many apps in one process. Under gunicorn with
several workers, ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports
``prometheus_client``; values then live in that directory and ``/metrics`` on any worker reports the
sum over all of them.

The certificate expiry gauge uses ``livemostrecent``: a worker sets it from its own reloader at start
and whenever it answers ``/metrics`` or ``/readyz``, after re-checking the files, so the value written
last is what the next handshake on any worker presents (each re-checks the files before one).
``max`` would hide a rotation to a certificate that expires *sooner*, ``min`` (or any non-live
mode) would keep an old expired value of a dead or idle worker, and ``liveall`` would add a ``pid``
label that alert rules must aggregate away. ``live``: a worker's value goes when it exits (``serve._child_exit``).
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "driftguard_webhook_decisions", "Admission decisions by webhook and result "
            "(allow, deny, warn, break-glass, error, bad-request)", ["webhook", "result"], registry=self.registry)
        self.latency = Histogram(
            "driftguard_webhook_request_seconds", "Time to answer one AdmissionReview",
            ["webhook"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.parent_reads = Counter(
            "driftguard_webhook_parent_reads", "Reads of a scale request's parent object by result",
            ["result"], registry=self.registry)
        self.audit_records = Counter(
            "driftguard_audit_records", "Audit records by decision", ["decision", "dry_run"], registry=self.registry)
        self.audit_dropped = Counter(
            "driftguard_audit_dropped", "Audit records not written to a sink (queue full, too many series)",
            ["sink"], registry=self.registry)
        self.audit_errors = Counter(
            "driftguard_audit_sink_errors", "Failed writes to an audit sink", ["sink"], registry=self.registry)
        self.event_writes = Counter(
            "driftguard_audit_event_writes", "Kubernetes Event writes by verb (create, patch)",
            ["verb"], registry=self.registry)
        self.certificate_expiry = Gauge(
            "driftguard_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate being served (Unix time), by file",
            ["file"], multiprocess_mode="livemostrecent", registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type, aggregated over workers in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
