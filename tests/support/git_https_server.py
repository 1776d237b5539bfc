"""A test-only smart-HTTP git server over TLS: ``git http-backend`` as CGI behind ``http.server``.

It serves exactly one repository, ``https://127.0.0.1:<port>/<repo dir name>``, with a serving
certificate from a test CA, and requires HTTP Basic auth whose password is ``token`` (any user name).
Every request is recorded (method, path, whether it was authorised) so tests can prove their fetches
really went through it. Start it with ``with GitHTTPSServer(...) as server:``; leaving the block stops
the listener; each CGI call is a ``subprocess.run`` that is waited for (and killed on timeout).
"""

from __future__ import annotations

import hmac
import http.server
import os
import ssl
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from certs import CertificateAuthority
from support.tls_server import LoopbackTLS, basic_login, serving_context

_BACKEND = Path(subprocess.run(["git", "--exec-path"], check=True, capture_output=True, text=True).stdout.strip(),
                "git-http-backend")
_CGI_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorised: bool
    status: int


class GitHTTPSServer:
    """Serve ``repo`` (a git directory, bare or not) over HTTPS on 127.0.0.1 with Basic auth."""

    def __init__(self, repo: Path, *, token: str, ca: CertificateAuthority, scratch: Path) -> None:
        self.repo, self.token = Path(repo), token
        self._context = serving_context(ca, "git-https-test", scratch)
        self.requests: list[Request] = []
        self.errors: list[str] = []  # connection-level failures (e.g. a client that rejects the certificate)
        self._served: LoopbackTLS | None = None

    @property
    def url(self) -> str:
        assert self._served is not None, "not started"
        return f"{self._served.base_url}/{self.repo.name}"

    def start(self) -> GitHTTPSServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._served = LoopbackTLS(server, self._context, name="git-https-server", handshake_in_handler=True)
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()

    def __enter__(self) -> GitHTTPSServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def authorised(self, header: str | None) -> bool:
        login = basic_login(header)
        return login is not None and hmac.compare_digest(login[1].encode(), self.token.encode())


class _Server(http.server.ThreadingHTTPServer):
    owner: GitHTTPSServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.errors.append(repr(sys.exc_info()[1]))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def setup(self) -> None:
        super().setup()
        assert isinstance(self.request, ssl.SSLSocket)
        self.request.do_handshake()  # in this handler's thread, not the accept loop

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded on the server instead

    def do_GET(self) -> None:  # http.server's naming
        self._git()

    def do_POST(self) -> None:
        self._git()

    def _git(self) -> None:
        owner = self.server.owner
        parsed = urllib.parse.urlsplit(self.path)
        authorised = owner.authorised(self.headers.get("Authorization"))
        body = self._body()
        if not parsed.path.startswith(f"/{owner.repo.name}/"):
            status = self._reply(404, [("Content-Type", "text/plain")], b"no such repository\n")
        elif not authorised:
            status = self._reply(401, [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")],
                                 b"authentication required\n")
        else:
            status = self._cgi(parsed, body)
        owner.requests.append(Request(self.command, parsed.path, authorised, status))

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self, parsed: urllib.parse.SplitResult, body: bytes) -> int:
        owner = self.server.owner
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(owner.repo.parent),
            "GIT_HTTP_EXPORT_ALL": "1", "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(parsed.path), "QUERY_STRING": parsed.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "token", "REMOTE_ADDR": self.client_address[0],
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HOME": str(owner.repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
        }
        try:
            done = subprocess.run([str(_BACKEND)], input=body, env=env, capture_output=True, check=False,
                                  timeout=_CGI_TIMEOUT)
        except subprocess.TimeoutExpired:
            return self._reply(504, [("Content-Type", "text/plain")], b"git http-backend timed out\n")
        head, separator, content = done.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, _, content = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if done.returncode != 0 and not done.stdout:
            return self._reply(500, [("Content-Type", "text/plain")], done.stderr or b"git http-backend failed\n")
        return self._reply(status, headers, content)

    def _reply(self, status: int, headers: list[tuple[str, str]], content: bytes) -> int:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        return status

