"""Audit sinks: the log line, the JSONL file, aggregated Events; recording never blocks or fails."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from support.admission import NOW, SETTINGS, edited, live, review

from driftguard.core import audittrail
from webhook import audit, policy
from webhook.metrics import Metrics
from webhook.records import AuditRecord


def _record(**changes: Any) -> AuditRecord:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"],
                              SETTINGS, NOW)
    assert verdict.record is not None
    return dataclasses.replace(verdict.record, **changes)


class FakeEvents:
    def __init__(self, fail: int = 0, gate: threading.Event | None = None) -> None:
        self.creates: list[tuple[str, dict[str, Any]]] = []
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail
        self.gate = gate

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        if self.gate is not None:
            self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("apiserver unreachable")
        self.creates.append((namespace, body))

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((namespace, name, patch))


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_every_record_is_a_json_log_line_and_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    recorder = audit.Recorder(metrics)
    with caplog.at_level(logging.INFO, logger="driftguard.audit"):
        recorder.record(_record())
    (line,) = caplog.records
    assert getattr(line, "ctx")["audit"] == _record().to_dict()  # noqa: B009
    assert _count(metrics, "driftguard_audit_records_total", decision="deny", dry_run="false") == 1


def test_the_file_is_append_only_jsonl_that_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": "line"}\n')
    recorder = audit.Recorder(Metrics(), file=path, flush_seconds=0.05)
    records = [_record(uid=f"uid-{i}") for i in range(5)] + [_record(uid="dry", dry_run=True)]
    for record in records:
        recorder.record(record)
    recorder.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": "line"}'
    assert [AuditRecord.from_dict(json.loads(line)) for line in lines[1:]] == records


def test_a_new_audit_file_is_not_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    recorder = audit.Recorder(Metrics(), file=path, flush_seconds=0.05)
    recorder.record(_record())
    recorder.close()
    assert path.stat().st_mode & 0o007 == 0


def test_a_flood_on_one_object_is_one_event_series() -> None:
    events = FakeEvents()
    aggregator = audit.EventAggregator(events, Metrics(), "webhook-0")
    for _ in range(1000):
        aggregator.add(_record())
    aggregator.flush()
    for _ in range(500):
        aggregator.add(_record(time="2024-06-01T12:00:07Z"))
    aggregator.flush()
    aggregator.flush()  # nothing new: no write
    assert len(events.creates) == 1 and len(events.patches) == 1
    namespace, body = events.creates[0]
    assert namespace == "production"
    assert body["series"] == {"count": 1000, "lastObservedTime": "2024-06-01T12:00:00.000000Z"}
    assert events.patches[0][1] == body["metadata"]["name"]
    assert events.patches[0][2] == {"series": {"count": 1500, "lastObservedTime": "2024-06-01T12:00:07.000000Z"}}


def test_series_are_per_object_decision_and_user() -> None:
    events = FakeEvents()
    aggregator = audit.EventAggregator(events, Metrics(), "webhook-0")
    for record in [_record(), _record(user="bob"), _record(decision="warn"), _record(object_uid="other"),
                   _record()]:
        aggregator.add(record)
    aggregator.flush()
    assert len(events.creates) == 4 and events.patches == []


def test_the_number_of_series_and_writes_per_flush_is_bounded() -> None:
    events = FakeEvents()
    metrics = Metrics()
    aggregator = audit.EventAggregator(events, metrics, "webhook-0")
    for i in range(audit.MAX_SERIES + 10):
        aggregator.add(_record(object_uid=f"uid-{i}"))
    assert _count(metrics, "driftguard_audit_dropped_total", sink="events") == 10
    aggregator.flush()
    assert len(events.creates) == audit.MAX_WRITES_PER_FLUSH


def test_an_event_body_is_a_valid_events_k8s_io_v1_event() -> None:
    record = _record(reason="x" * 5000)
    body = audit.event_body(record, "my-service.abc", "webhook-0", 1, record.time)
    assert body["apiVersion"] == "events.k8s.io/v1"
    assert body["regarding"] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "production",
                                 "name": "my-service", "uid": "0b1c2d3e-uid"}
    assert (body["reason"], body["action"], body["type"]) == ("DriftguardDenied", "Update", "Warning")
    assert body["eventTime"] == "2024-06-01T12:00:00.000000Z"
    assert len(body["note"].encode()) <= 1024 and body["note"].startswith("laptop: xxx")
    assert "series" not in body


def test_an_event_carries_its_whole_record_for_the_durable_trail() -> None:
    record = _record(reason="x" * 5000)  # long: compressed, still whole
    body = audit.event_body(record, "my-service.abc", "webhook-0", 7, "2024-06-01T12:05:00Z")
    assert body["metadata"]["labels"][audittrail.EVENT_LABEL] == "true"
    entry = audittrail.entry_of_event(body)
    assert entry is not None
    assert AuditRecord.from_dict(entry.record) == record
    assert (entry.event, entry.count, entry.last) == ("production/my-service.abc", 7, "2024-06-01T12:05:00Z")


def test_a_denied_create_names_its_object_without_a_uid() -> None:
    record = _record(object_uid="", operation="CREATE")
    body = audit.event_body(record, "my-service.abc", "webhook-0", 1, record.time)
    assert "uid" not in body["regarding"] and body["regarding"]["name"] == "my-service"


def test_a_failed_event_write_is_counted_and_retried_at_the_next_flush() -> None:
    events = FakeEvents(fail=1)
    metrics = Metrics()
    aggregator = audit.EventAggregator(events, metrics, "webhook-0")
    aggregator.add(_record())
    aggregator.flush()
    assert events.creates == [] and _count(metrics, "driftguard_audit_sink_errors_total", sink="events") == 1
    aggregator.flush()
    assert len(events.creates) == 1


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, 1, id="a denial on a live object"),
    pytest.param({"dry_run": True}, 0, id="dry-run"),
    pytest.param({"object_uid": ""}, 1, id="a CREATE: the object by name, without a uid"),
])
def test_which_records_become_events(changes: dict[str, Any], expected: int) -> None:
    events = FakeEvents()
    recorder = audit.Recorder(Metrics(), events=events, flush_seconds=0.01)
    recorder.record(_record(**changes))
    recorder.close()
    assert len(events.creates) == expected


def test_recording_never_blocks_even_when_sinks_hang() -> None:
    gate = threading.Event()
    events = FakeEvents(gate=gate)
    metrics = Metrics()
    recorder = audit.Recorder(metrics, events=events, queue_size=8, flush_seconds=0.0)

    def flood() -> None:
        for i in range(2000):
            recorder.record(_record(object_uid=f"uid-{i}"))

    producer = threading.Thread(target=flood)
    producer.start()
    producer.join(timeout=60)  # a blocking record() would wait on the gate forever
    finished_while_sink_hung = not producer.is_alive()
    gate.set()
    producer.join()
    recorder.close()
    assert finished_while_sink_hung
    assert _count(metrics, "driftguard_audit_dropped_total", sink="queue") > 0


def test_recording_swallows_sink_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    metrics = Metrics()
    recorder = audit.Recorder(metrics, file=blocker / "audit.jsonl", flush_seconds=0.01)
    recorder.record(_record())
    recorder.close()
    assert _count(metrics, "driftguard_audit_sink_errors_total", sink="file") == 1
