"""The host-level changes a real single-node cluster makes, and how each one is taken back.

Every function here changes (or reads) one kind of host state: the bridge and its routes, the
FORWARD guard that keeps pods on the host, the chains kubelet and kube-proxy add to iptables and
ip6tables (and the empty nftables tables iptables-nft leaves behind), sysctls, mounts, cgroups, and
the few hard-coded paths outside the run directory that kubelet, containerd and the CNI plugins
create. ``driftguard.local.cluster.node`` records what the host looked like before ``up`` and calls
these in reverse on ``down``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

GUARD_COMMENT = "driftguard cluster: pods never leave the host"

# Sysctls kubelet (setupKernelTunables), the CNI bridge plugin (isGateway => ip_forward) or kube-proxy
# may change; their values before `up` are recorded and written back on `down`. ip_forward comes first:
# writing it resets every conf.*.forwarding.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv4.conf.default.accept_redirects",
)

# Paths outside the run directory that the components create whatever they are told (kubelet's
# device-plugin socket and container log symlinks, containerd's shim sockets and fifos, libcni's
# cache, CNI network namespaces). Removed on `down` only when they did not exist before `up`.
HARDCODED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/var/run/netns",
    "/run/mount",  # util-linux's utab, written by mount(8) when kubelet mounts volumes
)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAMES = ("kubepods", "k8s.io")
KUBE_CHAIN = re.compile(r"^:((?:KUBE|CNI)-[^ ]+)")
NFT_TABLES_CREATED_BY_IPTABLES = frozenset({"filter", "nat", "mangle", "raw", "security", "kube-proxy"})


class HostError(RuntimeError):
    """A host command failed, or the host is not in a state a cluster can start in."""


def succeeds(argv: Sequence[str]) -> bool:
    """Run a host command (no shell), quietly; whether it exited 0."""
    try:
        return subprocess.run(list(argv), capture_output=True, check=False, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(argv: Sequence[str], *, check: bool = True, input_text: str | None = None, timeout: float = 60.0) -> str:
    """Run a host command (no shell) and return its stdout; raise HostError on failure when ``check``."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, input=input_text, check=False,
                                timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        if check:
            raise HostError(f"{' '.join(argv)}: {error}") from error
        return ""
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def require_tools(names: Iterable[str]) -> None:
    """Fail with the packages to install when a host command is missing."""
    missing = [name for name in names if shutil.which(name, path=_sbin_path()) is None]
    if missing:
        raise HostError(
            f"missing host commands: {', '.join(missing)}. Install them (Debian): apt-get install "
            "containerd runc containernetworking-plugins iptables nftables conntrack iproute2 mount"
        )


def environment() -> dict[str, str]:
    """The environment the cluster's processes run in: this one, with the sbin directories on PATH."""
    return {**os.environ, "PATH": _sbin_path()}


def _sbin_path() -> str:
    parts = os.environ.get("PATH", "").split(":")
    for directory in ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if directory not in parts:
            parts.append(directory)
    return ":".join(part for part in parts if part)


# -- the bridge ------------------------------------------------------------------------------------
def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def bridge_up(name: str, address: str, prefix: int, service_cidr: str) -> None:
    """Create bridge ``name`` with ``address/prefix``, and route the Service range into it so a
    ClusterIP packet kube-proxy did not rewrite (yet) never follows the default route off the host."""
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "add", f"{address}/{prefix}", "dev", name])
    run(["ip", "link", "set", name, "up"])
    run(["ip", "route", "add", service_cidr, "dev", name, "src", address])


def bridge_down(name: str) -> None:
    """Delete the bridge; its addresses and routes go with it."""
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)


# -- the FORWARD guard and the kube chains ---------------------------------------------------------
def _guard_rules(bridge: str) -> list[list[str]]:
    comment = ["-m", "comment", "--comment", GUARD_COMMENT, "-j", "DROP"]
    return [["-i", bridge, "!", "-o", bridge, *comment], ["!", "-i", bridge, "-o", bridge, *comment]]


def ensure_forward_guard(bridge: str) -> None:
    """Pods never leave the host, and nothing from elsewhere is forwarded to them: DROP everything
    forwarded between the bridge and any other interface, as the first rules of FORWARD (IPv4 and IPv6).
    Idempotent, and re-run after kube-proxy has inserted its own jumps so the guard stays first."""
    remove_forward_guard(bridge)
    for tool in ("iptables", "ip6tables"):
        for rule in _guard_rules(bridge):
            run([tool, "-w", "5", "-I", "FORWARD", "1", *rule])


