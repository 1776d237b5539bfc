"""The webhook as deployed — gunicorn over TLS from the console script — without an API server."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509
from support.admission import scale_review
from support.flood import Flood
from support.webhook_harness import WebhookProcess, driftguard_command, eventually, free_port, issue_serving, too_large

from certs import CertificateAuthority, Credential, not_after
from driftguard.core import contract
from webhook.kubeio import ClusterAccess

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


EXPIRY_GAUGE = "driftguard_webhook_certificate_expiry_timestamp_seconds"


def _expired(ca: CertificateAuthority) -> Credential:
    return ca.issue_serving("driftguard-webhook", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                            not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), validity=dt.timedelta(days=30))


def _expiry_series(webhook: WebhookProcess) -> list[float]:
    text = webhook.call("GET", "/metrics", verify=False)[1].decode()
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(EXPIRY_GAUGE + "{")]


def _readyz_verified(webhook: WebhookProcess) -> int:
    """/readyz as a client that checks the certificate (the API server) sees it; 0 if the handshake fails."""
    try:
        return webhook.call("GET", "/readyz")[0]
    except ssl.SSLError:
        return 0


def test_an_expired_certificate_makes_the_pod_unready_until_a_valid_one_is_rotated_in(
    webhook_factory: Callable[..., WebhookProcess],
) -> None:
    webhook = webhook_factory(serving=_expired, ready=False, workers=2)
    assert webhook.settings.cert_file is not None and webhook.settings.key_file is not None
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        webhook.serving_certificate()  # what the API server would see
    for _ in range(6):  # fresh connections, so both workers answer
        status, text = webhook.call("GET", "/readyz", verify=False)
        assert status == 503
        assert text.decode() == (
            f"serving certificate {webhook.settings.cert_file} expired at 2020-01-31T00:00:00Z (notAfter): the API "
            "server rejects every TLS handshake to the webhook; issue a new one with `driftguard certs install --dir "
            "<your CA dir>` (or let cert-manager renew the Secret); the webhook loads the new files without a "
            "restart\n")
        assert webhook.call("GET", "/healthz", verify=False) == (200, b"ok\n")
    errors = [line for line in map(json.loads, filter(lambda s: s.startswith("{"), webhook.log().splitlines()))
              if line["level"] == "error" and line.get("certificate") == "expired"]
    assert len(errors) == 1, "logged once, by the master at start-up, not by every worker or probe"
    assert errors[0]["not_after"] == "2020-01-31T00:00:00+00:00" and errors[0]["cert_file"] == str(
        webhook.settings.cert_file)
    assert _expiry_series(webhook) == [dt.datetime(2020, 1, 31, tzinfo=dt.UTC).timestamp()]
    workers = _worker_pids(webhook)

    rotated = issue_serving(webhook.ca)
    rotated.write(webhook.settings.cert_file, webhook.settings.key_file)
    eventually(lambda: _readyz_verified(webhook) == 200, timeout=10, what="/readyz 200 after the rotation")
    time.sleep(1.2)  # past every worker's re-check interval
    assert [_readyz_verified(webhook) for _ in range(6)] == [200] * 6
    assert _expiry_series(webhook) == [not_after(rotated.cert_pem).timestamp()], "one series, the new notAfter"
    assert _worker_pids(webhook) == workers, "no restart"
    assert "serving certificate reloaded" in webhook.log()

    # Renewed again, but for 3 days: the gauge must follow it down (a "max" gauge would keep the other
    # worker's later notAfter), and the warning window is logged.
    short = webhook.ca.issue_serving("driftguard-webhook", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                     validity=dt.timedelta(days=3))
    short.write(webhook.settings.cert_file, webhook.settings.key_file)
    time.sleep(1.2)
    assert _expiry_series(webhook) == [not_after(short.cert_pem).timestamp()]
    assert _readyz_verified(webhook) == 200, "expiring soon is still ready"
    assert '"certificate": "expiring-soon"' in webhook.log()


@pytest.mark.parametrize(("break_files", "says"), [
    (lambda cert, key, ca: key.write_bytes(issue_serving(ca).key_pem), "is not the private key of"),
    (lambda cert, key, ca: cert.unlink(), "No such file or directory"),
], ids=["key-of-another-certificate", "missing-file"])
def test_files_that_cannot_be_served_stop_start_up_with_a_clear_error(
    tmp_path: Path, break_files: Callable[[Path, Path, CertificateAuthority], object], says: str,
) -> None:
    ca = CertificateAuthority.generate()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issue_serving(ca).write(cert, key)
    break_files(cert, key, ca)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTGUARD_")}
    command = [*driftguard_command(), "webhook", "--host", "127.0.0.1", "--port", str(free_port()),
               "--cert-file", str(cert), "--key-file", str(key)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=environment, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("driftguard webhook: cannot serve TLS: ") and says in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("worker_class", ["event", "gthread"])
def test_the_http_edge_as_served(webhook_factory: Callable[..., WebhookProcess], worker_class: str) -> None:
    webhook = webhook_factory(max_body_bytes=64 * 1024, worker_class=worker_class)
    body = _denied_review()
    status, answer = webhook.call("POST", "/validate", body)
    assert status == 200 and json.loads(answer)["response"]["allowed"] is False
    assert webhook.call("POST", "/validate", body, content_type="text/plain")[0] == 400
    assert webhook.call("POST", "/validate", b"{")[0] == 400
    status, text = _announce_only(webhook, 65 * 1024)
    assert status == 413, "refused on Content-Length, before any body is read"
    assert text == too_large(64 * 1024)


def _announce_only(webhook: WebhookProcess, length: int) -> tuple[int, bytes]:
    """POST /validate announcing ``length`` bytes and sending none: the answer must not wait for the body (a
    client sending the whole oversized body may see the connection closed under it: that is the point)."""
    connection = webhook.connect()
    try:
        connection.putrequest("POST", "/validate")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


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


def test_sigterm_stops_it_cleanly_with_every_answered_record_written(
    webhook_factory: Callable[..., WebhookProcess],
) -> None:
    webhook = webhook_factory(workers=1)
    for _ in range(5):
        assert webhook.call("POST", "/validate", _denied_review())[0] == 200
    webhook.stop()
    assert webhook.process.returncode == 0
    assert len(webhook.audit_records()) == 5
    assert not os.path.exists(f"/proc/{webhook.process.pid}")


@pytest.fixture
def silent_apiserver(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig for a TLS server that completes handshakes and then never answers."""
    ca = CertificateAuthority.generate()
    ca.issue_serving("silent", ip_addresses=["127.0.0.1"]).write(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    lock = threading.Lock()

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with lock:
                held.append(raw)
            try:
                held.append(context.wrap_socket(raw, server_side=True, do_handshake_on_connect=True))
            except (OSError, ssl.SSLError):
                continue

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    port = listener.getsockname()[1]
    kubeconfig = tmp_path / "silent.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                    "certificate-authority": str(tmp_path / "ca.crt")}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}],
    }))
    yield kubeconfig
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    listener.close()
    acceptor.join(5)
    with lock:
        for connection in held:
            connection.close()


