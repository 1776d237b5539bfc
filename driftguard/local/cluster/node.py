"""A real single-node Kubernetes cluster on this machine: ``driftguard cluster up|down``.

``up`` builds what is missing (``resolve_node_binaries``: kubelet, kube-proxy, kube-controller-manager,
kube-scheduler and a pause binary next to the control plane's, from the same Go modules), then:

1. records the host as it is (sysctls, nftables tables, which hard-coded paths exist) in state.json;
2. creates the bridge (node IP 10.244.0.1, pods 10.244.0.0/24, Services 10.96.0.0/16 routed into it)
   and the FORWARD guard, so no pod packet is ever forwarded off the bridge;
3. starts containerd with its own config, root, state and socket under the run directory, and imports
   the pause image built from tools/pause;
4. starts etcd (127.0.0.1), kube-apiserver (10.244.0.1:6443, Node+RBAC, InternalIP for kubelets so
   nothing is looked up in DNS), kube-controller-manager, kube-scheduler, kubelet and kube-proxy;
5. waits until the node is Ready, writes ``admin.kubeconfig`` and ``laptop.kubeconfig`` (user
   ``laptop`` bound to cluster-admin, as in local mode) and starts the in-cluster git server.

Every process is recorded in state.json the moment it is spawned. ``down`` takes it all back in
reverse: the pods (so CNI frees their addresses), the processes by PID, leftover containers, mounts
(deepest first), the kube chains, the guard, new nftables tables, the bridge, the sysctls, cgroups and
the hard-coded paths that did not exist before. A host-wide lock (/run/driftguard-cluster.json)
refuses a second cluster: its ports, bridge and cgroup names are fixed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import secrets
import shutil
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from certs import CertificateAuthority, generate_signing_key_pair, write_private, write_public
from driftguard.kube import Kube, KubeError
from driftguard.local.cluster import host, oci
from driftguard.local.controlplane.binaries import cache_dir, resolve_node_binaries
from driftguard.local.controlplane.identities import (
    LAPTOP_GROUP,
    LAPTOP_USER,
    ensure_laptop_binding,
    write_cert_kubeconfig,
)
from driftguard.local.controlplane.processes import (
    ManagedProcess,
    ProcessFailed,
    Readiness,
    State,
    is_running,
    port_free,
    record,
    spawn,
    stop,
    wait_ready,
)

log = logging.getLogger(__name__)

BRIDGE = "driftguard0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
POD_RANGE = ("10.244.0.10", "10.244.0.250")
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
NODE_NAME = "driftguard-node"
APISERVER_PORT = 6443
IMPORT_TIMEOUT = 300.0  # `ctr images import` of a ~200 MB image: well under a minute quietly, minutes on a loaded host
PAUSE_IMAGE = "driftguard.local/pause:1"
LOCK_FILE = Path("/run/driftguard-cluster.json")
# Fixed ports (all below the ephemeral range, so tests' free_port() never collides with them).
LOOPBACK_PORTS = (2379, 2380, 2381, 10248, 10249, 10256, 10257, 10259)
NODE_PORTS = (APISERVER_PORT, 10250)
HOST_TOOLS = ("containerd", "ctr", "runc", "iptables", "ip6tables", "iptables-save", "iptables-restore", "ip",
              "mount", "umount", "conntrack")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")

CONTAINERD = "containerd"
REGISTRIES = ("docker.io", "registry.k8s.io", "ghcr.io", "quay.io", "gcr.io", "driftguard.local", "localhost")
NO_REGISTRY = "http://127.0.0.1:9"  # the discard port; nothing listens, so a pull is refused at once
GIT_SERVER = "git-server"
GIT_PORT = 9443
GIT_USER = "driftguard"
ORDER = ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
         "kube-proxy")

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not be started, used or taken down cleanly."""


