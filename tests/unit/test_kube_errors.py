"""What driftguard.kube makes of API server errors and warnings (no server needed)."""

from __future__ import annotations

import json

import pytest
import urllib3

from driftguard.kube import parse_status, parse_warnings


def _headers(*warnings: str) -> urllib3.HTTPHeaderDict:
    headers = urllib3.HTTPHeaderDict()
    for warning in warnings:
        headers.add("Warning", warning)
    return headers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ((), ()),
        (('299 - "spec.replicas is declared in git"',), ("spec.replicas is declared in git",)),
        (('299 - "first"', '299 - "second, with a comma"'), ("first", "second, with a comma")),
        (('299 - "quoted \\"value\\" inside"',), ('quoted "value" inside',)),
        (("not an rfc warning",), ("not an rfc warning",)),
    ],
    ids=["none", "one", "two", "escaped-quotes", "malformed"],
)
def test_parse_warnings(raw: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert parse_warnings(_headers(*raw)) == expected


def test_parse_warnings_without_headers() -> None:
    assert parse_warnings(None) == ()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            403,
            json.dumps({"kind": "Status", "reason": "Forbidden", "message": 'User "x" cannot list'}).encode(),
            ("Forbidden", 'User "x" cannot list'),
        ),
        (404, json.dumps({"kind": "Status", "message": "gone"}), ("HTTP404", "gone")),
        (502, b"<html>bad gateway</html>", ("HTTP502", "<html>bad gateway</html>")),
        (500, None, ("HTTP500", "")),
    ],
    ids=["status-body", "no-reason", "not-json", "empty"],
)
def test_parse_status(status: int, body: bytes | str | None, expected: tuple[str, str]) -> None:
    assert parse_status(status, body) == expected
