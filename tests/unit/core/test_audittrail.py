"""The durable audit trail: records on Events, entries, folding with retention and size bounds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from driftguard.core import audittrail
from driftguard.core.audittrail import Entry
from driftguard.core.clock import format_time

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _record(**changes: Any) -> dict[str, Any]:
    return {"time": "2026-12-03T11:00:00Z", "uid": "u1", "user": "laptop", "decision": "deny",
            "object": "Deployment production/web", "application": "driftguard-system/web",
            "fields": [{"field": "spec.replicas", "declared": "3", "requested": "9"}], **changes}


def _entry(event: str, count: int = 1, minutes_ago: float = 0.0, **record: Any) -> Entry:
    last = format_time(NOW - dt.timedelta(minutes=minutes_ago))
    return Entry(event, count, last, _record(**record))


def _event(record: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web.abc", "namespace": "production", "labels": {audittrail.EVENT_LABEL: "true"},
                         "annotations": {audittrail.RECORD_ANNOTATION: audittrail.encode_record(record or _record())}},
            **extra}


@pytest.mark.parametrize("record", [
    pytest.param(_record(), id="short: plain JSON"),
    pytest.param(_record(reason="r" * 20_000), id="long: compressed"),
])
def test_a_record_round_trips_through_its_annotation(record: dict[str, Any]) -> None:
    encoded = audittrail.encode_record(record)
    assert audittrail.decode_record(encoded) == record
    assert len(encoded) <= audittrail.MAX_RECORD_BYTES


def test_a_record_too_large_even_compressed_keeps_a_count_of_its_fields() -> None:
    import secrets
    fields = [{"field": f"f{i}", "declared": secrets.token_hex(64), "requested": secrets.token_hex(64)}
              for i in range(2000)]
    decoded = audittrail.decode_record(audittrail.encode_record(_record(fields=fields)))
    assert decoded["fields"] == [] and decoded["fields_omitted"] == 2000 and decoded["user"] == "laptop"


@pytest.mark.parametrize("text", ["", "{", "[]", '{"user": "x"}', "z1:!!!", "z1:" + "aGVsbG8="])
def test_an_unreadable_annotation_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="unreadable audit record"):
        audittrail.decode_record(text)


@pytest.mark.parametrize(("event", "expected"), [
    pytest.param(_event(), ("production/web.abc", 1, "2026-12-03T11:00:00Z"), id="first occurrence"),
    pytest.param(_event(series={"count": 40, "lastObservedTime": "2026-12-03T11:30:00.123456Z"}),
                 ("production/web.abc", 40, "2026-12-03T11:30:00Z"), id="a series"),
    pytest.param({"metadata": {"name": "x", "namespace": "n"}}, None, id="not an audit Event"),
    pytest.param(_event() | {"metadata": {"name": "x", "labels": {audittrail.EVENT_LABEL: "true"},
                                          "annotations": {audittrail.RECORD_ANNOTATION: "{"}}}, None,
                 id="an unreadable record"),
    pytest.param(_event(series={"count": 2, "lastObservedTime": "yesterday"}), None, id="an unreadable time"),
])
def test_entry_of_event(event: dict[str, Any], expected: tuple[str, int, str] | None) -> None:
    entry = audittrail.entry_of_event(event)
    assert (None if entry is None else (entry.event, entry.count, entry.last)) == expected


def test_trail_names_are_distinct_valid_and_the_cluster_has_its_own() -> None:
    names = {audittrail.trail_name(app) for app in ("a/b", "a-b/", "A/B", "x" * 200 + "/y", "a/b.c")}
    assert len(names) == 5
    assert all(len(n) <= 253 and n.startswith("driftguard-audit-app-") for n in names)
    assert all(audittrail._SLUG.sub("", n) == n for n in names)
    assert audittrail.trail_name("") == audittrail.CLUSTER_TRAIL


@pytest.mark.parametrize(("entries", "kwargs", "kept"), [
    pytest.param([_entry("n/a", 1), _entry("n/a", 5), _entry("n/a", 3)], {}, [("n/a", 5)],
                 id="one entry per Event, the highest count"),
    pytest.param([_entry("n/old", minutes_ago=60 * 24 * 8), _entry("n/new", minutes_ago=1)], {},
                 [("n/new", 1)], id="older than the retention: gone"),
    pytest.param([_entry(f"n/{i}", minutes_ago=100 - i) for i in range(10)], {"max_records": 3},
                 [("n/7", 1), ("n/8", 1), ("n/9", 1)], id="beyond the record limit: the oldest go"),
    pytest.param([_entry(f"n/{i}", minutes_ago=100 - i) for i in range(10)], {"max_records": 0}, [],
                 id="a limit of 0 keeps nothing"),
    pytest.param([_entry(f"n/{i}", minutes_ago=100 - i, reason="r" * 300) for i in range(10)],
                 {"max_bytes": 1500}, "bytes", id="beyond the byte bound: the oldest go"),
])
def test_fold(entries: list[Entry], kwargs: dict[str, Any], kept: list[tuple[str, int]] | str) -> None:
    options = {"now": NOW, "retention": 7 * 86400.0, "max_records": 500, **kwargs}
    folded = audittrail.fold(entries, **options)
    if kept == "bytes":
        assert 0 < len(folded) < len(entries)
        assert len(audittrail.render(folded).encode()) <= kwargs["max_bytes"]
        assert folded[-1].event == "n/9"
    else:
        assert [(e.event, e.count) for e in folded] == kept


def test_a_trail_round_trips_and_skips_lines_that_are_not_entries() -> None:
    entries = [_entry("n/a", 2, minutes_ago=5), _entry("n/b", 1)]
    text = audittrail.render(entries) + "not json\n{\"event\": \"x\"}\n\n"
    assert audittrail.parse(text) == entries
    body = audittrail.trail_configmap("driftguard-audit-cluster", "driftguard-system", "", entries)
    assert body["metadata"]["labels"][audittrail.TRAIL_LABEL] == "true"
    assert audittrail.parse(body["data"][audittrail.TRAIL_KEY]) == entries
