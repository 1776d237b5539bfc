"""Certificates for driftguard: a CA, serving certificates, client identities, signing keys.

Used by the tests, by local mode (the kube-apiserver and its users) and by deployment (the webhook's
serving certificate and the ``caBundle`` of its webhook configurations).
"""

from certs.authority import (
    CertificateAuthority,
    Credential,
    SigningKeyPair,
    expires_within,
    generate_signing_key_pair,
    not_after,
    service_dns_names,
)
from certs.pem import write_private, write_public

__all__ = [
    "CertificateAuthority",
    "Credential",
    "SigningKeyPair",
    "expires_within",
    "generate_signing_key_pair",
    "not_after",
    "service_dns_names",
    "write_private",
    "write_public",
]
