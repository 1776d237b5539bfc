"""Shared machinery for the reconciler benchmarks (``bench/bench_reconciler_*.py``).

Each benchmark starts a fresh control plane (driftguard's own etcd + kube-apiserver, in a temp dir) unless
``--kubeconfig`` names an existing cluster, installs the Application CRD, creates a real git repository,
and runs the reconciler exactly as deployed: ``driftguard reconcile`` in its own process (so its RSS is its
own), talking to the API server over HTTPS. Timings come from a watch on the objects (the moment the
API server reports the change), never from polling with sleeps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from driftguard.kube import Kube, KubeError  # noqa: E402
from driftguard.kube.resources import Cluster  # noqa: E402
from driftguard.local.controlplane import ControlPlane, resolve_binaries  # noqa: E402
from reconciler import crd  # noqa: E402

APPS = "/apis/driftguard.io/v1alpha1/namespaces/{ns}/applications"
PLANE_PIDS: dict[str, int] = {}  # the control plane environment() started: name → pid (for cpu_seconds)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kubeconfig", help="an existing cluster's admin kubeconfig (default: start a control plane)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds to let a freshly started API server finish its own start-up work")
    return p


@contextlib.contextmanager
def environment(args: argparse.Namespace) -> Iterator[tuple[Path, Kube, Path]]:
    """(admin kubeconfig, admin client, scratch dir) with the Application CRD installed."""
    scratch = Path(tempfile.mkdtemp(prefix="driftguard-reconciler-bench-"))
    plane = None
    try:
        if args.kubeconfig:
            kubeconfig = Path(args.kubeconfig)
        else:
            plane = ControlPlane(scratch / "controlplane", resolve_binaries(), progress=lambda m: None)
            plane.start()
            PLANE_PIDS.update({p.name: p.pid for p in plane.processes})
            kubeconfig = plane.admin_kubeconfig
            time.sleep(args.settle)
        with Kube(kubeconfig, timeout=120) as admin:
            crd.install(Cluster(admin))
            yield kubeconfig, admin, scratch
    finally:
        if plane is not None:
            PLANE_PIDS.clear()
            plane.stop()
        if args.keep:
            print(f"(kept {scratch})")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process (and its threads) has used so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
    return out


def create_namespace(admin: Kube, name: str) -> str:
    with contextlib.suppress(KeyError):
        admin.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": name}})
    return name


@dataclass
class Repo:
    path: Path

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@org",
               "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@org"}
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    @classmethod
    def create(cls, path: Path) -> Repo:
        path.mkdir(parents=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", "main")
        return repo

    def write(self, relative: str, docs: list[dict[str, Any]]) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def bulk(repo: Repo, count: int, per_file: int = 100, value: str = "v1") -> None:
    for start in range(0, count, per_file):
        repo.write(f"app/part-{start // per_file:04d}.yaml",
                   [configmap(f"cm-{i:05d}", {"index": str(i), "value": value, "payload": "x" * 64})
                    for i in range(start, min(count, start + per_file))])


def make_app(admin: Kube, namespace: str, name: str, repo: Repo, destination: str, **spec: Any) -> None:
    body = {
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"project": "default",
                 "source": {"repoURL": str(repo.path), "targetRevision": "main", "path": "app"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}, **spec},
    }
    admin.request("POST", APPS.format(ns=namespace), body=body)


def app_status(admin: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(admin.request("GET", APPS.format(ns=namespace) + f"/{name}").get("status") or {})


def wait(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def synced(admin: Kube, namespace: str, name: str) -> Callable[[], bool]:
    """A ``wait`` probe: the Application's status says Synced."""
    return lambda: app_status(admin, namespace, name).get("sync", {}).get("status") == "Synced"


def becomes(probe: Callable[[], object], value: object) -> Callable[[], bool]:
    """A ``wait`` probe: ``probe()`` equals ``value``."""
    return lambda: probe() == value