def test_a_hanging_parent_read_gives_up_at_the_deadline_not_after_client_retries(silent_apiserver: Path) -> None:
    access = ClusterAccess(silent_apiserver, parent_timeout=1.0)
    request: Any = {"resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                    "namespace": "prod", "name": "web"}
    started = time.monotonic()
    parent = access.read_parent(request)
    elapsed = time.monotonic() - started
    access.close()
    time.sleep(3.5)  # let the client's own retries run out before the server goes away
    assert parent.obj is None
    assert parent.error == "GET /apis/apps/v1/namespaces/prod/deployments/web: no answer within 1 s"
    assert elapsed >= 0.9, "it waited for the deadline (the message above says the deadline, not a retry, ended it)"


def _answers_reviews_and_probes(webhook: WebhookProcess, kept: http.client.HTTPSConnection) -> bool:
    """A review on a fresh connection and one on a kept-alive connection are decided; both probes answer."""
    status, answer = webhook.call("POST", "/validate", _denied_review())
    assert status == 200 and json.loads(answer)["response"]["allowed"] is False
    kept.request("POST", "/validate", body=_denied_review(), headers={"Content-Type": "application/json"})
    response = kept.getresponse()
    assert response.status == 200 and json.loads(response.read())["response"]["allowed"] is False
    assert webhook.call("GET", "/healthz") == (200, b"ok\n")
    assert webhook.call("GET", "/readyz") == (200, b"ok\n")
    return True


@pytest.mark.parametrize("mode", ["trickle", "idle"])
def test_a_flood_of_connections_that_never_finish_a_handshake_does_not_stop_reviews(
    webhook_factory: Callable[..., WebhookProcess], mode: Literal["trickle", "idle"],
) -> None:
    """400 connections (25x the 2 workers x 8 threads) held open by a client that sends a TLS record header and
    then one byte every half second, or nothing: every review is still answered, and the server closes each of
    them at its handshake deadline (the flood opens them again)."""
    webhook = webhook_factory(workers=2, handshake_timeout=1.0)
    kept = webhook.connect()
    with Flood(webhook.settings.port, connections=400, mode=mode, interval=0.5, seconds=300) as flood:
        assert flood.opened == 400
        _answers_reviews_and_probes(webhook, kept)
        eventually(lambda: _answers_reviews_and_probes(webhook, kept) and flood.reopened >= 400, timeout=120,
                   interval=0.2, what="every flood connection closed at its deadline while reviews were answered")
    kept.close()


def _probe(webhook: WebhookProcess, path: str) -> tuple[int, bytes]:
    """A kubelet-like probe: 2 s to answer, else (0, b"")."""
    connection = http.client.HTTPSConnection("127.0.0.1", webhook.settings.port, context=webhook.client_context(),
                                             timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()


def test_a_wedged_server_is_unready_while_healthz_still_answers(
    webhook_factory: Callable[..., WebhookProcess], silent_apiserver: Path,
) -> None:
    """One thread, held by a scale review whose parent read hangs for 12 s: /healthz is answered by the event
    loop throughout, /readyz says the server is wedged, and it is ready again once the request ends."""
    webhook = webhook_factory(workers=1, threads=1, kubeconfig=silent_apiserver, parent_timeout=12.0,
                              audit_events=False)
    review = scale_review(9)
    review["request"]["userInfo"] = {"username": "laptop", "groups": ["engineers"]}
    answers: list[int] = []

    def hold() -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", webhook.settings.port,
                                                 context=webhook.client_context(), timeout=60)
        connection.request("POST", "/validate", body=json.dumps(review).encode(),
                           headers={"Content-Type": "application/json"})
        answers.append(connection.getresponse().status)
        connection.close()

    held = threading.Thread(target=hold, daemon=True)
    held.start()
    eventually(lambda: _probe(webhook, "/readyz")[0] == 503, timeout=30, interval=0.5, what="/readyz 503 while wedged")
    status, text = _probe(webhook, "/readyz")
    wedged = rb"wedged: \d+ requests outstanding and none finished for \d+s \(1 threads\)\n"
    assert status == 503 and re.fullmatch(wedged, text), "the review and the probes queued behind it"
    assert _probe(webhook, "/healthz") == (200, b"ok\n")
    held.join(60)
    assert answers == [200], "the held review was answered (denied: its parent could not be read)"
    eventually(lambda: _probe(webhook, "/readyz") == (200, b"ok\n"), timeout=30, what="ready again")


# ---------------------------------------------------------------- caller authentication (--client-ca-file)

def _client_context(webhook: WebhookProcess, credential: Credential | None, directory: Path) -> ssl.SSLContext:
    context = webhook.client_context()
    if credential is not None:
        credential.write(directory / "client.crt", directory / "client.key")
        context.load_cert_chain(directory / "client.crt", directory / "client.key")
    return context


def _post(webhook: WebhookProcess, context: ssl.SSLContext, path: str = "/validate") -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", webhook.settings.port, context=context, timeout=10)
    try:
        connection.request("POST", path, body=_denied_review(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_with_a_client_ca_only_its_certificates_reach_the_reviews_and_probes_stay_open(
    webhook_factory: Callable[..., WebhookProcess], tmp_path: Path,
) -> None:
    client_ca = CertificateAuthority.generate("webhook-client-ca")
    client_ca.credential.write(tmp_path / "client-ca.crt", tmp_path / "client-ca.key")
    webhook = webhook_factory(client_ca_file=tmp_path / "client-ca.crt")

    for path in ("/validate", "/mutate"):  # no certificate: refused before the app, so nothing is recorded
        status, text = _post(webhook, _client_context(webhook, None, tmp_path), path)
        assert status == 403 and b"answers only the API server" in text
    stranger = CertificateAuthority.generate("someone-else").issue_client("kube-apiserver")
    (tmp_path / "stranger").mkdir()
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):  # the handshake fails
        _post(webhook, _client_context(webhook, stranger, tmp_path / "stranger"))
    assert webhook.call("GET", "/healthz") == (200, b"ok\n")  # kubelet probes present no certificate
    assert webhook.call("GET", "/readyz") == (200, b"ok\n")
    assert webhook.call("GET", "/metrics")[0] == 200
    time.sleep(1.5)  # the audit writer would have written by now
    assert webhook.audit_records() == []

    apiserver = client_ca.issue_client("kube-apiserver-webhook-client")
    status, answer = _post(webhook, _client_context(webhook, apiserver, tmp_path))
    assert status == 200 and json.loads(answer)["response"]["allowed"] is False
    eventually(lambda: len(webhook.audit_records()) == 1, what="the authenticated denial recorded")


def test_the_local_api_server_presents_its_webhook_client_certificate(
    webhook_factory: Callable[..., WebhookProcess], control_plane: Any, admin: Any, namespace: str,
) -> None:
    """Registered like local mode does it, with --client-ca-file: the API server's calls are decided (a forged
    CREATE is denied by the webhook), while the same review POSTed without the certificate is refused."""
    from webhook import registration

    webhook = webhook_factory(client_ca_file=control_plane.webhook_client_ca_file)
    name = f"dg-auth-{namespace}"[:60]
    client = registration.url_client(webhook.url, webhook.ca.cert_pem)
    validating, _ = registration.configurations(
        client, name=name, namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}})
    admission = "/apis/admissionregistration.k8s.io/v1"
    admin.request("POST", f"{admission}/validatingwebhookconfigurations", body=validating)
    try:
        forged = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"generateName": "forged-", "labels": {contract.LABEL_MANAGED: "true"}}}

        def denied_by_webhook() -> bool:
            try:
                admin.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=forged,
                              query={"dryRun": "All"})
            except Exception as error:  # KubeError: denied (or the registration not yet picked up)
                return "forged ownership" in str(error)
            return False

        eventually(denied_by_webhook, timeout=60, what="the API server's call decided by the webhook")
        assert _post(webhook, webhook.client_context())[0] == 403
    finally:
        admin.request("DELETE", f"{admission}/validatingwebhookconfigurations/{name}")
