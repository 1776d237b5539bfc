"""A real control plane in a directory: etcd + kube-apiserver on loopback, with identities.

``ControlPlane(directory).start()`` generates the PKI (a CA, the apiserver's serving certificate for
127.0.0.1/localhost/kubernetes.default.svc, ServiceAccount signing keys, client certificates), starts
etcd and kube-apiserver on free loopback ports with RBAC on, waits for ``/readyz``, and writes
``admin.kubeconfig`` (system:masters) and ``laptop.kubeconfig`` (user ``laptop`` in ``engineers``,
bound to cluster-admin — so only admission can stop it). The API server presents a client certificate
of its own CA (``webhook_client_ca_file``) to admission webhooks that ask for one, through
``--admission-control-config-file``: the webhook's ``--client-ca-file`` then admits it and nobody else.

The processes lead their own sessions and are recorded in ``<directory>/state.json``, so a control
plane started by one command can be stopped by another (``ControlPlane.attach``), and ``driftguard
local down`` can clean up after a crashed test run.

Restarting in the same directory reuses the CA, the signing keys, the etcd data and, when still free,
the ports, so exported kubeconfigs keep working. It refuses to start twice in one directory, and it
deliberately lacks a controller-manager, scheduler and kubelet (see notes/control-plane.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from certs import CertificateAuthority, generate_signing_key_pair, webhookclient
from driftguard.kube import Kube
from driftguard.local.controlplane.binaries import KUBERNETES_VERSION, Binaries, resolve_binaries
from driftguard.local.controlplane.identities import (
    LAPTOP_GROUP,
    LAPTOP_USER,
    TOKEN_SECONDS,
    ensure_laptop_binding,
    serviceaccount_token,
    write_cert_kubeconfig,
    write_token_kubeconfig,
)
from driftguard.local.controlplane.processes import (
    ManagedProcess,
    ProcessFailed,
    Readiness,
    State,
    free_port,
    is_running,
    port_free,
    record,
    spawn,
    stop,
    wait_ready,
)

log = logging.getLogger(__name__)

ETCD = "etcd"
APISERVER = "kube-apiserver"
SERVICE_CIDR = "10.96.0.0/16"
APISERVER_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
APISERVER_IPS = ("127.0.0.1", "10.96.0.1")

Progress = Callable[[str], None]


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, attached or used."""


