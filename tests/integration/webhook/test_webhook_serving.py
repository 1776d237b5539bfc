"""The webhook as deployed — gunicorn over TLS from the console script — without an API server."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from webhook_harness import WebhookProcess, eventually, issue_serving

from driftguard.core import contract

pytestmark = pytest.mark.integration


def _denied_review() -> bytes:
    """An engineer scaling a managed Deployment from 3 to 9."""
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "prod"},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}
    source = contract.Source("https://github.com/org/k8s-manifests", "1a2b3c4d", "alice@org", "2024-05-01T10:00:00Z",
                             "web.yaml")
    old = contract.stamp(manifest, application="ops/web", source=source, enforcement="deny")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 9
    request = {"uid": "5b0a2c", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
               "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
               "operation": "UPDATE", "userInfo": {"username": "laptop", "groups": ["engineers"]},
               "namespace": "prod", "name": "web", "object": new, "oldObject": old}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def _serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def _worker_pids(webhook: WebhookProcess) -> set[int]:
    children = Path(f"/proc/{webhook.process.pid}/task/{webhook.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def test_rotated_certificate_files_are_served_without_a_restart(
    webhook_factory: Callable[..., WebhookProcess],
) -> None:
    webhook = webhook_factory()
    before = webhook.serving_certificate()
    assert _serial(before) == x509.load_pem_x509_certificate(webhook.settings.cert_file.read_bytes()
                                                              if webhook.settings.cert_file else b"").serial_number
    keep_alive = webhook.connect()
    keep_alive.request("GET", "/healthz")
    assert keep_alive.getresponse().read() == b"ok\n"
    workers = _worker_pids(webhook)

    rotated = issue_serving(webhook.ca)
    assert webhook.settings.cert_file is not None and webhook.settings.key_file is not None
    rotated.write(webhook.settings.cert_file, webhook.settings.key_file)
    new_serial = x509.load_pem_x509_certificate(rotated.cert_pem).serial_number

    eventually(lambda: _serial(webhook.serving_certificate()) == new_serial, timeout=10,
               what="the next handshake presents the rotated certificate")
    assert webhook.process.poll() is None
    assert _worker_pids(webhook) == workers, "no worker was restarted"
    keep_alive.request("GET", "/healthz")  # connections made before the rotation keep working
    assert keep_alive.getresponse().read() == b"ok\n"
    keep_alive.close()


def test_the_http_edge_as_served(webhook_factory: Callable[..., WebhookProcess]) -> None:
    webhook = webhook_factory(max_body_bytes=64 * 1024)
    body = _denied_review()
    status, answer = webhook.call("POST", "/validate", body)
    assert status == 200 and json.loads(answer)["response"]["allowed"] is False
    assert webhook.call("POST", "/validate", body, content_type="text/plain")[0] == 400
    assert webhook.call("POST", "/validate", b"{")[0] == 400
    assert webhook.call("POST", "/validate", b" " * (65 * 1024))[0] == 400
    status, text = webhook.call("POST", "/validate", b" " * (65 * 1024))
    assert status == 400 and b"exceeds 65536 bytes" in text


def test_metrics_add_up_over_workers_and_records_reach_the_file(
    webhook_factory: Callable[..., WebhookProcess],
) -> None:
    webhook = webhook_factory(workers=2, threads=2)
    body = _denied_review()
    for _ in range(20):
        assert webhook.call("POST", "/validate", body)[0] == 200
    metrics = webhook.call("GET", "/metrics")[1].decode()
    counted = re.search(r'driftguard_webhook_decisions_total\{result="deny",webhook="validate"\} (\S+)', metrics)
    assert counted is not None and float(counted.group(1)) == 20.0
    eventually(lambda: len(webhook.audit_records()) == 20, what="20 audit records in the file")
    assert {r.decision for r in webhook.audit_records()} == {"deny"}
    logged = [json.loads(line) for line in webhook.log().splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "driftguard.audit" for line in logged)
    assert all("-----BEGIN" not in line for line in webhook.log().splitlines())


def test_sigterm_stops_it_cleanly(webhook_factory: Callable[..., WebhookProcess]) -> None:
    webhook = webhook_factory()
    webhook.stop()
    assert webhook.process.returncode == 0
    assert not os.path.exists(f"/proc/{webhook.process.pid}")
