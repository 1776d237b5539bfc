"""A small certificate authority for driftguard's TLS and client identities.

One CA signs everything a driftguard installation needs: the webhook's serving certificate (DNS names
of its Service plus 127.0.0.1), the local kube-apiserver's serving certificate, and client certificates
whose subject *is* the Kubernetes identity (CN = user name, O = groups). Leaves use ECDSA P-256 (fast to
generate, accepted by kube-apiserver, Python's ssl and Go's TLS); the ServiceAccount token signing key
is RSA because that is what every apiserver version accepts.

Values are immutable PEM bytes; writing them to disk is ``certs.pem``'s job. This module keeps no
state, never logs key material, and does not try to be a general-purpose PKI: no CRLs, no
intermediates, no renewal scheduling (``not_after`` lets callers decide when to reissue).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import DNSName
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs.pem import write_private, write_public

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
CLOCK_SKEW = dt.timedelta(minutes=5)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (0644) and the key (0600)."""
        write_public(cert_path, self.cert_pem)
        write_private(key_path, self.key_pem)

    @classmethod
    def read(cls, cert_path: Path, key_path: Path) -> Credential:
        return cls(cert_pem=cert_path.read_bytes(), key_pem=key_path.read_bytes())


@dataclass(frozen=True)
class SigningKeyPair:
    """The ServiceAccount token signing key pair (RSA), PEM-encoded."""

    private_pem: bytes
    public_pem: bytes

    def write(self, private_path: Path, public_path: Path) -> None:
        write_private(private_path, self.private_pem)
        write_public(public_path, self.public_pem)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA able to issue serving and client certificates."""

    credential: Credential

    @property
    def cert_pem(self) -> bytes:
        return self.credential.cert_pem

    @classmethod
    def generate(cls, common_name: str = "driftguard-ca", validity: dt.timedelta = CA_VALIDITY) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _base_builder(name, name, key.public_key(), validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        cert = builder.sign(key, hashes.SHA256())
        return cls(Credential(_cert_pem(cert), _key_pem(key)))

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        return cls(Credential.read(cert_path, key_path))

    @classmethod
    def load_or_generate(cls, directory: Path, common_name: str = "driftguard-ca") -> tuple[CertificateAuthority, bool]:
        """The CA kept as ``ca.crt``/``ca.key`` in ``directory`` (True), or a new one written there (False).

        Reusing it keeps every ``caBundle`` and kubeconfig that trusts it valid across restarts and rotations.
        """
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            return cls.load(cert_path, key_path), True
        ca = cls.generate(common_name)
        ca.credential.write(cert_path, key_path)
        return ca, False

    def issue_serving(
        self,
        common_name: str,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        validity: dt.timedelta = LEAF_VALIDITY,
        not_before: dt.datetime | None = None,
    ) -> Credential:
        """A TLS server certificate valid for the given DNS names and IP addresses.

        Valid from ``not_before`` (default: now minus clock skew) until ``validity`` after it (default:
        after now) — a window in the past or future is how tests make expired or not-yet-valid ones.
        """
        if not dns_names and not ip_addresses:
            raise ValueError(f"serving certificate {common_name}: needs at least one DNS name or IP")
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(subject, ExtendedKeyUsageOID.SERVER_AUTH, validity, sans, not_before)

    def issue_client(self, user: str, groups: Sequence[str] = (), validity: dt.timedelta = LEAF_VALIDITY) -> Credential:
        """A TLS client certificate that kube-apiserver reads as user ``user`` in ``groups``."""
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH, validity, [])

    def _issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        validity: dt.timedelta,
        sans: list[x509.GeneralName],
        not_before: dt.datetime | None = None,
    ) -> Credential:
        ca_cert = x509.load_pem_x509_certificate(self.credential.cert_pem)
        ca_key = _load_private_key(self.credential.key_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _base_builder(subject, ca_cert.subject, key.public_key(), validity, not_before)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_authority_key_id(ca_cert), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return Credential(_cert_pem(cert), _key_pem(key))


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every name a client inside the cluster may use to reach ``service`` in ``namespace``."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


def generate_signing_key_pair(bits: int = 2048) -> SigningKeyPair:
    """An RSA key pair for kube-apiserver's ServiceAccount token issuer."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SigningKeyPair(private_pem=_key_pem(key), public_pem=public)


def not_after(cert_pem: bytes) -> dt.datetime:
    """When the (first) certificate in ``cert_pem`` expires, as an aware UTC datetime."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def verify_serving(cert_pem: bytes, ca_pem: bytes, dns_name: str, now: dt.datetime | None = None) -> str:
    """Why a TLS client trusting only ``ca_pem`` would refuse ``cert_pem`` for ``dns_name`` ("" if it would
    not): the chain, the validity window and the name, as the API server checks its webhook's certificate."""
    try:
        roots = [x509.load_pem_x509_certificate(ca_pem)]
        leaf = x509.load_pem_x509_certificate(cert_pem)
        verifier = (PolicyBuilder().store(Store(roots)).time(now or dt.datetime.now(dt.UTC))
                    .build_server_verifier(DNSName(dns_name)))
        verifier.verify(leaf, [])
    except ValueError as e:
        return f"unreadable ({e})"
    except VerificationError as e:
        return f"not valid for {dns_name} under the caBundle ({e})"
    return ""


def expires_within(cert_pem: bytes, margin: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """Whether the certificate is expired or will be within ``margin`` of ``now``."""
    current = now or dt.datetime.now(dt.UTC)
    return not_after(cert_pem) - margin <= current


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    validity: dt.timedelta,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    start, end = (now - CLOCK_SKEW, now + validity) if not_before is None else (not_before, not_before + validity)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"CA key: unsupported key type {type(key).__name__}")
    return key


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
