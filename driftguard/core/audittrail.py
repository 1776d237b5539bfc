"""The durable audit trail's format and its one rule: folding Event series into a bounded trail.

The webhook's aggregated audit Events (``webhook.audit``) each carry the whole first record of their
series — compact JSON in the annotation ``driftguard.io/audit-record`` — and are labelled
``driftguard.io/audit: "true"``; ``series.count`` says how often it happened. Events expire (an hour by
default), so the reconciler's leader folds them into a *trail*: one ConfigMap per Application in
driftguard's namespace (``trail_name``), plus ``driftguard-audit-cluster`` for records of no Application.
A trail holds ``Entry`` lines (one per Event series: the record, its count, the last time it happened),
keyed by the Event, so folding the same Event twice (a relist, a restart, a patched count) never
duplicates it. ``fold`` is the bound: entries older than the retention go, then the oldest beyond the
record limit, then the oldest until the ConfigMap fits ``MAX_TRAIL_BYTES``.

``driftguard audit --kubeconfig`` reads the trails and the Events not folded yet, and merges them the
same way (``merge``). Pure: the callers pass ``now`` and do the I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core.clock import format_time, parse_time

EVENT_LABEL: Final = "driftguard.io/audit"  # "true" on the webhook's audit Events
RECORD_ANNOTATION: Final = "driftguard.io/audit-record"  # the series' first record, encoded
TRAIL_LABEL: Final = "driftguard.io/audit-trail"  # "true" on trail ConfigMaps
APPLICATION_ANNOTATION: Final = "driftguard.io/audit-application"  # the trail's Application ("" for the cluster's)
TRAIL_KEY: Final = "records.jsonl"
TRAIL_PREFIX: Final = "driftguard-audit-"
CLUSTER_TRAIL: Final = TRAIL_PREFIX + "cluster"
MAX_TRAIL_BYTES: Final = 768 * 1024  # a ConfigMap holds at most 1 MiB
MAX_RECORD_BYTES: Final = 64 * 1024  # an encoded record larger than this loses its field list
COMPRESS_ABOVE: Final = 4096
_COMPRESSED: Final = "z1:"
_SLUG: Final = re.compile(r"[^a-z0-9-]+")


# ---------------------------------------------------------------- a record on an Event

def encode_record(record: Mapping[str, Any]) -> str:
    """The annotation value carrying ``record`` (a dict in ``AuditRecord.to_dict``'s shape): compact JSON,
    zlib+base64 when long; a record whose field list would not fit keeps a count of its fields instead."""
    text = _compact(record)
    if len(text.encode()) > COMPRESS_ABOVE:
        text = _COMPRESSED + base64.b64encode(zlib.compress(text.encode(), 9)).decode()
    if len(text) > MAX_RECORD_BYTES and record.get("fields"):
        fields = record.get("fields") or []
        return encode_record({**record, "fields": [], "fields_omitted": len(fields)})
    return text


def decode_record(text: str) -> dict[str, Any]:
    """The record an annotation carries; ValueError when it is not one."""
    try:
        if text.startswith(_COMPRESSED):
            text = zlib.decompress(base64.b64decode(text[len(_COMPRESSED):], validate=True)).decode()
        value = json.loads(text)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"unreadable audit record: {error}") from None
    if not isinstance(value, dict) or not isinstance(value.get("decision"), str):
        raise ValueError("unreadable audit record: not an object with a decision")
    return value


# ---------------------------------------------------------------- entries

@dataclass(frozen=True, slots=True)
class Entry:
    """One Event series in a trail: its first ``record``, how often it happened and when last."""

    event: str  # "namespace/name" of the Event that carried it
    count: int
    last: str  # RFC 3339
    record: Mapping[str, Any]

    @property
    def application(self) -> str:
        return str(self.record.get("application") or "")

    @property
    def last_time(self) -> dt.datetime:
        return parse_time(self.last)

    def to_json(self) -> str:
        return _compact({"event": self.event, "count": self.count, "last": self.last, "record": self.record})

    @classmethod
    def from_json(cls, line: str) -> Entry:
        data = json.loads(line)
        if not isinstance(data, dict) or not isinstance(data.get("record"), dict):
            raise ValueError("not a trail entry")
        entry = cls(str(data.get("event") or ""), int(data.get("count") or 1), str(data.get("last") or ""),
                    data["record"])
        entry.last_time  # noqa: B018 - fails on an unreadable time
        return entry


def entry_of_event(event: Mapping[str, Any]) -> Entry | None:
    """The entry an audit Event carries (None when it carries none, or not readably)."""
    metadata = event.get("metadata") or {}
    if (metadata.get("labels") or {}).get(EVENT_LABEL) != "true":
        return None
    encoded = (metadata.get("annotations") or {}).get(RECORD_ANNOTATION)
    if not isinstance(encoded, str):
        return None
    try:
        record = decode_record(encoded)
        series = event.get("series") or {}
        count = int(series.get("count") or 1)
        last = str(series.get("lastObservedTime") or record.get("time") or "")
        moment = format_time(parse_time(last))
    except (ValueError, TypeError):
        return None
    return Entry(f"{metadata.get('namespace', '')}/{metadata.get('name', '')}", max(count, 1), moment, record)


def trail_name(application: str) -> str:
    """The trail ConfigMap of ``application`` ("namespace/name"; "" for records of no Application): a
    readable slug plus a digest, so two Applications never share a trail and the name stays a valid one."""
    if not application:
        return CLUSTER_TRAIL
    digest = hashlib.sha256(application.encode()).hexdigest()[:10]
    slug = _SLUG.sub("-", application.lower().replace("/", "-")).strip("-")[:40].strip("-")
    return f"{TRAIL_PREFIX}app-{slug}-{digest}"


# ---------------------------------------------------------------- folding

def merge(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per Event (the one with the highest count: a series only grows), oldest first."""
    kept: dict[str, Entry] = {}
    for entry in entries:
        known = kept.get(entry.event)
        if known is None or (entry.count, entry.last) > (known.count, known.last):
            kept[entry.event] = entry
    return sorted(kept.values(), key=lambda e: (e.last_time, e.event))


def fold(entries: Iterable[Entry], *, now: dt.datetime, retention: float, max_records: int,
         max_bytes: int = MAX_TRAIL_BYTES) -> list[Entry]:
    """``entries`` merged and bounded: none last seen more than ``retention`` seconds before ``now``, at
    most ``max_records``, at most ``max_bytes`` rendered; the newest are kept. Oldest first."""
    horizon = now - dt.timedelta(seconds=retention)
    kept = [e for e in merge(entries) if e.last_time >= horizon]
    kept = kept[-max_records:] if max_records > 0 else []
    sizes = [len(e.to_json().encode()) + 1 for e in kept]
    total, start = sum(sizes), 0
    while total > max_bytes and start < len(kept):
        total -= sizes[start]
        start += 1
    return kept[start:]


def render(entries: Sequence[Entry]) -> str:
    return "".join(e.to_json() + "\n" for e in entries)


def parse(text: str) -> list[Entry]:
    """A trail's entries; lines that are not entries (a hand edit) are skipped."""
    entries: list[Entry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(Entry.from_json(line))
        except (ValueError, TypeError):
            continue
    return entries


def trail_configmap(name: str, namespace: str, application: str, entries: Sequence[Entry]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {TRAIL_LABEL: "true", "app.kubernetes.io/part-of": "driftguard"},
                     "annotations": {APPLICATION_ANNOTATION: application}},
        "data": {TRAIL_KEY: render(entries)},
    }


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
