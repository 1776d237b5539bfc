"""The Go floor webhook (``tools/floorwebhook``): built once and cached beside the control-plane binaries.

``floor_binary()`` builds it with the control plane's toolchain settings (``GOTOOLCHAIN=local``,
``CGO_ENABLED=0``) into ``~/.cache/driftguard/bin-v<version>/floorwebhook-<source digest>`` — a change to
its source builds a new one — and ``FloorServer(directory)`` runs it on a free loopback port with a
fresh CA, exposing the same ``url``/``ca_file``/``cpu_seconds()``/``stop()`` as ``bench_webhook.Server``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certs import CertificateAuthority  # noqa: E402
from driftguard.local.controlplane.binaries import cache_dir  # noqa: E402

SOURCE = ROOT / "tools" / "floorwebhook"


def floor_binary() -> Path:
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    binary = cache_dir() / f"floorwebhook-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go floor needs `go` on PATH (the same toolchain that builds the control plane)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{binary.name}.{os.getpid()}.partial")
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial), "."], cwd=SOURCE, env=env,
                   check=True)
    os.replace(partial, binary)
    return binary


class FloorServer:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.generate("floor-ca")
        ca.issue_serving("floor", ip_addresses=["127.0.0.1"]).write(directory / "tls.crt", directory / "tls.key")
        (directory / "ca.crt").write_bytes(ca.cert_pem)
        self.ca_file = directory / "ca.crt"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = (directory / "floor.log").open("wb")
        self.process = subprocess.Popen(
            [str(floor_binary()), "-addr", f"127.0.0.1:{self.port}", "-cert", str(directory / "tls.crt"),
             "-key", str(directory / "tls.key")], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/validate"

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the Go floor webhook did not start; see its log")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run_queue_seconds(self) -> float:
        return run_queue_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        self.log.close()


def run_queue_seconds(root: int) -> float:
    pids = [root]
    children = Path(f"/proc/{root}/task/{root}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9
