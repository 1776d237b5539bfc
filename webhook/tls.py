"""TLS from certificate files that rotate under a running server (mounted Secrets send no events).

``CertificateReloader.context()`` returns the current ``SSLContext``; at most once per
``min_interval`` it hashes the certificate and key files and, when they changed, loads a fresh
context. Two hooks use it, so a rotation is picked up however the server holds its context:

* gunicorn calls its ``ssl_context`` hook for every accepted connection (23.x), which returns
  ``context()``;
* every context carries an ``sni_callback`` that runs on each ClientHello (OpenSSL calls it with or
  without SNI) and switches the connection to the current context, so a server that built its
  context once still presents the new certificate on the next handshake.

A half-written rotation (new certificate, old key) fails to load; the old context stays in service
and the next check tries again. No key material is ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from webhook.logs import CTX

log = logging.getLogger(__name__)


class CertificateReloader:
    def __init__(self, cert_file: Path, key_file: Path, *, min_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self._min_interval, self._clock = min_interval, clock
        self._lock = threading.Lock()
        digest = self._digest()
        self._context = self._load()  # a broken pair at start-up is an error, not a retry
        self._loaded, self._checked = digest, clock()

    def context(self) -> ssl.SSLContext:
        self._refresh()
        return self._context

    def _refresh(self) -> None:
        if self._clock() - self._checked < self._min_interval:
            return
        with self._lock:
            if self._clock() - self._checked < self._min_interval:
                return
            self._checked = self._clock()
            try:
                digest = self._digest()
                if digest == self._loaded:
                    return
                self._context, self._loaded = self._load(), digest
            except (OSError, ssl.SSLError, ValueError) as error:
                log.warning("serving certificate not reloaded; keeping the current one",
                            extra={CTX: {"cert_file": str(self.cert_file), "error": str(error)}})
                return
        log.info("serving certificate reloaded", extra={CTX: {"cert_file": str(self.cert_file)}})

    def _digest(self) -> bytes:
        digest = hashlib.sha256(self.cert_file.read_bytes())
        digest.update(self.key_file.read_bytes())
        return digest.digest()

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._on_client_hello
        return context

    def _on_client_hello(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                         context: ssl.SSLContext) -> None:
        current = self.context()
        if connection.context is not current:
            connection.context = current
