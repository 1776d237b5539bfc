"""A real driftguard webhook for integration tests: ``driftguard webhook`` (gunicorn, TLS) as a child.

``start_webhook`` generates a CA and a serving certificate for 127.0.0.1 with ``certs``, starts the
console script exactly as deployed on a free loopback port, and waits for ``/readyz`` (or, with
``ready=False``, for ``/healthz`` without verifying the certificate, as a kubelet probe does). The process
is stopped (SIGTERM, then SIGKILL) by ``WebhookProcess.stop`` or the ``webhook_factory`` fixture.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from certs import CertificateAuthority, Credential
from driftguard.core.marks import MarkKey
from webhook.records import AuditRecord
from webhook.settings import Settings


@dataclass
class WebhookProcess:
    settings: Settings
    process: subprocess.Popen[bytes]
    ca: CertificateAuthority
    directory: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.settings.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "webhook.log"

    def client_context(self, *, verify: bool = True) -> ssl.SSLContext:
        """The API server's view (``verify``), or a kubelet probe's: HTTPS without checking the certificate."""
        if verify:
            return ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context

    def connect(self, *, verify: bool = True) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.settings.port, context=self.client_context(verify=verify),
                                           timeout=10)

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json", *, verify: bool = True) -> tuple[int, bytes]:
        connection = self.connect(verify=verify)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": content_type} if body else {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def serving_certificate(self) -> bytes:
        """The DER certificate a fresh TLS handshake presents."""
        with socket.create_connection(("127.0.0.1", self.settings.port), timeout=5) as raw, \
                self.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def audit_records(self) -> list[AuditRecord]:
        path = self.settings.audit_file
        if path is None or not path.exists():
            return []
        return [AuditRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def issue_serving(ca: CertificateAuthority) -> Credential:
    return ca.issue_serving("driftguard-webhook", dns_names=["localhost"], ip_addresses=["127.0.0.1"])


def start_webhook(directory: Path, *, serving: Callable[[CertificateAuthority], Credential] = issue_serving,
                  ready: bool = True, **overrides: Any) -> WebhookProcess:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.generate("driftguard-webhook-test-ca")
    ca.credential.write(directory / "ca.crt", directory / "ca.key")
    serving(ca).write(directory / "tls.crt", directory / "tls.key")
    (directory / "mark-key").write_text(MarkKey.generate().to_text() + "\n")
    options: dict[str, Any] = {
        "host": "127.0.0.1", "port": free_port(), "cert_file": directory / "tls.crt",
        "key_file": directory / "tls.key", "audit_file": directory / "audit.jsonl", "workers": 2,
        "mark_key_file": directory / "mark-key",
        **overrides,
    }
    settings = Settings(**options)
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("DRIFTGUARD_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    with (directory / "webhook.log").open("wb") as log:
        process = subprocess.Popen([*driftguard_command(), "webhook", *settings.to_args()], stdout=log,
                                   stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    running = WebhookProcess(settings, process, ca, directory)
    _wait_ready(running, "/readyz" if ready else "/healthz", verify=ready)
    return running


def too_large(cap: int) -> bytes:
    """The webhook's answer (413) to a body over ``cap`` (``--max-body-bytes``)."""
    return (f"the AdmissionReview is over {cap} bytes, the most this webhook accepts (--max-body-bytes, "
            "DRIFTGUARD_MAX_BODY_BYTES): raise it to admit larger objects\n").encode()


def driftguard_command() -> list[str]:
    script = Path(sys.executable).parent / "driftguard"
    if script.exists():
        return [str(script)]
    found = shutil.which("driftguard")
    return [found] if found else [sys.executable, "-m", "webhook"]


def _wait_ready(webhook: WebhookProcess, path: str, *, verify: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if webhook.process.poll() is not None:
            pytest.fail(f"driftguard webhook exited with {webhook.process.returncode}:\n{webhook.log()}")
        try:
            if webhook.call("GET", path, verify=verify)[0] == 200:
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    webhook.stop()
    pytest.fail(f"driftguard webhook: {path} not 200 after {timeout:.0f}s:\n{webhook.log()}")


def eventually(attempt: Callable[[], bool], timeout: float = 20.0, interval: float = 0.1,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        if attempt():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout:.0f}s")
        time.sleep(interval)


@pytest.fixture
def webhook_factory(tmp_path: Path) -> Iterator[Callable[..., WebhookProcess]]:
    started: list[WebhookProcess] = []

    def start(**overrides: Any) -> WebhookProcess:
        started.append(start_webhook(tmp_path / f"webhook-{len(started)}", **overrides))
        return started[-1]

    yield start
    for webhook in started:
        webhook.stop()
