"""The cluster's git server: smart HTTP over TLS, so Applications use a real ``https://`` repository.

``git http-backend`` (CGI) behind a small threaded ``http.server`` with TLS and HTTP Basic auth. Every
bare repository ``<root>/<name>.git`` is served as ``https://<address>:<port>/<name>.git``; anything
else is a 404, a missing or wrong login a 401 (compared in constant time). It binds to the bridge
address, so pods reach it directly and nothing outside the host can. The serving certificate comes
from the cluster's own git CA; ``driftguard cluster up`` records URL, CA file and credentials in
state.json (0600) and runs this module as a managed process:

    python -m driftguard.local.cluster.gitserver --root DIR --address IP --port N \\
        --cert-file F --key-file F --credentials-file F     # the file holds "user:password"

Pushing is refused (``http.receivepack`` stays off): git is changed on the host, in ``<root>``.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import http.server
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

CGI_TIMEOUT = 60.0
REPOSITORY = re.compile(r"^/([A-Za-z0-9][A-Za-z0-9._-]*\.git)(/.*)?$")


class GitServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, username: str, password: str) -> None:
        super().__init__(address, _Handler)
        self.root = root
        self.username = username
        self.password = password
        self.backend = Path(
            subprocess.run(["git", "--exec-path"], check=True, capture_output=True, text=True).stdout.strip(),
            "git-http-backend",
        )

    def authorised(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        same_user = hmac.compare_digest(user.encode(), self.username.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and same_user


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: GitServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this handler's thread, not the accept loop

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self) -> None:  # http.server's naming
        self._git()

    def do_POST(self) -> None:
        self._git()

    def _git(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        body = self._body()
        match = REPOSITORY.match(urllib.parse.unquote(parsed.path))
        if parsed.path == "/healthz":
            self._reply(200, [], b"ok\n")
        elif not self.server.authorised(self.headers.get("Authorization")):
            challenge = ("WWW-Authenticate", 'Basic realm="driftguard cluster git"')
            self._reply(401, [challenge], b"authentication required\n")
        elif match is None or not (self.server.root / match.group(1)).is_dir():
            self._reply(404, [], b"no such repository\n")
        else:
            self._cgi(parsed, body)

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

    def _cgi(self, parsed: urllib.parse.SplitResult, body: bytes) -> None:
        root = self.server.root
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1", "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(parsed.path), "QUERY_STRING": parsed.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": self.server.username, "REMOTE_ADDR": self.client_address[0],
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1",
        }
        try:
            done = subprocess.run([str(self.server.backend)], input=body, env=env, capture_output=True, check=False,
                                  timeout=CGI_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._reply(504, [], b"git http-backend timed out\n")
            return
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
            self._reply(500, [], done.stderr or b"git http-backend failed\n")
            return
        self._reply(status, headers, content)

    def _reply(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
        self.send_response(status)
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers = [*headers, ("Content-Type", "text/plain")]
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def serve(root: Path, address: str, port: int, *, cert_file: Path, key_file: Path, credentials_file: Path) -> None:
    username, _, password = credentials_file.read_text().strip().partition(":")
    if not username or not password:
        raise SystemExit(f"{credentials_file}: expected one line user:password")
    server = GitServer((address, port), root, username, password)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"serving {root}/*.git on https://{address}:{port}/", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftguard.local.cluster.gitserver")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-file", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--credentials-file", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.root, args.address, args.port, cert_file=args.cert_file, key_file=args.key_file,
          credentials_file=args.credentials_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
