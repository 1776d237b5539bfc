"""TLS on 127.0.0.1 for the test servers (the git server, the OCI registry and its token service, a Helm
repository): a serving certificate from the test's CA, written where the server reads it, a server-side
context, an ``http.server`` wrapped in it on a daemon thread, and the HTTP Basic login such servers check.

One place for it, so that every test server is served and stopped alike: ``stop()`` shuts the accept loop
down, closes the socket and waits for the thread.
"""

from __future__ import annotations

import base64
import http.server
import ssl
import threading
from pathlib import Path

from certs import CertificateAuthority


def write_serving(ca: CertificateAuthority, name: str, scratch: Path, stem: str = "tls") -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1 from ``ca``, written to ``scratch/<stem>.crt`` and ``.key``."""
    scratch.mkdir(parents=True, exist_ok=True)
    cert, key = scratch / f"{stem}.crt", scratch / f"{stem}.key"
    ca.issue_serving(name, ip_addresses=["127.0.0.1"]).write(cert, key)
    return cert, key


def serving_context(ca: CertificateAuthority, name: str, scratch: Path, stem: str = "tls") -> ssl.SSLContext:
    """A server-side TLS context presenting ``write_serving``'s certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*write_serving(ca, name, scratch, stem))
    return context


class LoopbackTLS:
    """``server`` (bound to 127.0.0.1) over TLS with ``context``, serving on a daemon thread named ``name``.

    ``handshake_in_handler``: the accept loop does not do the TLS handshake (the handler does, in its own
    thread), so a client that never finishes one cannot stall the others."""

    def __init__(self, server: http.server.ThreadingHTTPServer, context: ssl.SSLContext, *, name: str,
                 handshake_in_handler: bool = False) -> None:
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=not handshake_in_handler)
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


def basic_login(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of an ``Authorization: Basic …`` header; None for any other or a malformed one."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, separator, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if separator else None


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
