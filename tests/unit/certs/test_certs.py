"""Certificates: what the API server and TLS clients will check, checked the same way."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs import CertificateAuthority, Credential, expires_within, not_after, service_dns_names
from driftguard.cli import main

SERVICE, NAMESPACE = "driftguard-webhook", "driftguard-system"
SERVICE_DNS = f"{SERVICE}.{NAMESPACE}.svc"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate()


@pytest.fixture(scope="module")
def serving(ca: CertificateAuthority) -> Credential:
    return ca.issue_serving(SERVICE_DNS, service_dns_names(SERVICE, NAMESPACE), ["127.0.0.1"])


def _verify(ca: CertificateAuthority, leaf: Credential, subject: x509.verification.Subject) -> None:
    store = Store([x509.load_pem_x509_certificate(ca.cert_pem)])
    verifier = PolicyBuilder().store(store).build_server_verifier(subject)
    verifier.verify(x509.load_pem_x509_certificate(leaf.cert_pem), [])


@pytest.mark.parametrize(
    "subject",
    [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName(SERVICE_DNS),
        x509.DNSName(f"{SERVICE}.{NAMESPACE}.svc.cluster.local"),
        x509.DNSName(f"{SERVICE}.{NAMESPACE}"),
    ],
    ids=["ip", "svc", "cluster-local", "short"],
)
def test_serving_cert_verifies_against_its_ca(
    ca: CertificateAuthority, serving: Credential, subject: x509.verification.Subject
) -> None:
    _verify(ca, serving, subject)


@pytest.mark.parametrize(
    "subject",
    [x509.DNSName("other.driftguard-system.svc"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))],
    ids=["other-dns", "other-ip"],
)
def test_serving_cert_does_not_verify_for_other_names(
    ca: CertificateAuthority, serving: Credential, subject: x509.verification.Subject
) -> None:
    with pytest.raises(VerificationError):
        _verify(ca, serving, subject)


def test_serving_cert_does_not_verify_against_another_ca(serving: Credential) -> None:
    with pytest.raises(VerificationError):
        _verify(CertificateAuthority.generate(), serving, x509.DNSName(SERVICE_DNS))


class OneShotTLSServer:
    """A TLS server on loopback that answers one connection with b"ok" and remembers the client cert."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.peer: dict[str, object] | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        try:
            with self.context.wrap_socket(connection, server_side=True) as tls:
                self.peer = tls.getpeercert()  # type: ignore[assignment]
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass  # the client refused us; that is the client's test to report

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def _server_context(directory: Path, serving: Credential, client_ca: bytes | None = None) -> ssl.SSLContext:
    serving.write(directory / "tls.crt", directory / "tls.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    if client_ca is not None:
        (directory / "client-ca.crt").write_bytes(client_ca)
        context.load_verify_locations(directory / "client-ca.crt")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def tls_server(tmp_path: Path, serving: Credential) -> Iterator[int]:
    server = OneShotTLSServer(_server_context(tmp_path, serving))
    yield server.port
    server.close()


@pytest.mark.parametrize("server_name", ["127.0.0.1", SERVICE_DNS])
def test_real_tls_handshake_on_loopback(
    tls_server: int, ca: CertificateAuthority, tmp_path: Path, server_name: str
) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    client = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    with socket.create_connection(("127.0.0.1", tls_server), timeout=5) as raw:
        with client.wrap_socket(raw, server_hostname=server_name) as tls:
            assert tls.recv(2) == b"ok"


def test_real_tls_handshake_rejects_a_name_not_in_the_cert(
    tls_server: int, ca: CertificateAuthority, tmp_path: Path
) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    client = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    with socket.create_connection(("127.0.0.1", tls_server), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.wrap_socket(raw, server_hostname="evil.example.org")


def test_client_cert_carries_user_and_groups(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue_client("laptop", ["engineers", "oncall"]).cert_pem)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["laptop"]
    organizations = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert organizations == ["engineers", "oncall"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_client_cert_authenticates_in_a_mutual_tls_handshake(
    ca: CertificateAuthority, serving: Credential, tmp_path: Path
) -> None:
    """What kube-apiserver does with --client-ca-file: require a client cert from the CA, read CN/O."""
    server = OneShotTLSServer(_server_context(tmp_path, serving, client_ca=ca.cert_pem))
    ca.issue_client("laptop", ["engineers"]).write(tmp_path / "laptop.crt", tmp_path / "laptop.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    client = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    client.load_cert_chain(tmp_path / "laptop.crt", tmp_path / "laptop.key")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
    server.close()
    assert server.peer is not None
    subject = {key: value for rdn in server.peer["subject"] for key, value in rdn}  # type: ignore[attr-defined]
    assert subject == {"commonName": "laptop", "organizationName": "engineers"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_are_written_0600_and_certs_0644(serving: Credential, tmp_path: Path) -> None:
    serving.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert _mode(tmp_path / "tls.key") == 0o600
    assert _mode(tmp_path / "tls.crt") == 0o644


def test_rewriting_a_world_readable_key_file_yields_0600(serving: Credential, tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("old")
    key.chmod(0o644)
    serving.write(tmp_path / "tls.crt", key)
    assert _mode(key) == 0o600
    assert key.read_bytes() == serving.key_pem
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_not_after_reports_expiry(ca: CertificateAuthority) -> None:
    leaf = ca.issue_serving("x", ["x"], validity=dt.timedelta(days=10))
    expiry = not_after(leaf.cert_pem)
    assert dt.timedelta(days=9) < expiry - dt.datetime.now(dt.UTC) <= dt.timedelta(days=10)
    assert not expires_within(leaf.cert_pem, dt.timedelta(days=5))
    assert expires_within(leaf.cert_pem, dt.timedelta(days=11))
    assert expires_within(leaf.cert_pem, dt.timedelta(0), now=expiry + dt.timedelta(seconds=1))


def test_a_serving_cert_can_be_issued_for_a_window_in_the_past(ca: CertificateAuthority) -> None:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    leaf = ca.issue_serving("x", ["x"], validity=dt.timedelta(days=30), not_before=start)
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == not_after(leaf.cert_pem) == start + dt.timedelta(days=30)
    assert expires_within(leaf.cert_pem, dt.timedelta(0))


def test_serving_cert_needs_a_name(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ca.issue_serving("nameless")


def test_cli_generate_writes_files_and_never_prints_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    argv = ["certs", "generate", "--dir", str(out), "--service", SERVICE, "--namespace", NAMESPACE]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert _mode(out / "ca.key") == _mode(out / "tls.key") == 0o600
    assert "PRIVATE KEY" not in first and str(out / "tls.key") in first
    _verify(
        CertificateAuthority.load(out / "ca.crt", out / "ca.key"),
        Credential.read(out / "tls.crt", out / "tls.key"),
        x509.DNSName(f"{SERVICE}.{NAMESPACE}.svc.cluster.local"),
    )
    ca_before = (out / "ca.crt").read_bytes()
    assert main(argv) == 0
    assert "reused CA" in capsys.readouterr().out
    assert (out / "ca.crt").read_bytes() == ca_before
