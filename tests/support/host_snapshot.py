"""What a real cluster may change on the host, captured so a test can compare before `up` and after `down`.

Covers processes' traces (links, addresses, routes, iptables/ip6tables/nftables rule sets, mounts,
cgroups, sysctls, the top-level entries of the directories components write into). Volatile values
(counters, random seeds, per-interface keys of links that come and go) are left out.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WATCHED_DIRS = ("/run", "/var/run", "/var/lib", "/var/log", "/etc", "/opt", "/etc/cni")
SYSCTL_PREFIXES = ("net/ipv4", "net/ipv6/conf/all", "net/ipv6/conf/default", "net/bridge", "vm", "kernel",
                   "net/netfilter", "net/core")
VOLATILE_SYSCTLS = re.compile(
    r"(random|ns_last_pid|inode|dentry|file-nr|stat|nr_|tainted|hung_task|perf_event|sched_domain|"
    r"netfilter/nf_conntrack_count|vm/drop_caches|vm/compact|dirty|neigh|core/netdev_rss_key|"
    r"/conf/(?!all|default)|pty/nr|overflow|kernel/sched_|cad_pid|fs/)"
)
COUNTER = re.compile(r"\[\d+:\d+\]")


@dataclass(frozen=True)
class HostSnapshot:
    sections: dict[str, str]

    @classmethod
    def take(cls) -> HostSnapshot:
        sections = {
            "links": _run("ip", "-o", "link", "show"),
            "addresses": _run("ip", "-o", "addr", "show"),
            "routes": _run("ip", "route", "show", "table", "all"),
            "iptables": COUNTER.sub("", _run("iptables-save")),
            "ip6tables": COUNTER.sub("", _run("ip6tables-save")),
            "nft": _run("nft", "list", "ruleset"),
            "mounts": "\n".join(sorted(line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())),
            "cgroups": "\n".join(sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/*") if p.is_dir())),
            "sysctls": _sysctls(),
        }
        for directory in WATCHED_DIRS:
            entries = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
            sections[f"ls {directory}"] = "\n".join(entries)
        return cls(sections)

    def diff(self, other: HostSnapshot) -> dict[str, tuple[list[str], list[str]]]:
        """Per section: (lines only in self, lines only in other); empty when the host is the same."""
        changes = {}
        for name, text in self.sections.items():
            mine = [line for line in text.splitlines() if not _ignored(name, line)]
            theirs = [line for line in other.sections.get(name, "").splitlines() if not _ignored(name, line)]
            gone, new = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
            if gone or new:
                changes[name] = (gone, new)
        return changes


def _ignored(section: str, line: str) -> bool:
    # iptables-save's header and footer comments carry a timestamp; /var/lib/containers is buildah's
    # blob-info cache, made and removed by image builds (`driftguard cluster image`), not by the
    # cluster, and another session's build may hold it while this one compares
    if section == "ls /var/lib":
        return line == "containers"
    return section in {"iptables", "ip6tables"} and line.startswith("#")


def _run(*argv: str) -> str:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60).stdout
    except OSError:
        return ""


def _sysctls() -> str:
    lines = []
    for prefix in SYSCTL_PREFIXES:
        root = Path("/proc/sys", prefix)
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            key = str(path.relative_to("/proc/sys"))
            if path.is_dir() or VOLATILE_SYSCTLS.search(key):
                continue
            try:
                if not os.access(path, os.R_OK):
                    continue
                lines.append(f"{key} = {path.read_text().strip()}")
            except OSError:
                continue
    return "\n".join(lines)
