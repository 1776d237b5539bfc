"""``driftguard audit``: list and filter audit records as a table or JSON.

In a cluster, ``--kubeconfig K`` reads the durable audit trail (``driftguard.core.audittrail``: the
ConfigMaps the reconciler's leader folds the webhook's audit Events into, in ``--audit-namespace``) and
the audit Events not folded yet, merged so each Event series appears once, with how often it happened
(``count``) and when last. ``--app NAMESPACE/NAME`` keeps one Application's records (and reads only its
trail). Without ``--kubeconfig`` it reads the JSONL audit file (``--file``, ``--dir D`` for local
mode's ``D/audit.jsonl``, else ``$DRIFTGUARD_AUDIT_FILE``) or, with ``-``, standard input — so
``kubectl logs deploy/driftguard-webhook | driftguard audit -`` works on the webhook's JSON log, where
each audit record is a line's ``audit`` field. Lines that are not audit records are skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final
from urllib.parse import quote

from driftguard.core import audittrail
from driftguard.core.clock import parse_time
from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube, KubeError
from webhook.records import DECISIONS, AuditRecord

_DURATION: Final = re.compile(r"^(\d+)([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
AUDIT_FILE_ENV: Final = "DRIFTGUARD_AUDIT_FILE"  # the webhook's own setting, so `kubectl exec` needs no flag
COLUMNS: Final = ("TIME", "DECISION", "USER", "OPERATION", "OBJECT", "FIELDS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("source", nargs="?",
                        help="'-' reads standard input (e.g. kubectl logs ... | driftguard audit -)")
    source.add_argument("--file", type=Path, help="the JSONL audit file (--audit-file of the webhook)")
    source.add_argument("--dir", type=Path, help="a local-mode directory: reads DIR/audit.jsonl")
    source.add_argument("--kubeconfig", type=Path,
                        help="read the cluster's durable audit trail (and the audit Events not folded into it yet)")
    parser.add_argument("--context", help="the kubeconfig context (with --kubeconfig)")
    parser.add_argument("--audit-namespace", default=NAMESPACE,
                        help=f"where the trail ConfigMaps are (the reconciler's --audit-namespace; "
                             f"default {NAMESPACE})")
    parser.add_argument("--app", help="only records of this Application (NAMESPACE/NAME)")
    parser.add_argument("--user", help="only records by this user")
    parser.add_argument("--object", help="only records whose object contains this text (e.g. production/my-service)")
    parser.add_argument("--decision", choices=DECISIONS, help="only this decision")
    parser.add_argument("--since", help="only records newer than a duration (30s, 10m, 2h, 7d) or an RFC 3339 time")
    parser.add_argument("--dry-run", choices=("include", "exclude", "only"), default="include",
                        help="dry-run records (default include)")
    parser.add_argument("--json", action="store_true", help="print matching records as JSON lines")


@dataclass(frozen=True, slots=True)
class Found:
    """A record as read: once from a file or a log; from the cluster, an Event series' first record with
    how often it happened and when last."""

    record: AuditRecord
    count: int = 1
    last: str = ""

    def to_dict(self) -> dict[str, object]:
        data = self.record.to_dict()
        if self.last:
            data.update(count=self.count, last_time=self.last)
        return data


def run(args: argparse.Namespace) -> int:
    try:
        if args.app is not None and args.app.count("/") != 1:
            raise ValueError(f"--app {args.app!r}: expected NAMESPACE/NAME")
        since = parse_since(args.since, dt.datetime.now(dt.UTC)) if args.since else None
        if args.kubeconfig is not None:
            found = read_cluster(args.kubeconfig, args.context, args.audit_namespace, args.app)
        else:
            stream = _open(args)
            try:
                found = [Found(r) for r in read(stream)]
            finally:
                if stream is not sys.stdin:
                    stream.close()
        wanted = {id(r) for r in select([f.record for f in found], user=args.user, obj=args.object,
                                        decision=args.decision, since=since, dry_run=args.dry_run, app=args.app)}
        records = [f for f in found if id(f.record) in wanted]
    except (OSError, ValueError, KubeError) as error:
        print(f"driftguard audit: {error}", file=sys.stderr)
        return 2
    try:
        if args.json:
            sys.stdout.writelines(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in records)
        else:
            sys.stdout.write(table(records))
        sys.stdout.flush()
    except BrokenPipeError:  # `driftguard audit ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _open(args: argparse.Namespace) -> IO[str]:
    if args.source == "-":
        return sys.stdin
    if args.source:
        raise ValueError(f"unexpected argument {args.source!r}: use --file PATH, --dir DIR or -")
    path: Path | None = args.file or (args.dir / "audit.jsonl" if args.dir else None)
    if path is None and os.environ.get(AUDIT_FILE_ENV):
        path = Path(os.environ[AUDIT_FILE_ENV])
    if path is None:
        raise ValueError(f"say where the records are: --file PATH, --dir DIR, - for standard input, "
                         f"or set {AUDIT_FILE_ENV}")
    return path.open(encoding="utf-8")


def read_cluster(kubeconfig: Path, context: str | None, namespace: str, app: str | None) -> list[Found]:
    """The trail (one Application's with ``app``) merged with the audit Events not folded yet, oldest first.
    Events that cannot be listed (no RBAC to list Events cluster-wide) are said on stderr, not fatal."""
    with Kube(kubeconfig, context=context) as kube:
        return read_trail(kube, namespace, app, warn=lambda text: print(f"driftguard audit: {text}", file=sys.stderr))


def read_trail(kube: Kube, namespace: str, app: str | None = None,
               warn: Callable[[str], None] = lambda text: None) -> list[Found]:
    """``read_cluster`` with a client already made (the web UI's Audit page reads the trail through it)."""
    entries: list[audittrail.Entry] = []
    configmaps = f"/api/v1/namespaces/{quote(namespace)}/configmaps"
    if app:
        try:
            items = [kube.request("GET", f"{configmaps}/{quote(audittrail.trail_name(app))}")]
        except KubeError as error:
            if error.status != 404:
                raise
            items = []
    else:
        items = list(_items(kube, configmaps, f"{audittrail.TRAIL_LABEL}=true"))
    for item in items:
        entries += audittrail.parse(str((item.get("data") or {}).get(audittrail.TRAIL_KEY) or ""))
    try:
        for event in _items(kube, "/apis/events.k8s.io/v1/events", f"{audittrail.EVENT_LABEL}=true"):
            entry = audittrail.entry_of_event(event)
            if entry is not None:
                entries.append(entry)
    except KubeError as error:
        warn(f"audit Events not read (only the trail, up to its last flush): {error}")
    found: list[Found] = []
    for entry in audittrail.merge(entries):
        try:
            found.append(Found(AuditRecord.from_dict(entry.record), entry.count, entry.last))
        except ValueError:
            continue
    return found


def _items(kube: Kube, path: str, selector: str) -> Iterator[dict[str, object]]:
    query = {"labelSelector": selector, "limit": "500"}
    while True:
        listed = kube.request("GET", path, query=query)
        yield from listed.get("items") or []
        token = (listed.get("metadata") or {}).get("continue")
        if not token:
            return
        query = {**query, "continue": str(token)}


def read(lines: Iterable[str]) -> Iterator[AuditRecord]:
    """Audit records from JSONL-file lines or JSON log lines, skipping everything else."""
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            document = json.loads(text)
            if isinstance(document, dict) and isinstance(document.get("audit"), dict):
                document = document["audit"]
            if isinstance(document, dict):
                yield AuditRecord.from_dict(document)
        except ValueError:
            continue


def select(records: Iterable[AuditRecord], *, user: str | None = None, obj: str | None = None,
           decision: str | None = None, since: dt.datetime | None = None,
           dry_run: str = "include", app: str | None = None) -> Iterator[AuditRecord]:
    needle = obj.lower() if obj else None
    for record in records:
        if app and record.application != app:
            continue
        if user and record.user != user:
            continue
        if needle and needle not in record.object.lower() and needle != record.name.lower():
            continue
        if decision and record.decision != decision:
            continue
        if since and record.timestamp < since:
            continue
        if (dry_run == "exclude" and record.dry_run) or (dry_run == "only" and not record.dry_run):
            continue
        yield record


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    match = _DURATION.match(text.strip())
    if match:
        return now - dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        return parse_time(text.strip())
    except ValueError as error:
        raise ValueError(f"--since {text!r}: expected a duration like 10m or an RFC 3339 time") from error


def table(records: Sequence[AuditRecord | Found]) -> str:
    rows = [COLUMNS] + [_row(r) if isinstance(r, AuditRecord) else _row(r.record, r.count) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"


def _row(record: AuditRecord, count: int = 1) -> tuple[str, str, str, str, str, str]:
    decision = record.decision + (" (dry-run)" if record.dry_run else "") + (f" x{count}" if count > 1 else "")
    operation = record.operation + (f"/{record.subresource}" if record.subresource else "")
    return record.time, decision, record.user, operation, record.object, record.attempted()
