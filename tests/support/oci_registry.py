"""A real OCI registry for tests: the CNCF distribution registry (``tools/registry``, built and cached by
``python -m driftguard.local.controlplane test-tools``) on 127.0.0.1, over TLS from a test CA with htpasswd
Basic auth, or with token auth (``token_auth=True``: the registry answers ``WWW-Authenticate: Bearer
realm=…`` and trusts JWTs signed by a key the test CA certified; a small token service here hands them out for
a Basic login, as Docker Hub's or GHCR's does), or over plain http without auth. Charts are pushed to it with
the real ``helm push``.

Start it with ``with OCIRegistry(...) as registry:``; leaving the block stops the process (its own process
group, killed if it does not stop) and nothing of it outlives the test's temporary directory.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import bcrypt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from certs import CertificateAuthority
from driftguard.local.controlplane.binaries import resolve_render_tools, resolve_test_tools
from support.tls_server import LoopbackTLS, basic_login, serving_context, write_serving


class OCIRegistry:
    def __init__(self, scratch: Path, *, ca: CertificateAuthority | None, users: dict[str, str] | None = None,
                 token_auth: bool = False) -> None:
        """TLS and htpasswd auth when ``ca`` is given (``users``: name → password), else plain http, no auth;
        ``token_auth``: a token service instead of htpasswd."""
        self.scratch, self.ca, self.users, self.token_auth = scratch, ca, users or {}, token_auth
        self.tokens: TokenService | None = None
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.binary = resolve_test_tools()["registry"]
        self.helm = str(resolve_render_tools()["helm"])
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.scratch / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.scratch / "ca.crt"

    def start(self) -> OCIRegistry:
        with socket.socket() as probe:  # a free port (the registry cannot report the one it bound)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        http: dict[str, object] = {"addr": self.host}
        config: dict[str, object] = {
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.scratch / "storage")}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.ca is not None:
            cert, key = write_serving(self.ca, "oci-registry-test", self.scratch)
            self.ca_file.write_bytes(self.ca.cert_pem)
            http["tls"] = {"certificate": str(cert), "key": str(key)}
            if self.token_auth:
                self.tokens = TokenService(self.ca, self.users, self.scratch).start()
                config["auth"] = {"token": {"realm": self.tokens.realm, "service": TokenService.SERVICE,
                                            "issuer": TokenService.ISSUER, "rootcertbundle": str(self.ca_file)}}
            else:
                lines = [f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
                         for user, password in self.users.items()]
                (self.scratch / "htpasswd").write_text("\n".join(lines) + "\n")
                config["auth"] = {"htpasswd": {"realm": "driftguard-test", "path": str(self.scratch / "htpasswd")}}
        (self.scratch / "config.yml").write_text(yaml.safe_dump(config))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch),
               "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(self.binary), "serve", str(self.scratch / "config.yml")],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode()) if self.ca else None
        scheme = "https" if self.ca else "http"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=2, context=context).close()
                return
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return  # up, and asking for a login
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the registry did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.tokens is not None:
            self.tokens.stop()
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> OCIRegistry:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ charts, by the real helm

    def _helm(self, *args: str, stdin: str | None = None) -> str:
        env = {"HOME": str(self.scratch), "PATH": "/usr/bin:/bin",
               "HELM_REGISTRY_CONFIG": str(self.scratch / "helm-registry.json"),
               "HELM_CACHE_HOME": str(self.scratch / "helm-cache"),
               "HELM_CONFIG_HOME": str(self.scratch / "helm-config"), "HELM_DATA_HOME": str(self.scratch / "helm-data")}
        tls = ["--ca-file", str(self.ca_file)] if self.ca else ["--plain-http"]
        done = subprocess.run([self.helm, *args, *tls], input=stdin, capture_output=True, text=True, env=env,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout + done.stderr

    def login(self, user: str) -> None:
        self._helm("registry", "login", self.host, "--username", user, "--password-stdin", stdin=self.users[user])

    def push(self, name: str, version: str, template: str, *, repository: str = "charts") -> str:
        """Package chart ``name`` ``version`` (one template) and push it to ``oci://<host>/<repository>``; the
        manifest digest helm reports."""
        source = self.scratch / "src" / f"{name}-{version}" / name
        (source / "templates").mkdir(parents=True, exist_ok=True)
        (source / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n")
        (source / "templates" / "objects.yaml").write_text(template)
        packaged = self.scratch / "packaged"
        packaged.mkdir(exist_ok=True)
        env = {"HOME": str(self.scratch), "PATH": "/usr/bin:/bin"}
        subprocess.run([self.helm, "package", str(source), "--destination", str(packaged)], check=True,
                       capture_output=True, env=env, timeout=60)
        said = self._helm("push", str(packaged / f"{name}-{version}.tgz"), f"oci://{self.host}/{repository}")
        for line in said.splitlines():
            if line.startswith("Digest:"):
                return line.split(":", 1)[1].strip()
        raise RuntimeError(f"helm push reported no digest: {said}")


class TokenService:
    """Docker's token protocol on 127.0.0.1 over TLS: ``GET /token?service=…&scope=repository:<name>:<actions>``
    with Basic auth answers ``{"token": <JWT>}`` (ES256, ``x5c``: a certificate from the test CA, which the
    registry trusts as its rootcertbundle); a wrong or missing login answers 401. Requests are recorded."""

    SERVICE = "driftguard-test-registry"
    ISSUER = "driftguard-test-token-service"

    def __init__(self, ca: CertificateAuthority, users: dict[str, str], scratch: Path) -> None:
        self.users = users
        signing = ca.issue_serving("oci-token-signer", ip_addresses=["127.0.0.1"])
        self._key = serialization.load_pem_private_key(signing.key_pem, password=None)
        self._x5c = base64.b64encode(x509.load_pem_x509_certificate(signing.cert_pem).public_bytes(
            serialization.Encoding.DER)).decode()
        self._context = serving_context(ca, "oci-token-service", scratch, stem="token-tls")
        self.requests: list[tuple[str, bool]] = []  # (scope, granted)
        self._served: LoopbackTLS | None = None

    @property
    def realm(self) -> str:
        assert self._served is not None
        return f"{self._served.base_url}/token"

    def start(self) -> TokenService:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = owner.login(self.headers.get("Authorization") or "")
                scopes = query.get("scope", [])
                owner.requests.append((" ".join(scopes), user is not None))
                if user is None:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": owner.issue(user, scopes, 300)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._served = LoopbackTLS(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler), self._context,
                                   name="oci-token-service")
        return self

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()

    def login(self, header: str) -> str | None:
        user, password = basic_login(header) or ("", "")
        return user if user in self.users and secrets.compare_digest(self.users[user], password) else None

    def issue(self, user: str, scopes: list[str], seconds: int) -> str:
        """A JWT granting ``scopes`` (``repository:<name>:<actions>``) to ``user`` for ``seconds``."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + seconds, "nbf": now - 30,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