class Cluster:
    """A real single-node cluster rooted in ``directory``; see the module docstring."""

    def __init__(self, directory: Path, *, progress: Progress | None = None) -> None:
        self.directory = Path(directory).resolve()
        self._say = progress or log.info

    # -- layout ---------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def laptop_kubeconfig(self) -> Path:
        return self.directory / "laptop.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd" / "containerd.sock"

    @property
    def server(self) -> str:
        return f"https://{NODE_IP}:{APISERVER_PORT}"

    def state(self) -> State | None:
        return State.load(self.directory)

    def admin(self) -> Kube:
        return Kube(self.admin_kubeconfig)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        """Run ``ctr`` against this cluster's containerd, namespace k8s.io."""
        return host.run(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args], check=check,
                        timeout=timeout)

    # -- up ---------------------------------------------------------------------------------------
    def up(self, timeout: float = 300.0) -> State:
        """Start everything and return the recorded state once the node is Ready."""
        host.require_tools(HOST_TOOLS)
        if len(str(self.containerd_socket)) + len(".ttrpc") > 100:
            raise ClusterError(f"{self.directory}: path too long for containerd's unix sockets; use a shorter --dir")
        binaries = resolve_node_binaries(progress=sys.stderr)
        with exclusive():
            self._claim()
            started = time.monotonic()
            try:
                self._up(binaries, timeout)
            except BaseException:
                self._say("start failed; taking down what was started (logs stay in " f"{self.directory / 'logs'})")
                with contextlib.suppress(Exception):
                    self._down()
                raise
        self._say(f"cluster up in {time.monotonic() - started:.1f}s: node {NODE_NAME} Ready at {self.server}")
        return self.state() or State()

    def _claim(self) -> None:
        """Take the host-wide claim, or explain who holds it."""
        if LOCK_FILE.exists():
            owner = json.loads(LOCK_FILE.read_text() or "{}").get("directory", "?")
            raise ClusterError(
                f"a driftguard cluster already runs on this host (run directory {owner}); "
                f"`driftguard cluster down --dir {owner}` first"
            )
        if host.link_exists(BRIDGE):
            raise ClusterError(f"network interface {BRIDGE} already exists; remove it (ip link del {BRIDGE}) first")
        if host.cgroup_paths():
            raise ClusterError(f"cgroups {', '.join(map(str, host.cgroup_paths()))} exist: another kubelet runs here")
        busy = [port for port in LOOPBACK_PORTS if not port_free(port)]
        if busy:
            raise ClusterError(f"ports {busy} on 127.0.0.1 are in use; the cluster needs them")
        previous = self.state()
        if previous and any(is_running(p) for p in previous.processes):
            raise ClusterError(f"{self.directory}: processes recorded in state.json still run; `cluster down` first")
        LOCK_FILE.write_text(json.dumps({"directory": str(self.directory)}) + "\n")

    def _up(self, binaries: dict[str, Path], timeout: float) -> None:
        self._reset_directory()
        before = {
            "host_sysctls": json.dumps(host.read_sysctls()),
            "host_nft_tables": json.dumps(host.nft_tables()),
            "host_paths": json.dumps(host.existing_paths()),
        }
        State(info={**before, **self._info(binaries)}).save(self.directory)
        self._write_pki()
        self._write_configs(binaries)
        host.bridge_up(BRIDGE, NODE_IP, int(POD_CIDR.split("/")[1]), SERVICE_CIDR)
        host.ensure_forward_guard(BRIDGE)
        self._start_containerd(timeout)
        self._import_pause(binaries["pause"])
        self._launch("etcd", self._etcd_argv(binaries), Readiness("http://127.0.0.1:2379/health"), timeout)
        self._launch("kube-apiserver", self._apiserver_argv(binaries),
                     Readiness(f"{self.server}/readyz", str(self.ca_file)), timeout)
        self._write_kubeconfigs()
        with self.admin() as admin:
            ensure_laptop_binding(admin)
        self._launch("kube-controller-manager", self._kcm_argv(binaries),
                     Readiness("https://127.0.0.1:10257/healthz", str(self.ca_file)), timeout)
        self._launch("kube-scheduler", self._scheduler_argv(binaries),
                     Readiness("https://127.0.0.1:10259/healthz", str(self.ca_file)), timeout)
        self._launch("kubelet", self._kubelet_argv(binaries), Readiness("http://127.0.0.1:10248/healthz"), timeout)
        self._launch("kube-proxy", [str(binaries["kube-proxy"]), f"--config={self.directory / 'conf/kube-proxy.yaml'}"],
                     None, timeout)
        self._wait_node_ready(timeout)
        self._wait_kube_proxy(timeout)
        self._start_git_server(timeout)
        host.ensure_forward_guard(BRIDGE)  # again: kube-proxy has inserted its jumps above it
        if not host.guard_is_first(BRIDGE):
            raise ClusterError("the FORWARD guard is not the first rule of FORWARD; refusing to run pods")

    def _start_git_server(self, timeout: float) -> None:
        """Smart HTTP over TLS on the bridge address for every bare repository under ``git/``, with a
        CA of its own and a random password (recorded in state.json, which is 0600)."""
        pki = self.pki / "git"
        ca, _ = CertificateAuthority.load_or_generate(pki, "driftguard-cluster-git-ca")
        ca.issue_serving("driftguard-cluster-git", (), (NODE_IP,)).write(pki / "tls.crt", pki / "tls.key")
        password = secrets.token_urlsafe(24)
        write_private(pki / "credentials", f"{GIT_USER}:{password}\n".encode())
        root = self.git_root
        root.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "driftguard.local.cluster.gitserver", "--root", str(root),
                "--address", NODE_IP, "--port", str(GIT_PORT), "--cert-file", str(pki / "tls.crt"),
                "--key-file", str(pki / "tls.key"), "--credentials-file", str(pki / "credentials")]
        self._launch(GIT_SERVER, argv, Readiness(f"{self.git_url}/healthz", str(pki / "ca.crt")), timeout)
        state = self.state() or State()
        state.with_info(git_url=self.git_url, git_root=str(root), git_ca_file=str(pki / "ca.crt"),
                        git_username=GIT_USER, git_password=password).save(self.directory)

    @property
    def git_root(self) -> Path:
        return self.directory / "git"

    @property
    def git_url(self) -> str:
        return f"https://{NODE_IP}:{GIT_PORT}"

    def _reset_directory(self) -> None:
        """Runtime state of a previous run goes; logs are kept (appended)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in ("containerd", "etcd", "kubelet", "cni", "pod-logs", "conf", "kubeconfigs", "pki"):
            shutil.rmtree(self.directory / name, ignore_errors=True)

    def _info(self, binaries: dict[str, Path]) -> dict[str, str]:
        return {
            "apiserver": self.server,
            "node_name": NODE_NAME,
            "node_ip": NODE_IP,
            "bridge": BRIDGE,
            "pod_cidr": POD_CIDR,
            "service_cidr": SERVICE_CIDR,
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "laptop_kubeconfig": str(self.laptop_kubeconfig),
            "ca_file": str(self.ca_file),
            "kubectl": str(binaries["kubectl"]),
            "kube_proxy": str(binaries["kube-proxy"]),
            "containerd_socket": str(self.containerd_socket),
        }

    def _write_pki(self) -> None:
        pki = self.pki
        ca, _ = CertificateAuthority.load_or_generate(pki, "driftguard-cluster-ca")
        generate_signing_key_pair().write(pki / "sa.key", pki / "sa.pub")
        apiserver_dns = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                         "kubernetes.default.svc.cluster.local")
        ca.issue_serving("kube-apiserver", apiserver_dns, (NODE_IP, KUBERNETES_SERVICE_IP, "127.0.0.1")).write(
            pki / "apiserver.crt", pki / "apiserver.key"
        )
        ca.issue_serving(NODE_NAME, (NODE_NAME,), (NODE_IP,)).write(pki / "kubelet-serving.crt",
                                                                    pki / "kubelet-serving.key")
        for name in ("kube-controller-manager", "kube-scheduler"):
            ca.issue_serving(name, ("localhost",), ("127.0.0.1",)).write(pki / f"{name}-serving.crt",
                                                                         pki / f"{name}-serving.key")
        clients = {
            "admin": ("admin", ["system:masters"]),
            "laptop": (LAPTOP_USER, [LAPTOP_GROUP]),
            "kube-controller-manager": ("system:kube-controller-manager", []),
            "kube-scheduler": ("system:kube-scheduler", []),
            "kubelet": (f"system:node:{NODE_NAME}", ["system:nodes"]),
            "kube-proxy": ("system:kube-proxy", []),
            "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
        }
        for name, (user, groups) in clients.items():
            ca.issue_client(user, groups).write(pki / f"{name}.crt", pki / f"{name}.key")
        for name in ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
            write_cert_kubeconfig(self.directory / "kubeconfigs" / f"{name}.kubeconfig", self.server, self.ca_file,
                                  name, cert=pki / f"{name}.crt", key=pki / f"{name}.key")

    def _write_kubeconfigs(self) -> None:
        for path, name, user in ((self.admin_kubeconfig, "admin", "admin"),
                                 (self.laptop_kubeconfig, "laptop", LAPTOP_USER)):
            write_cert_kubeconfig(path, self.server, self.ca_file, user,
                                  cert=self.pki / f"{name}.crt", key=self.pki / f"{name}.key")

    def _write_configs(self, binaries: dict[str, Path]) -> None:
        cni_bin = next((d for d in CNI_BIN_DIRS if (Path(d) / "bridge").exists()), None)
        if cni_bin is None:
            raise ClusterError(f"no CNI bridge plugin in {' or '.join(CNI_BIN_DIRS)}; "
                               "apt-get install containernetworking-plugins")
        values = {
            "run": str(self.directory),
            "bridge": BRIDGE,
            "node_ip": NODE_IP,
            "node_name": NODE_NAME,
            "pod_cidr": POD_CIDR,
            "pod_range_start": POD_RANGE[0],
            "pod_range_end": POD_RANGE[1],
            "pause_image": PAUSE_IMAGE,
            "runc": shutil.which("runc", path=host.environment()["PATH"]) or "/usr/sbin/runc",
            "cni_bin_dir": cni_bin,
        }
        targets = {
            "containerd.toml": self.directory / "conf" / "containerd.toml",
            "kubelet.yaml": self.directory / "conf" / "kubelet.yaml",
            "kube-proxy.yaml": self.directory / "conf" / "kube-proxy.yaml",
            "cni.conflist": self.directory / "cni" / "net.d" / "10-driftguard.conflist",
        }
        templates = resources.files("driftguard.local.cluster") / "templates"
        for template, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            text = string.Template((templates / template).read_text()).substitute(values)
            target.write_text(text)
        for registry in REGISTRIES:
            hosts = self.directory / "containerd" / "certs.d" / registry / "hosts.toml"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            capabilities = '  capabilities = ["pull", "resolve"]\n'
            hosts.write_text(f'server = "{NO_REGISTRY}"\n[host."{NO_REGISTRY}"]\n{capabilities}')
        # Pods get a resolver that answers nothing (their own loopback): no name is ever resolved
        # through the host's resolver, and there is no cluster DNS.
        write_public(self.directory / "resolv.conf", b"nameserver 127.0.0.1\noptions ndots:0 attempts:1 timeout:1\n")

    # -- processes ------------------------------------------------------------------------------
    def _launch(self, name: str, argv: list[str], ready: Readiness | None, timeout: float) -> ManagedProcess:
        self._say(f"starting {name}…")
        process = spawn(name, argv, self.directory / "logs" / f"{name}.log", ready=ready, env=host.environment())
        record(self.directory, process)
        try:
            waited = wait_ready(process, timeout)
        except ProcessFailed as error:
            raise ClusterError(str(error)) from error
        if ready is not None:
            self._say(f"{name} ready in {waited:.1f}s")
        elif not is_running(process):
            raise ClusterError(f"{name} exited at once; see {process.log_file}")
        return process

    def _start_containerd(self, timeout: float) -> None:
        config = self.directory / "conf" / "containerd.toml"
        process = self._launch(CONTAINERD, ["containerd", "--config", str(config)], None, timeout)
        deadline = time.monotonic() + timeout
        while not host.succeeds(["ctr", "--address", str(self.containerd_socket), "version"]):
            if not is_running(process) or time.monotonic() > deadline:
                raise ClusterError(f"containerd did not come up; see {process.log_file}")
            time.sleep(0.2)

    def _import_pause(self, pause: Path) -> None:
        archive = oci.write_archive(
            self.directory / "images" / "pause.tar",
            PAUSE_IMAGE,
            {"pause": oci.ImageFile(pause.read_bytes())},
            entrypoint=["/pause"],
            user="65535:65535",
        )
        self.import_image(archive)

    def import_image(self, archive: Path) -> None:
        """Import an OCI (or docker) archive into the node's containerd, where kubelet sees it."""
        self.ctr("images", "import", str(archive), timeout=IMPORT_TIMEOUT)

    def _etcd_argv(self, binaries: dict[str, Path]) -> list[str]:
        return [
            str(binaries["etcd"]),
            "--name=driftguard",
            f"--data-dir={self.directory / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=driftguard=http://127.0.0.1:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, binaries: dict[str, Path]) -> list[str]:
        pki = self.pki
        return [
            str(binaries["kube-apiserver"]),
            "--etcd-servers=http://127.0.0.1:2379",
            f"--bind-address={NODE_IP}",
            f"--advertise-address={NODE_IP}",
            f"--secure-port={APISERVER_PORT}",
            f"--cert-dir={pki / 'generated'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={self.ca_file}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _kube_common(self, name: str) -> list[str]:
        kubeconfig = self.directory / "kubeconfigs" / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={self.pki / f'{name}-serving.crt'}",
            f"--tls-private-key-file={self.pki / f'{name}-serving.key'}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kcm_argv(self, binaries: dict[str, Path]) -> list[str]:
        return [
            str(binaries["kube-controller-manager"]),
            *self._kube_common("kube-controller-manager"),
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            f"--cluster-signing-cert-file={self.ca_file}",
            f"--cluster-signing-key-file={self.pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
        ]

    def _scheduler_argv(self, binaries: dict[str, Path]) -> list[str]:
        return [str(binaries["kube-scheduler"]), *self._kube_common("kube-scheduler")]

    def _kubelet_argv(self, binaries: dict[str, Path]) -> list[str]:
        return [
            str(binaries["kubelet"]),
            f"--config={self.directory / 'conf' / 'kubelet.yaml'}",
            f"--kubeconfig={self.directory / 'kubeconfigs' / 'kubelet.kubeconfig'}",
            f"--root-dir={self.directory / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]

    def _wait_node_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "not registered"
        with self.admin() as admin:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    node = admin.request("GET", f"/api/v1/nodes/{NODE_NAME}")
                except KubeError as error:
                    last = str(error)
                else:
                    conditions = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
                    ready = conditions.get("Ready", {})
                    if ready.get("status") == "True":
                        self._say(f"node {NODE_NAME} Ready")
                        return
                    last = f"Ready={ready.get('status')}: {ready.get('message', '')}"
                time.sleep(0.5)
        raise ClusterError(f"node {NODE_NAME} not Ready after {timeout:.0f}s ({last}); see {self.directory / 'logs'}")

    def _wait_kube_proxy(self, timeout: float) -> None:
        """kube-proxy has programmed the Service rules (the kubernetes Service's ClusterIP)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if "KUBE-SERVICES" in host.run(["iptables-save", "-t", "nat"], check=False) and KUBERNETES_SERVICE_IP in (
                host.run(["iptables-save", "-t", "nat"], check=False)
            ):
                return
            time.sleep(0.5)
        raise ClusterError(f"kube-proxy did not program {KUBERNETES_SERVICE_IP} in {timeout:.0f}s")

    def _check_alive(self) -> None:
        state = self.state()
        for process in state.processes if state else ():
            if not is_running(process):
                raise ClusterError(f"{process.name} (pid {process.pid}) exited; see {process.log_file}")

    # -- down -------------------------------------------------------------------------------------
    def down(self) -> bool:
        """Take everything back; True if anything was running. Safe to call twice."""
        with exclusive():
            return self._down()

    def _down(self) -> bool:
        if LOCK_FILE.exists():
            owner = json.loads(LOCK_FILE.read_text() or "{}").get("directory")
            if owner != str(self.directory):
                raise ClusterError(f"the cluster running on this host belongs to {owner}, not {self.directory}; "
                                   f"`driftguard cluster down --dir {owner}`")
        state = self.state()
        if state is None:
            self._release()
            return False
        processes = {p.name: p for p in state.processes}
        was_running = any(is_running(p) for p in state.processes)
        if was_running:
            self._say("taking the cluster down…")
        for name in (GIT_SERVER, "kube-controller-manager", "kube-scheduler"):
            if name in processes:
                stop(processes[name])
        if all(name in processes and is_running(processes[name]) for name in ("kube-apiserver", "kubelet")):
            self._drain_pods()
        for name in ("kube-proxy", "kubelet", "kube-apiserver", "etcd"):
            if name in processes:
                stop(processes[name], grace=15.0)
        if CONTAINERD in processes and is_running(processes[CONTAINERD]):
            self._remove_containers()
            stop(processes[CONTAINERD])
        self._kill_shims()
        self._restore_host(state)
        State(info=state.info).save(self.directory)
        self._release()
        return was_running

    def _drain_pods(self) -> None:
        """Delete every pod (webhooks first, so nothing is blocked) and let kubelet tear them down, so
        CNI DEL frees addresses and veths; wait until containerd runs no task."""
        try:
            with self.admin() as admin:
                for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
                    admin.request("DELETE", f"/apis/admissionregistration.k8s.io/v1/{kind}")
                pods = admin.request("GET", "/api/v1/pods").get("items", [])
                for pod in pods:
                    meta = pod["metadata"]
                    with contextlib.suppress(KubeError):
                        admin.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                      body={"gracePeriodSeconds": 1})
        except KubeError as error:
            self._say(f"could not delete pods through the API ({error}); removing containers directly")
            return
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.ctr("tasks", "ls", "-q", check=False).strip():
            time.sleep(0.5)

    def _remove_containers(self) -> None:
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.ctr("tasks", "ls", "-q", check=False).strip():
            for task in self.ctr("tasks", "ls", "-q", check=False).split():
                self.ctr("tasks", "rm", "-f", task, check=False)
            time.sleep(0.5)
        for container in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "rm", container, check=False)

    def _kill_shims(self) -> None:
        """containerd-shim processes outlive containerd; stop the ones serving this run's containerd by PID."""
        marker = str(self.containerd_socket)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg.decode(errors="replace") == marker for arg in argv) and b"containerd-shim" in argv[0]:
                with contextlib.suppress(ProcessLookupError):
                    pid = int(proc.name)
                    subprocess.run(["kill", "-KILL", str(pid)], check=False, capture_output=True)

    def _restore_host(self, state: State) -> None:
        info = state.info
        prefixes = [str(self.directory), "/run/netns", "/var/run/netns"]
        if "/run/containerd" not in json.loads(info.get("host_paths", "[]")):
            prefixes.append("/run/containerd")
        host.unmount_under(prefixes)
        kube_proxy = info.get("kube_proxy")
        if kube_proxy and Path(kube_proxy).exists():
            host.succeeds([kube_proxy, "--cleanup", "--v=0"])
        host.remove_kube_chains()
        host.remove_forward_guard(BRIDGE)
        host.bridge_down(BRIDGE)
        if "host_nft_tables" in info:
            host.delete_new_nft_tables(json.loads(info["host_nft_tables"]))
        if "host_sysctls" in info:
            host.restore_sysctls(json.loads(info["host_sysctls"]))
        left = host.remove_cgroups()
        if left:
            self._say(f"warning: cgroups still in use, not removed: {', '.join(left)}")
        if "host_paths" in info:
            existed = set(json.loads(info["host_paths"]))
            host.remove_paths(path for path in host.existing_paths() if path not in existed)
        for name in ("containerd", "kubelet", "cni", "etcd"):
            shutil.rmtree(self.directory / name, ignore_errors=True)

    def _release(self) -> None:
        if LOCK_FILE.exists():
            owner = json.loads(LOCK_FILE.read_text() or "{}").get("directory")
            if owner == str(self.directory):
                LOCK_FILE.unlink()


_held = threading.local()


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the host-wide lock that serialises `up` and `down` (the claim itself is LOCK_FILE).

    Re-entrant within a thread, so a caller can bracket `up` or `down` with its own reads of the
    host (the tests' before/after snapshots) and no other cluster starts or stops in between."""
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    path = cache_dir().parent / "cluster.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
            fcntl.flock(lock, fcntl.LOCK_UN)
