"""``driftguard audit``: reading files, logs and stdin; filters; table and JSON output."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from support.admission import NOW, SETTINGS, edited, live, review

from webhook import auditcli, policy
from webhook.cli import main
from webhook.records import AuditRecord


def _record(**changes: object) -> AuditRecord:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"],
                              SETTINGS, NOW)
    assert verdict.record is not None
    return dataclasses.replace(verdict.record, **changes)  # type: ignore[arg-type]


RECORDS = [
    _record(),
    _record(user="bob", time="2024-06-01T11:00:00Z", decision="warn"),
    _record(user="carol", object="ConfigMap production/settings", name="settings", decision="break-glass",
            time="2024-05-01T00:00:00Z"),
    _record(dry_run=True, uid="dry"),
]


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in RECORDS))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", *argv])
    return code, capsys.readouterr().out


@pytest.mark.parametrize(("filters", "uids_users"), [
    ([], ["laptop", "bob", "carol", "laptop"]),
    (["--user", "bob"], ["bob"]),
    (["--decision", "break-glass"], ["carol"]),
    (["--object", "production/settings"], ["carol"]),
    (["--object", "my-service"], ["laptop", "bob", "laptop"]),
    (["--since", "2024-06-01T10:00:00Z"], ["laptop", "bob", "laptop"]),
    (["--dry-run", "exclude"], ["laptop", "bob", "carol"]),
    (["--dry-run", "only"], ["laptop"]),
])
def test_filters(audit_file: Path, capsys: pytest.CaptureFixture[str], filters: list[str],
                 uids_users: list[str]) -> None:
    code, out = _run(["--file", str(audit_file), "--json", *filters], capsys)
    assert code == 0
    assert [json.loads(line)["user"] for line in out.splitlines()] == uids_users


def test_since_takes_durations() -> None:
    now = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert auditcli.parse_since("90m", now) == dt.datetime(2024, 6, 1, 10, 30, tzinfo=dt.UTC)
    assert auditcli.parse_since("2d", now) == dt.datetime(2024, 5, 30, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="expected a duration"):
        auditcli.parse_since("yesterday", now)


def test_the_table_is_readable(audit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(["--file", str(audit_file), "--user", "laptop"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split() == ["TIME", "DECISION", "USER", "OPERATION", "OBJECT", "FIELDS"]
    assert lines[1].split("  ")[0] == "2024-06-01T12:00:00Z"
    assert "deny" in lines[1] and "Deployment production/my-service" in lines[1]
    assert lines[1].endswith("spec.replicas: 3 -> 9")
    assert "deny (dry-run)" in lines[2]


def test_local_mode_directory(tmp_path: Path, audit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(["--dir", str(audit_file.parent), "--json"], capsys)
    assert code == 0 and len(out.splitlines()) == 4


def test_stdin_accepts_the_webhooks_json_log(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    log = "\n".join([
        '[2024-06-01 12:00:00 +0000] [1] [INFO] Starting gunicorn 23.0.0',
        json.dumps({"level": "info", "logger": "webhook.app", "message": "admission", "uid": "x"}),
        json.dumps({"level": "info", "logger": "driftguard.audit", "message": "audit",
                    "audit": RECORDS[1].to_dict()}),
        "{broken json",
    ])
    monkeypatch.setattr("sys.stdin", io.StringIO(log))
    code, out = _run(["-", "--json"], capsys)
    assert code == 0
    assert [AuditRecord.from_dict(json.loads(line)) for line in out.splitlines()] == [RECORDS[1]]


def test_no_source_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DRIFTGUARD_AUDIT_FILE", raising=False)
    assert main(["audit"]) == 2
    assert "--file PATH, --dir DIR" in capsys.readouterr().err


def test_the_webhooks_audit_file_variable_is_the_default(audit_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRIFTGUARD_AUDIT_FILE", str(audit_file))
    code, out = _run(["--json"], capsys)
    assert code == 0 and len(out.splitlines()) == 4


def test_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--file", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def _decided(operation: str, **review_args: object) -> AuditRecord:
    verdict = policy.validate(review(operation, **review_args)["request"], SETTINGS, NOW)  # type: ignore[arg-type]
    assert verdict.record is not None, verdict
    return verdict.record


@pytest.mark.parametrize(("record", "attempted"), [
    (RECORDS[0], "spec.replicas: 3 -> 9"),
    (_decided("DELETE", old=live()), "whole object (delete)"),  # a managed Deployment deleted by the laptop
    (_decided("DELETE", old=live(), dry_run=True), "whole object (delete)"),
    (dataclasses.replace(RECORDS[0], operation="CREATE", fields=()), "whole object (create)"),
    (dataclasses.replace(RECORDS[0], subresource="status", fields=()), "status subresource (update)"),
    (dataclasses.replace(RECORDS[0], fields=()), "-"),  # an UPDATE judged as a whole: nothing more to say
])
def test_the_fields_column_says_what_was_attempted(record: AuditRecord, attempted: str) -> None:
    assert record.attempted() == attempted
    assert auditcli.table([record]).splitlines()[1].endswith(attempted)


def test_a_delete_denial_shows_the_whole_object_in_the_table(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    deleted = _decided("DELETE", old=live())
    assert deleted.decision == "deny" and deleted.operation == "DELETE" and deleted.fields == ()
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps(deleted.to_dict()) + "\n")
    code, out = _run(["--file", str(path)], capsys)
    assert code == 0
    [row] = out.splitlines()[1:]
    assert "DELETE" in row and row.endswith("whole object (delete)")
    code, out = _run(["--file", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["fields"] == []  # the JSON keeps the record's shape: no words added
