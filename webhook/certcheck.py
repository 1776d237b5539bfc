"""Is the serving certificate usable? Classify its validity window against the clock.

The API server rejects every TLS handshake to a webhook whose certificate is expired or not yet
valid; with ``failurePolicy: Fail`` every write to a managed object then fails with an x509 error
while the webhook itself looks healthy. ``validity`` parses a certificate once (when its file is
loaded); ``classify`` is the pure, cheap part that runs against "now" on every readiness probe, so a
certificate that expires while the process runs makes the pod unready without any file changing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from cryptography import x509

from driftguard.core.clock import format_time

State = Literal["valid", "expiring-soon", "expired", "not-yet-valid"]
DEFAULT_WARNING: Final = dt.timedelta(days=7)
FIX: Final = ("issue a new one with `driftguard certs install --dir <your CA dir>` (or let cert-manager renew the "
              "Secret); the webhook loads the new files without a restart")


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    state: State
    cert_file: str
    validity: Validity
    message: str

    @property
    def usable(self) -> bool:
        """Whether the API server accepts this certificate now (readiness)."""
        return self.state in ("valid", "expiring-soon")


class CertificateSource(Protocol):
    """What the app asks about the certificate being served (``webhook.tls.CertificateReloader``)."""

    def status(self) -> CertificateStatus: ...


def validity(cert_pem: bytes) -> Validity:
    """The validity window of the first certificate in ``cert_pem`` (the leaf); ValueError if none."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return Validity(cert.not_valid_before_utc, cert.not_valid_after_utc)


def classify(cert_file: str, window: Validity, now: dt.datetime,
             warn_within: dt.timedelta = DEFAULT_WARNING) -> CertificateStatus:
    """Where ``now`` falls in the window (both ends inclusive, as in RFC 5280), with an operator's message."""
    if now < window.not_before:
        return CertificateStatus("not-yet-valid", cert_file, window, (
            f"serving certificate {cert_file} is not valid before {format_time(window.not_before)} (notBefore; now "
            f"{format_time(now)}): the API server rejects every TLS handshake to the webhook; check the clocks of this "
            f"node and of whatever issued it, or {FIX}"))
    if now > window.not_after:
        return CertificateStatus("expired", cert_file, window, (
            f"serving certificate {cert_file} expired at {format_time(window.not_after)} (notAfter): the API server "
            f"rejects every TLS handshake to the webhook; {FIX}"))
    remaining = window.not_after - now
    if remaining < warn_within:
        return CertificateStatus("expiring-soon", cert_file, window, (
            f"serving certificate {cert_file} expires at {format_time(window.not_after)} (notAfter), in "
            f"{_span(remaining)}; {FIX}"))
    return CertificateStatus("valid", cert_file, window,
                             f"serving certificate {cert_file} is valid until {format_time(window.not_after)}")


def _span(remaining: dt.timedelta) -> str:
    hours, seconds = divmod(int(remaining.total_seconds()), 3600)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {seconds // 60}m"