def remove_forward_guard(bridge: str) -> None:
    for tool in ("iptables", "ip6tables"):
        for rule in _guard_rules(bridge):
            while succeeds([tool, "-w", "5", "-C", "FORWARD", *rule]):
                if not succeeds([tool, "-w", "5", "-D", "FORWARD", *rule]):
                    break


def guard_is_first(bridge: str) -> bool:
    """Whether the FORWARD chain starts with the guard (both families)."""
    for tool in ("iptables", "ip6tables"):
        rules = [line for line in run([f"{tool}-save", "-t", "filter"]).splitlines() if line.startswith("-A FORWARD")]
        if len(rules) < 2 or not all(GUARD_COMMENT in rule for rule in rules[:2]):
            return False
    return True


def remove_kube_chains() -> None:
    """Delete every KUBE-*/CNI-* jump from the built-in chains, then flush and delete those chains,
    in filter, nat and mangle, for IPv4 and IPv6 (kubelet and kube-proxy create both)."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            dump = run([f"{tool}-save", "-t", table], check=False)
            for line in dump.splitlines():
                parts = line.split()
                if len(parts) > 2 and parts[0] == "-A" and not parts[1].startswith(("KUBE-", "CNI-")) and any(
                    part.startswith(("KUBE-", "CNI-")) for part in parts[2:]
                ):
                    _delete_rule(tool, table, line)
            chains = [match.group(1) for line in dump.splitlines() if (match := KUBE_CHAIN.match(line))]
            for chain in chains:
                run([tool, "-w", "5", "-t", table, "-F", chain], check=False)
            for chain in chains:
                run([tool, "-w", "5", "-t", table, "-X", chain], check=False)


def _delete_rule(tool: str, table: str, saved_rule: str) -> None:
    """Delete one rule given in iptables-save syntax, through iptables-restore (no shell quoting)."""
    restore = f"*{table}\n-D{saved_rule[2:]}\nCOMMIT\n"
    run([f"{tool}-restore", "-w", "5", "--noflush"], check=False, input_text=restore)


def nft_tables() -> list[str]:
    """``family name`` of every nftables table (empty when nft is missing)."""
    if shutil.which("nft", path=_sbin_path()) is None:
        return []
    lines = run(["nft", "list", "tables"], check=False).splitlines()
    return sorted(line.removeprefix("table ").strip() for line in lines if line.startswith("table "))


def delete_new_nft_tables(before: Iterable[str]) -> None:
    """Delete the tables iptables-nft (or kube-proxy) created that did not exist before ``up``."""
    keep = set(before)
    for table in nft_tables():
        family, _, name = table.partition(" ")
        if table not in keep and name in NFT_TABLES_CREATED_BY_IPTABLES and family in {"ip", "ip6", "inet"}:
            run(["nft", "delete", "table", family, name], check=False)


# -- sysctls -------------------------------------------------------------------------------------
def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys", *name.split("."))


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def restore_sysctls(values: Mapping[str, str]) -> None:
    """Write back every recorded value that differs now, in the recorded order."""
    for name, value in values.items():
        path = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                log.info("restored sysctl %s = %s", name, value)


# -- mounts, cgroups, paths ------------------------------------------------------------------------
def mounts_under(prefixes: Sequence[str]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].encode().decode("unicode_escape")
        if any(point == prefix.rstrip("/") or point.startswith(prefix.rstrip("/") + "/") for prefix in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True)


def unmount_under(prefixes: Sequence[str]) -> None:
    """Unmount deepest first (kubelet bind-mounts its root directory onto itself, so repeat)."""
    for _ in range(5):
        points = mounts_under(prefixes)
        if not points:
            return
        for point in points:
            if not succeeds(["umount", point]):
                succeeds(["umount", "-l", point])


def cgroup_paths(names: Sequence[str] = CGROUP_NAMES) -> list[Path]:
    """``/sys/fs/cgroup/<hierarchy>/<name>`` for every hierarchy where it exists."""
    if not CGROUP_ROOT.is_dir():
        return []
    found = (hierarchy / name for hierarchy in CGROUP_ROOT.iterdir() for name in names)
    return sorted(path for path in found if path.is_dir())


def remove_cgroups(names: Sequence[str] = CGROUP_NAMES) -> list[str]:
    """rmdir the cgroups deepest first; return the ones that could not be removed (still in use)."""
    left = []
    for top in cgroup_paths(names):
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        try:
            top.rmdir()
        except OSError:
            left.append(str(top))
    return left


def existing_paths(paths: Iterable[str] = HARDCODED_PATHS) -> list[str]:
    return [path for path in paths if os.path.lexists(path)]


def remove_paths(paths: Iterable[str]) -> None:
    for path in paths:
        target = Path(path)
        if target.is_symlink() or target.is_file():
            target.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
