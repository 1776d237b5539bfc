"""The reconciler's small HTTP surface (stdlib only): probes, metrics and the push endpoint.

* ``GET /healthz`` — 200 while the process serves requests;
* ``GET /readyz`` — 200 while the controller runs (leader or standby: a standby forwards pushes);
* ``GET /metrics`` — Prometheus text;
* ``POST /refresh`` — full sync of every Application now; ``POST /refresh/<namespace>/<name>`` — one
  (404 when unknown). Pushes need ``Authorization: Bearer <token>`` with the configured refresh token;
  with none configured the endpoint is disabled (403), never open.
  Any body (a git host's webhook payload) is read and ignored.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from driftguard.kube.resources import ResourceError
from reconciler.application import AppKey
from reconciler.controller import Controller

log = logging.getLogger(__name__)

MAX_BODY: Final = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    server: ReconcilerServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        controller = self.server.controller
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = controller.running.is_set()
            self._send(200 if ready else 503, {"ready": ready, "leader": controller.leading and ready})
        elif self.path == "/metrics":
            body = generate_latest(controller.metrics.registry)
            self._raw(200, body, CONTENT_TYPE_LATEST)
        else:
            self._send(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, {"error": "body too large"})
            return
        self.rfile.read(length)
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if not parts or parts[0] != "refresh" or len(parts) not in (1, 3):
            self._send(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        if not self.server.refresh_token:
            self._send(403, {"error": "POST /refresh is disabled: no refresh token is configured "
                                      "(--refresh-token / DRIFTGUARD_REFRESH_TOKEN)"})
            return
        if not self._authorised():
            self._send(401, {"error": "a valid bearer token is required"})
            return
        key = AppKey(parts[1], parts[2]) if len(parts) == 3 else None
        try:
            refreshed = self.server.controller.refresh(key)
        except ResourceError as e:
            self._send(503, {"error": str(e)})
            return
        if key is not None and not refreshed:
            self._send(404, {"error": f"no Application {key}"})
            return
        self._send(202, {"refreshed": [str(k) for k in refreshed]})

    def _authorised(self) -> bool:
        token = self.server.refresh_token
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._raw(status, json.dumps(body).encode() + b"\n", "application/json")

    def _raw(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class ReconcilerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], controller: Controller, refresh_token: str = "") -> None:
        super().__init__(address, _Handler)
        self.controller = controller
        self.refresh_token = refresh_token

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
