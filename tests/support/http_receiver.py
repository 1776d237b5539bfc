"""A real HTTP receiver on 127.0.0.1 for notification tests: records every POST (path, JSON body; the Host
headers and, over TLS, the SNI names it was sent) and answers the statuses it is given in turn, then 200."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from typing import Any


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.hosts: list[str] = []  # each POST's Host header
        self.sni: list[str | None] = []  # each TLS handshake's server name
        self.statuses = list(statuses or [])
        self.scheme = "https" if tls else "http"
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append((self.path, body))
                receiver.hosts.append(self.headers.get("Host", ""))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: receiver.sni.append(name)  # type: ignore[assignment,func-returns-value]
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
