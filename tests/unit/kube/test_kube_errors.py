"""What driftguard.kube makes of API server errors and warnings (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import urllib3

from driftguard.kube import Kube, KubeError, parse_status, parse_warnings


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


def test_an_unusable_kubeconfig_is_a_kube_error(tmp_path: Path) -> None:
    with pytest.raises(KubeError) as caught:
        Kube(tmp_path / "absent.kubeconfig")
    assert (caught.value.status, caught.value.reason) == (0, "InvalidConfiguration")
    assert str(tmp_path / "absent.kubeconfig") in caught.value.message


def test_an_unreachable_server_is_a_kube_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        "clusters: [{name: dead, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: dead, context: {cluster: dead, user: u}}]\n"
    )
    with Kube(kubeconfig, timeout=2) as kube, pytest.raises(KubeError) as caught:
        kube.request("GET", "/version")
    assert (caught.value.status, caught.value.reason) == (0, "Unreachable")
    assert "https://127.0.0.1:1/version" in caught.value.message