def field_is(key: str, value: str) -> Callable[[dict[str, Any]], bool]:
    """A ``Watcher.wait`` predicate: the watched object's data holds ``value`` at ``key``."""
    return lambda data: data.get(key) == value


def warm_up(admin: Kube, namespace: str, scratch: Path) -> None:
    """Sync one tiny Application first: a freshly installed CRD's watch cache, discovery and the git
    cache are start-up costs of a new cluster and a new process, not of a sync."""
    repo = Repo.create(scratch / "warm-up-repo")
    repo.write("app/cm.yaml", [configmap("warm-up", {"k": "v"})])
    repo.commit("warm up")
    make_app(admin, namespace, "warm-up", repo, namespace, refreshInterval="1h")
    wait(lambda: app_status(admin, namespace, "warm-up").get("sync", {}).get("status") == "Synced", 60, "warm-up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REFRESH_TOKEN = "bench-refresh-token"


@dataclass
class Reconciler:
    """``driftguard reconcile`` in its own process."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def refresh(self, namespace: str = "", name: str = "") -> None:
        path = f"/refresh/{namespace}/{name}" if name else "/refresh"
        request = urllib.request.Request(self.url + path, method="POST", data=b"",
                                         headers={"Authorization": f"Bearer {REFRESH_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def synced_cycles(self) -> float:
        """Reconcile cycles that ended synced, over every Application."""
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("driftguard_reconcile_total") and 'result="synced"' in k)

    def cycled_past(self, count: float) -> Callable[[], bool]:
        """A ``wait`` probe: more synced cycles than ``count``."""
        return lambda: self.synced_cycles() > count

    def requests(self) -> dict[str, float]:
        prefix = 'driftguard_apiserver_requests_total{verb="'
        return {k[len(prefix):-2]: v for k, v in self.metrics().items() if k.startswith(prefix)}

    def rss_mib(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MiB, from /proc."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@contextlib.contextmanager
def reconciler(kubeconfig: Path, namespace: str, scratch: Path, *extra: str) -> Iterator[Reconciler]:
    port = free_port()
    log = scratch / f"reconciler-{port}.log"
    verbose = ["-v"] if os.environ.get("DRIFTGUARD_BENCH_VERBOSE") else []
    command = [sys.executable, "-m", "driftguard.cli", *verbose, "reconcile", "--kubeconfig", str(kubeconfig),
               "--namespace", namespace, "--listen", f"127.0.0.1:{port}", "--no-leader-elect",
               "--cache-dir", str(scratch / "git-cache"), "--allow-local-repos", *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, "DRIFTGUARD_REFRESH_TOKEN": REFRESH_TOKEN})
    running = Reconciler(process, f"http://127.0.0.1:{port}", log)
    try:
        wait(lambda: _ready(running.url), 30, "the reconciler's /readyz")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return bool(json.loads(response.read()).get("ready"))
    except OSError:
        return False


@dataclass
class Watcher:
    """A watch on one namespace's ConfigMaps: the time each (name, data) was first reported."""

    admin_kubeconfig: Path
    namespace: str
    seen: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    condition: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Watcher:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        with Kube(self.admin_kubeconfig) as kube:
            version = ""
            while not self.stop.is_set():
                query = {"resourceVersion": version} if version else {}
                try:
                    for event in kube.stream(f"/api/v1/namespaces/{self.namespace}/configmaps", query, timeout=300):
                        now = time.monotonic()
                        obj = event.get("object") or {}
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            with self.condition:
                                data = {} if event["type"] == "DELETED" else dict(obj.get("data") or {})
                                self.seen[obj["metadata"]["name"]] = (now, data)
                                self.condition.notify_all()
                except KubeError:
                    version = ""
                    time.sleep(0.1)

    def wait(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        """The monotonic time at which ``name``'s data first satisfied ``predicate`` (waiting if needed)."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                entry = self.seen.get(name)
                if entry is not None and predicate(entry[1]):
                    return entry[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out waiting for ConfigMap {name}: last {entry}")
                self.condition.wait(left)

    def count(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        with self.condition:
            return sum(1 for _, data in self.seen.values() if predicate(data))


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return (f"n={len(ordered)}  p50={statistics.median(ordered) * 1000:.0f} ms  p90={pct(90) * 1000:.0f} ms  "
            f"p99={pct(99) * 1000:.0f} ms  max={ordered[-1] * 1000:.0f} ms")


_SAMPLE = re.compile(r'^(apiserver_request_total|apiserver_request_duration_seconds_sum|'
                     r'apiserver_request_duration_seconds_count)\{([^}]*)\} (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ApiServerCounts:
    """The API server's own request counters (its ``/metrics``), to tell what the reconciler asked of it.

    ``requests`` by (verb, resource): the verb as the API server names it (APPLY is a server-side apply,
    a dry run is ``VERB (dry run)``), the resource with its subresource; ``seconds`` and ``timed`` are the
    sum and count of ``apiserver_request_duration_seconds`` by verb (the server's own time answering)."""

    requests: dict[tuple[str, str], float]
    seconds: dict[str, float]
    timed: dict[str, float]

    @classmethod
    def read(cls, admin: Kube) -> ApiServerCounts:
        raw = admin._call("GET", "/metrics", body=None, query=None, content_type="application/json",
                          headers={"Accept": "text/plain"}, timeout=(30.0, 30.0))
        try:
            text = raw.data.decode()
        finally:
            raw.release_conn()
        requests: dict[tuple[str, str], float] = {}
        seconds: dict[str, float] = {}
        timed: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match:
                continue
            name, labels, value = match.group(1), dict(_LABEL.findall(match.group(2))), float(match.group(3))
            verb = labels.get("verb", "") + (" (dry run)" if labels.get("dry_run") else "")
            if name == "apiserver_request_total":
                resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource")
                                                         else "")
                requests[(verb, resource)] = requests.get((verb, resource), 0.0) + value
            elif name.endswith("_sum"):
                seconds[verb] = seconds.get(verb, 0.0) + value
            else:
                timed[verb] = timed.get(verb, 0.0) + value
        return cls(requests, seconds, timed)

    def since(self, before: ApiServerCounts) -> ApiServerCounts:
        def minus(now: dict[Any, float], then: dict[Any, float]) -> dict[Any, float]:
            return {k: v - then.get(k, 0.0) for k, v in now.items() if v - then.get(k, 0.0) > 0}

        return ApiServerCounts(minus(self.requests, before.requests), minus(self.seconds, before.seconds),
                               minus(self.timed, before.timed))

    def lines(self, objects: int) -> list[str]:
        """Requests per object by verb (and resource), and the API server's time by verb."""
        by_verb: defaultdict[str, float] = defaultdict(float)
        for (verb, _), count in self.requests.items():
            by_verb[verb] += count
        out = [f"  API server requests: {sum(by_verb.values()):.0f} in all, "
               f"{sum(by_verb.values()) / objects:.2f} per object"]
        for verb in sorted(by_verb, key=lambda v: -by_verb[v]):
            resources = ", ".join(f"{resource or '-'} {count:.0f}" for (v, resource), count
                                  in sorted(self.requests.items(), key=lambda item: -item[1]) if v == verb)
            out.append(f"    {verb:<18} {by_verb[verb]:>7.0f}  {by_verb[verb] / objects:6.3f}/object  ({resources})")
        total = sum(s for v, s in self.seconds.items() if not v.startswith("WATCH"))
        out.append(f"  API server time answering (apiserver_request_duration_seconds, WATCH left out): {total:.2f} s")
        for verb in sorted(self.seconds, key=lambda v: -self.seconds[v]):
            if verb.startswith("WATCH"):
                continue
            count = self.timed.get(verb, 0.0)
            mean = self.seconds[verb] / count * 1000 if count else 0.0
            out.append(f"    {verb:<18} {self.seconds[verb]:7.2f} s  over {count:.0f}  ({mean:.2f} ms each)")
        return out

