"""Certificate rotation without a restart: the next handshake presents the new certificate."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from certs import CertificateAuthority, Credential
from webhook.tls import CertificateFilesError, CertificateReloader


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _serving(ca: CertificateAuthority, name: str) -> Credential:
    return ca.issue_serving(name, ip_addresses=["127.0.0.1"])


def _serial(pem_or_der: bytes) -> int:
    if pem_or_der.startswith(b"-----"):
        return x509.load_pem_x509_certificate(pem_or_der).serial_number
    return x509.load_der_x509_certificate(pem_or_der).serial_number


def _handshake(server_context: ssl.SSLContext, ca: CertificateAuthority) -> bytes:
    """One TLS handshake over a socketpair; the DER certificate the client was shown."""
    client_context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    client_context.check_hostname = False
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as error:
            errors.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    with client_context.wrap_socket(left) as tls:
        der = tls.getpeercert(binary_form=True)
        tls.sendall(b"x")
    thread.join(5)
    assert not errors and der is not None
    return der


@pytest.fixture
def files(tmp_path: Path) -> tuple[CertificateAuthority, Path, Path]:
    ca = CertificateAuthority.generate()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _serving(ca, "first").write(cert, key)
    return ca, cert, key


def test_a_context_built_once_still_presents_the_rotated_certificate(
    files: tuple[CertificateAuthority, Path, Path],
) -> None:
    ca, cert, key = files
    clock = Clock()
    reloader = CertificateReloader(cert, key, clock=clock)
    held = reloader.context()  # a server that never asks again
    first = _handshake(held, ca)
    assert _serial(first) == _serial(cert.read_bytes())

    second = _serving(ca, "second")
    second.write(cert, key)
    assert _serial(_handshake(held, ca)) == _serial(first), "re-checked at most once per interval"
    clock.now += 1.5
    assert _serial(_handshake(held, ca)) == _serial(second.cert_pem)


def test_unchanged_files_keep_the_same_context(files: tuple[CertificateAuthority, Path, Path]) -> None:
    _, cert, key = files
    clock = Clock()
    reloader = CertificateReloader(cert, key, clock=clock)
    first = reloader.context()
    clock.now += 10
    assert reloader.context() is first


def test_a_half_written_rotation_keeps_the_old_certificate_until_complete(
    files: tuple[CertificateAuthority, Path, Path],
) -> None:
    ca, cert, key = files
    clock = Clock()
    reloader = CertificateReloader(cert, key, clock=clock)
    old = reloader.context()
    new = _serving(ca, "second")
    cert.write_bytes(new.cert_pem)  # the key still belongs to the old certificate
    clock.now += 2
    assert reloader.context() is old
    key.write_bytes(new.key_pem)
    clock.now += 2
    assert reloader.context() is not old
    assert _serial(_handshake(reloader.context(), ca)) == _serial(new.cert_pem)


def test_a_broken_pair_at_start_up_is_an_error(files: tuple[CertificateAuthority, Path, Path]) -> None:
    ca, cert, key = files
    key.write_bytes(_serving(ca, "other").key_pem)
    with pytest.raises(CertificateFilesError, match="is not the private key of"):
        CertificateReloader(cert, key)