class ControlPlane:
    """etcd + kube-apiserver rooted in ``directory``; see the module docstring."""

    def __init__(self, directory: Path, binaries: Binaries | None = None, *, progress: Progress | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.binaries = binaries
        self.processes: tuple[ManagedProcess, ...] = ()
        self.url = ""
        self.etcd_url = ""
        self._progress = progress or log.info

    # -- layout -------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def webhook_client_ca_file(self) -> Path:
        """The CA of the certificate the API server presents to admission webhooks (for ``--client-ca-file``).

        A CA of its own, signing nothing else: a user's client certificate (signed by ``ca.crt``) must not
        open the webhook's ``/validate``.
        """
        return self.pki / "webhook-client" / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def laptop_kubeconfig(self) -> Path:
        return self.directory / "laptop.kubeconfig"

    @property
    def kubectl(self) -> Path | None:
        return self.binaries.kubectl if self.binaries else None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ControlPlane:
        """Start etcd and kube-apiserver and return once the apiserver is ready and RBAC is set."""
        previous = State.load(self.directory)
        if previous and any(is_running(p) for p in previous.processes):
            raise ControlPlaneError(f"{self.directory}: already running (see {self.directory / 'state.json'})")
        binaries = self.binaries or resolve_binaries()
        self.binaries = binaries
        started = time.monotonic()
        try:
            self._start(binaries, previous or State(), timeout)
        except BaseException:
            self.stop()
            raise
        self._progress(f"control plane ready at {self.url} in {time.monotonic() - started:.1f}s")
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop kube-apiserver, then etcd, and drop them from state.json. Safe to call twice."""
        for process in reversed(self.processes):
            stop(process, grace)
        mine = {p.name for p in self.processes}
        self.processes = ()
        state = State.load(self.directory)
        if state is None:
            return
        remaining = tuple(p for p in state.processes if p.name not in mine)
        State(processes=remaining, info=state.info).save(self.directory)  # info keeps ports for a restart

    @classmethod
    def attach(cls, directory: Path) -> ControlPlane:
        """The control plane recorded in ``directory/state.json`` (started by another process)."""
        plane = cls(directory)
        state = State.load(plane.directory)
        if state is None:
            raise ControlPlaneError(f"{plane.directory}: no control plane recorded (no state.json)")
        plane.processes = tuple(p for p in state.processes if p.name in {ETCD, APISERVER})
        plane.url = state.info.get("apiserver", "")
        plane.etcd_url = state.info.get("etcd", "")
        return plane

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- identities ---------------------------------------------------------------------------
    def admin(self) -> Kube:
        """A client acting as ``admin`` (system:masters). Close it when done."""
        return Kube(self.admin_kubeconfig)

    def kubeconfig_for_user(self, name: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as ``name`` in ``groups`` with a fresh client certificate."""
        slug = _slug(name)
        cert, key = self.pki / "users" / f"{slug}.crt", self.pki / "users" / f"{slug}.key"
        self._ca().issue_client(name, groups).write(cert, key)
        path = self.directory / "kubeconfigs" / f"user-{slug}.kubeconfig"
        return write_cert_kubeconfig(path, self._server(), self.ca_file, name, cert=cert, key=key)

    def kubeconfig_for_serviceaccount(self, namespace: str, name: str, seconds: int = TOKEN_SECONDS, *,
                                      bound: bool = True) -> Path:
        """A kubeconfig holding a TokenRequest token (1 hour by default) for ServiceAccount ``namespace/name``.

        The token is bound to a Pod made for the purpose (``identities.token_holder``), as a kubelet's
        would be; ``bound=False`` gives what ``kubectl create token`` gives.
        """
        with self.admin() as admin:
            token = serviceaccount_token(admin, namespace, name, seconds, bound=bound)
        user = f"system:serviceaccount:{namespace}:{name}"
        unbound = "" if bound else "-unbound"
        path = self.directory / "kubeconfigs" / f"sa-{_slug(namespace)}-{_slug(name)}{unbound}.kubeconfig"
        return write_token_kubeconfig(path, self._server(), self.ca_file, user, token)

    # -- internals ----------------------------------------------------------------------------
    def _start(self, binaries: Binaries, previous: State, timeout: float) -> None:
        ports = _Ports.choose(previous)
        self._write_pki()
        self.etcd_url = f"http://127.0.0.1:{ports.etcd}"
        self.url = f"https://127.0.0.1:{ports.apiserver}"
        State(info={**previous.info, **self._info(ports)}).save(self.directory)
        etcd_ready = Readiness(f"{self.etcd_url}/health")
        self._launch(ETCD, self._etcd_argv(binaries, ports), etcd_ready, timeout)
        apiserver_ready = Readiness(f"{self.url}/readyz", str(self.ca_file))
        self._launch(APISERVER, self._apiserver_argv(binaries, ports), apiserver_ready, timeout)
        self._write_kubeconfigs()
        with self.admin() as admin:
            ensure_laptop_binding(admin)

    def _launch(self, name: str, argv: list[str], ready: Readiness, timeout: float) -> None:
        """Spawn, record in state.json at once (a crash while waiting leaves it findable), wait."""
        self._progress(f"starting {name}…")
        process = spawn(name, argv, self.directory / "logs" / f"{name}.log", ready=ready)
        self.processes = (*self.processes, process)
        record(self.directory, process)
        try:
            waited = wait_ready(process, timeout)
        except ProcessFailed as error:
            raise ControlPlaneError(str(error)) from error
        self._progress(f"{name} ready in {waited:.1f}s")

    def _info(self, ports: _Ports) -> dict[str, str]:
        return {
            "apiserver": self.url,
            "etcd": self.etcd_url,
            "etcd_peer_port": str(ports.peer),
            "kubernetes_version": KUBERNETES_VERSION,
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "laptop_kubeconfig": str(self.laptop_kubeconfig),
            "kubectl": str(self.kubectl or ""),
        }

    def _write_pki(self) -> None:
        ca, _ = CertificateAuthority.load_or_generate(self.pki, "driftguard-local-ca")
        if not (self.pki / "sa.key").exists():
            generate_signing_key_pair().write(self.pki / "sa.key", self.pki / "sa.pub")
        serving = ca.issue_serving(APISERVER, APISERVER_DNS, APISERVER_IPS)
        serving.write(self.pki / "apiserver.crt", self.pki / "apiserver.key")
        ca.issue_client("admin", ["system:masters"]).write(self.pki / "admin.crt", self.pki / "admin.key")
        ca.issue_client(LAPTOP_USER, [LAPTOP_GROUP]).write(self.pki / "laptop.crt", self.pki / "laptop.key")
        self._write_webhook_client()

    def _write_webhook_client(self) -> None:
        """The API server's identity towards admission webhooks, for every webhook (``*``: local mode's
        webhook port is chosen after the API server starts; webhooks that ask for none get no certificate)."""
        webhookclient.write(self.pki / "webhook-client", ["*"])

    def _write_kubeconfigs(self) -> None:
        for path, user in ((self.admin_kubeconfig, "admin"), (self.laptop_kubeconfig, LAPTOP_USER)):
            cert, key = self.pki / f"{user}.crt", self.pki / f"{user}.key"
            write_cert_kubeconfig(path, self.url, self.ca_file, user, cert=cert, key=key)

    def _etcd_argv(self, binaries: Binaries, ports: _Ports) -> list[str]:
        peer = f"http://127.0.0.1:{ports.peer}"
        return [
            str(binaries.etcd),
            "--name=driftguard",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=driftguard={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, binaries: Binaries, ports: _Ports) -> list[str]:
        pki = self.pki
        return [
            str(binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={pki / 'generated'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={self.url}/",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--disable-admission-plugins=ServiceAccount",
            f"--admission-control-config-file={pki / 'webhook-client' / 'admission.yaml'}",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
        ]

    def _ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.ca_file, self.pki / "ca.key")

    def _server(self) -> str:
        if not self.url:
            raise ControlPlaneError(f"{self.directory}: control plane not started")
        return self.url


@dataclass(frozen=True)
class _Ports:
    """Loopback ports; a restart prefers the previous ones so kubeconfigs stay valid."""

    apiserver: int
    etcd: int
    peer: int

    @classmethod
    def choose(cls, previous: State) -> _Ports:
        taken: set[int] = set()
        info = previous.info
        recorded = (info.get("apiserver"), info.get("etcd"), info.get("etcd_peer_port"))
        apiserver, etcd, peer = (_pick_port(value, taken) for value in recorded)
        return cls(apiserver=apiserver, etcd=etcd, peer=peer)


def _pick_port(recorded: str | None, taken: set[int]) -> int:
    port = int(recorded.rsplit(":", 1)[-1]) if recorded else 0
    while not port or port in taken or not port_free(port):
        port = free_port()
    taken.add(port)
    return port


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
