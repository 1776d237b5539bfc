"""A real OCI registry for tests: the CNCF distribution registry (``tools/registry``, built and cached by
``python -m driftguard.local.controlplane test-tools``) on 127.0.0.1, over TLS from a test CA with htpasswd
Basic auth, or over plain http without auth. Charts are pushed to it with the real ``helm push``.

Start it with ``with OCIRegistry(...) as registry:``; leaving the block stops the process (its own process
group, killed if it does not stop) and nothing of it outlives the test's temporary directory.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import bcrypt
import yaml

from certs import CertificateAuthority
from driftguard.local.controlplane.binaries import resolve_render_tools, resolve_test_tools


class OCIRegistry:
    def __init__(self, scratch: Path, *, ca: CertificateAuthority | None, users: dict[str, str] | None = None) -> None:
        """TLS and htpasswd auth when ``ca`` is given (``users``: name → password), else plain http, no auth."""
        self.scratch, self.ca, self.users = scratch, ca, users or {}
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
            serving = self.ca.issue_serving("oci-registry-test", ip_addresses=["127.0.0.1"])
            serving.write(self.scratch / "tls.crt", self.scratch / "tls.key")
            self.ca_file.write_bytes(self.ca.cert_pem)
            http["tls"] = {"certificate": str(self.scratch / "tls.crt"), "key": str(self.scratch / "tls.key")}
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
