"""TLS from certificate files that rotate under a running server (mounted Secrets send no events).

``CertificateReloader.context()`` returns the current ``SSLContext``; at most once per
``min_interval`` it hashes the certificate and key files and, when they changed, loads a fresh
context. Two hooks use it, so a rotation is picked up however the server holds its context:

* gunicorn calls its ``ssl_context`` hook for every accepted connection (23.x), which returns
  ``context()``;
* every context carries an ``sni_callback`` that runs on each ClientHello (OpenSSL calls it with or
  without SNI) and switches the connection to the current context, so a server that built its
  context once still presents the new certificate on the next handshake.

With ``client_ca_file`` (``--client-ca-file``) every context verifies client certificates against
that CA (the API server's webhook client identity, configured through its AdmissionConfiguration):
a certificate it did not sign fails the handshake; a connection with none completes it (kubelet
probes present none) and the worker admits only ``/healthz``, ``/readyz`` and ``/metrics`` on it
(``webhook.worker``). The CA file is hashed and reloaded with the others.

A half-written rotation (new certificate, old key) fails to load; the old context stays in service
and the next check tries again. No key material is ever logged.

Each load also parses the certificate's validity window (only then: the files are hashed anyway).
``status()`` classifies it against the wall clock (``webhook.certcheck``) for ``/readyz`` and the
expiry gauge, and logs once per load and per change of state: an ERROR when the certificate is
expired or not yet valid (the API server would fail every handshake), a WARNING when it expires
within ``warn_within``. Files that cannot be read or a key that does not match at start-up raise
``CertificateFilesError`` with a message naming the files.

Under gunicorn the reloader is built in the master and each worker refreshes its own copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from webhook import certcheck
from webhook.logs import CTX

log = logging.getLogger(__name__)


class CertificateFilesError(Exception):
    """The certificate/key files cannot be served at all (unreadable, not PEM, key of another cert)."""


class CertificateReloader:
    def __init__(self, cert_file: Path, key_file: Path, *, min_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 warn_within: dt.timedelta = certcheck.DEFAULT_WARNING,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 client_ca_file: Path | None = None) -> None:
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._min_interval, self._clock = min_interval, clock
        self._warn_within, self._wall_clock = warn_within, wall_clock
        self._lock = threading.Lock()
        try:  # a broken pair at start-up is an error, not a retry
            cert_pem, digest = self._read()
            self._context, self._validity = self._load(), certcheck.validity(cert_pem)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise CertificateFilesError(self._describe(error)) from None
        self._loaded, self._checked = digest, clock()
        self._reported: certcheck.State | None = None
        self._report()

    def context(self) -> ssl.SSLContext:
        self._refresh()
        return self._context

    def status(self) -> certcheck.CertificateStatus:
        """The served certificate against the wall clock (re-checking the files first)."""
        self._refresh()
        return self._report()

    def _report(self) -> certcheck.CertificateStatus:
        """The current status, logged when it differs from the last one logged (reset by each load)."""
        with self._lock:
            current = certcheck.classify(str(self.cert_file), self._validity, self._wall_clock(), self._warn_within)
            if current.state == self._reported:
                return current
            self._reported = current.state
        level = {"expired": logging.ERROR, "not-yet-valid": logging.ERROR, "expiring-soon": logging.WARNING}
        log.log(level.get(current.state, logging.INFO), current.message, extra={CTX: {
            "cert_file": str(self.cert_file), "certificate": current.state,
            "not_before": current.validity.not_before.isoformat(),
            "not_after": current.validity.not_after.isoformat()}})
        return current

    def _refresh(self) -> None:
        if self._clock() - self._checked < self._min_interval:
            return
        with self._lock:
            if self._clock() - self._checked < self._min_interval:
                return
            self._checked = self._clock()
            try:
                cert_pem, digest = self._read()
                if digest == self._loaded:
                    return
                context, window = self._load(), certcheck.validity(cert_pem)
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning("serving certificate not reloaded; keeping the current one",
                            extra={CTX: {"cert_file": str(self.cert_file), "error": self._describe(error)}})
                return
            self._context, self._validity, self._loaded = context, window, digest
            self._reported = None  # report the new certificate's state once
        log.info("serving certificate reloaded", extra={CTX: {"cert_file": str(self.cert_file)}})
        self._report()

    def _read(self) -> tuple[bytes, bytes]:
        """The certificate file's bytes and a digest of every file (the client CA too, when set)."""
        cert_pem = self.cert_file.read_bytes()
        digest = hashlib.sha256(cert_pem)
        digest.update(self.key_file.read_bytes())
        if self.client_ca_file is not None:
            digest.update(self.client_ca_file.read_bytes())
        return cert_pem, digest.digest()

    def _describe(self, error: OSError | ssl.SSLError | ValueError) -> str:
        if isinstance(error, ssl.SSLError):
            if error.reason == "KEY_VALUES_MISMATCH":
                return f"{self.key_file} is not the private key of {self.cert_file} (key values mismatch)"
            return f"cannot load {self.cert_file} with {self.key_file}: {error.reason or error}"
        if isinstance(error, OSError):
            return f"cannot read {error.filename or self.cert_file}: {error.strerror or error}"
        if str(error).startswith("client CA "):
            return str(error)
        return f"{self.cert_file} holds no PEM certificate ({error})"

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:  # the API server's webhook client certificate, nothing else
            try:
                context.load_verify_locations(cafile=str(self.client_ca_file))
            except ssl.SSLError as error:
                raise ValueError(f"client CA {self.client_ca_file} holds no usable PEM certificate "
                                 f"({error.reason or error})") from None
            context.verify_mode = ssl.CERT_OPTIONAL  # probes come without one; see webhook.worker
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._on_client_hello
        return context

    def _on_client_hello(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                         context: ssl.SSLContext) -> None:
        current = self.context()
        if connection.context is not current:
            connection.context = current
