"""Benchmark ``/validate`` as deployed: gunicorn over TLS on loopback, fed realistic Deployment UPDATEs.

    .venv/bin/python bench/bench_webhook.py                 # deployed settings, concurrency 1, 16, 64; Go floor
    .venv/bin/python bench/bench_webhook.py --matrix        # compare worker classes / counts at 16
    .venv/bin/python bench/bench_webhook.py --client python # no wrk: a multi-process Python client
    .venv/bin/python bench/bench_webhook.py --server-venv .venv-release  # the server on the image's interpreter

The server is ``driftguard webhook`` started exactly as the Deployment starts it (same defaults for
workers, threads and worker class; JSON logs; an audit file), on a free port, with a fresh CA.
The review is what the API server sends for ``kubectl apply`` on a managed Deployment: old and new
object with managedFields and the driftguard stamp (~9 KB). Two cases:

* ``allow`` — an undeclared label changes (most traffic: every edit of a managed object);
* ``deny``  — ``spec.replicas`` 3 → 9 (decision, message, audit record to the file, log line).

Beside it, at concurrency 16, the Go floor webhook (``bench/floor.py``: standard-library TLS, decode and
allow) on the same machine, the same review and the same client.

The load generator is ``wrk`` (``make bench-tools`` installs it with apt-get) in its own process with a Lua script that
POSTs the review over keep-alive TLS connections, like the API server's client. Python cannot drive
2,000 TLS requests/s from the same 2 cores without measuring itself, so the ``python`` client runs
one process per connection group and is reported as a lower bound only.

The server runs on the interpreter of ``--server-venv`` (default: this one's). ``make bench-webhook`` passes
``.venv-release`` (``make venv-release``: Debian's ``python3``, the real-cluster image's base),
because the interpreter matters more than most changes: the same code on this machine's pyenv build (configured
without --enable-optimizations) spends ~1.5x the CPU per review. The first line says which interpreter served.

``cpu us/req`` is the server's user + system CPU per request (master and workers, from /proc); ``runq/s``
is how long per second its threads were runnable but not running (``schedstat``): on a shared, loaded
machine throughput follows the CPU share the kernel gives the server, not its efficiency.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certs import CertificateAuthority  # noqa: E402
from driftguard.core import contract  # noqa: E402
from webhook.settings import Settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import FloorServer, run_queue_seconds  # noqa: E402

SOURCE = contract.Source("https://github.com/org/k8s-manifests", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
                         "alice@org", "2024-05-01T10:00:00Z", "services/my-service/production/deployment.yaml")
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %.3f %.3f %.3f\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, 0, 0, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# ---------------------------------------------------------------- the review

def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "my-service", "namespace": "production",
                     "labels": {"app": "my-service", "team": "payments"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "my-service"}},
            "template": {
                "metadata": {"labels": {"app": "my-service"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "serviceAccountName": "my-service",
                    "containers": [
                        {"name": "web", "image": "registry.example/my-service:1.4.2",
                         "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
                         "env": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(12)],
                         "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                       "limits": {"cpu": "1000m", "memory": "512Mi"}},
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/my-service"}]},
                        {"name": "proxy", "image": "registry.example/proxy:2.0",
                         "ports": [{"containerPort": 15001}]},
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "my-service"}}],
                },
            },
        },
    }


def live_object() -> dict[str, Any]:
    obj = contract.stamp(manifest(), application="driftguard-system/my-service", source=SOURCE, enforcement="deny")
    obj["metadata"].update({
        "uid": "6f7e0c1a-8d2b-4f3e-9a1b-2c3d4e5f6a7b", "resourceVersion": "918273", "generation": 12,
        "creationTimestamp": "2024-05-01T10:01:00Z",
        "managedFields": [{"manager": "driftguard", "operation": "Apply", "apiVersion": "apps/v1",
                           "time": "2024-05-01T10:01:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:spec": {f"f:field{i}": {} for i in range(40)}}}],
    })
    obj["spec"].update({"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                                "maxUnavailable": "25%"}}})
    obj["status"] = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 12}
    return obj


def review(case: str) -> bytes:
    old = live_object()
    new = copy.deepcopy(old)
    if case == "deny":
        new["spec"]["replicas"] = 9
    else:
        new["metadata"]["labels"]["owner"] = "bob"
    request = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "my-service", "namespace": "production", "operation": "UPDATE",
        "userInfo": {"username": "laptop", "groups": ["engineers", "system:authenticated"]},
        "object": new, "oldObject": old, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions",
                    "fieldManager": "kubectl-client-side-apply"},
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


# ---------------------------------------------------------------- the server

def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-venv", type=Path, default=None,
                        help="run the webhook from this virtual environment (e.g. .venv-release: make venv-release)")


def interpreter(venv: Path | None) -> str:
    """The server's interpreter, for the output: its path and version."""
    python = (venv / "bin" / "python") if venv is not None else Path(sys.executable)
    version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return f"{python.resolve()} {version}"


class Server:
    def __init__(self, directory: Path, venv: Path | None = None, **overrides: Any) -> None:
        ca = CertificateAuthority.generate()
        ca.issue_serving("bench", ip_addresses=["127.0.0.1"]).write(directory / "tls.crt", directory / "tls.key")
        (directory / "ca.crt").write_bytes(ca.cert_pem)
        self.ca_file = directory / "ca.crt"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.settings = Settings(host="127.0.0.1", port=port, cert_file=directory / "tls.crt",
                                 key_file=directory / "tls.key", audit_file=directory / "audit.jsonl",
                                 audit_events=False, **overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTGUARD_")}
        self.log = (directory / "webhook.log").open("wb")
        python = (venv / "bin" / "python") if venv is not None else Path(sys.executable)
        script = python.parent / "driftguard"
        command = [str(script)] if script.exists() else [str(python), "-m", "webhook"]
        self.process = subprocess.Popen([*command, "webhook", *self.settings.to_args()], stdout=self.log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.settings.port), 1) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("webhook did not start; see its log")

    def cpu_seconds(self) -> float:
        """User + system CPU of the gunicorn master and its workers so far (from /proc)."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(pid) for pid in children.read_text().split()]
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def run_queue_seconds(self) -> float:
        """Time the server's threads spent runnable but not running so far (``/proc/*/task/*/schedstat``):
        CPU it wanted and the machine's other load did not give it."""
        return run_queue_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        self.log.close()


# ---------------------------------------------------------------- load generators

def run_wrk(url: str, body_file: Path, connections: int, seconds: int, threads: int) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(LUA.replace("{body}", str(body_file)))
    out = subprocess.run(["wrk", "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{seconds}s",
                          "--timeout", "5s", "-s", str(script), url], capture_output=True, text=True, check=True)
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) \d+ \d+ ([\d.]+) ([\d.]+) ([\d.]+)$", out.stdout, re.M)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out.stdout}\n{out.stderr}")
    requests, micros, errors = int(match[1]), int(match[2]), int(match[3])
    return {"rps": requests / (micros / 1e6), "p50": float(match[4]) / 1000, "p99": float(match[5]) / 1000,
            "max": float(match[6]) / 1000, "errors": errors, "requests": requests}


def _python_worker(args: tuple[str, int, str, bytes, float, int]) -> list[float]:
    import http.client

    host, port, ca, body, seconds, connections = args
    context = ssl.create_default_context(cafile=ca)
    pool = [http.client.HTTPSConnection(host, port, context=context) for _ in range(connections)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for connection in pool:  # sequential per process: connections x processes in flight at most
            started = time.perf_counter()
            connection.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
            connection.getresponse().read()
            latencies.append(time.perf_counter() - started)
    return latencies


def run_python(server: Server | FloorServer, body: bytes, connections: int, seconds: int) -> dict[str, float]:
    processes = min(connections, os.cpu_count() or 1)
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    jobs = [("127.0.0.1", server.port, str(server.ca_file), body, float(seconds), n) for n in per]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        started = time.perf_counter()
        results = pool.map(_python_worker, jobs)
        elapsed = time.perf_counter() - started
    latencies = sorted(x for chunk in results for x in chunk)
    quantiles = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": quantiles[49] * 1000, "p99": quantiles[98] * 1000,
            "max": latencies[-1] * 1000, "errors": 0, "requests": len(latencies)}


# ---------------------------------------------------------------- main

def measure(server: Server | FloorServer, body_file: Path, client: str, connections: int,
            seconds: int) -> dict[str, float]:
    if client == "wrk":
        run_wrk(server.url, body_file, connections, 1, 2)  # warm-up: workers import, TLS sessions, caches
    cpu, waited, started = server.cpu_seconds(), server.run_queue_seconds(), time.monotonic()
    if client == "wrk":
        result = run_wrk(server.url, body_file, connections, seconds, 2)
    else:
        result = run_python(server, body_file.read_bytes(), connections, seconds)
    result["cpu_us"] = (server.cpu_seconds() - cpu) / max(1, result["requests"]) * 1e6
    result["runq"] = (server.run_queue_seconds() - waited) / (time.monotonic() - started)
    return result


def row(label: str, result: dict[str, float]) -> str:
    return (f"{label:<34} {result['rps']:>9.0f} {result['p50']:>8.2f} {result['p99']:>8.2f} {result['max']:>8.2f}"
            f" {result['cpu_us']:>9.0f} {result['runq']:>7.2f} {int(result['errors']):>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--case", choices=("allow", "deny"), nargs="+", default=["allow", "deny"])
    parser.add_argument("--matrix", action="store_true", help="compare server configurations at concurrency 16")
    add_server_arguments(parser)
    args = parser.parse_args()

    defaults = Settings()
    configurations: list[dict[str, Any]] = [{}]
    if args.matrix:
        configurations = [{"worker_class": "sync", "workers": n} for n in (2, 4)]
        configurations += [{"worker_class": "gthread", "workers": w, "threads": t} for w, t in ((2, 8), (2, 2))]
        configurations += [{"worker_class": "event", "workers": w, "threads": t}
                           for w, t in ((1, 8), (2, 1), (2, 2), (2, 4), (2, 8), (3, 2))]
        args.concurrency = [16]
    print(f"server interpreter: {interpreter(args.server_venv)}")
    print(f"client: {args.client}; {os.cpu_count()} CPUs; {args.seconds}s per run; review sizes: "
          + ", ".join(f"{case} {len(review(case))} B" for case in args.case))
    print(f"{'server / case / concurrency':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
          f" {'cpu us/req':>9} {'runq/s':>7} {'errors':>6}")
    with tempfile.TemporaryDirectory(prefix="dg-webhook-bench-") as tmp:
        directory = Path(tmp)
        for case in args.case:
            (directory / f"{case}.json").write_bytes(review(case))
        for overrides in configurations:
            server = Server(directory, args.server_venv, **overrides)
            chosen = server.settings
            name = f"{chosen.worker_class} {chosen.workers}w" + (
                f"x{chosen.threads}t" if chosen.worker_class != "sync" else "")
            if not overrides:
                name += " (deployed)" if (chosen.workers, chosen.threads, chosen.worker_class) == (
                    defaults.workers, defaults.threads, defaults.worker_class) else ""
            try:
                for case in args.case:
                    for connections in args.concurrency:
                        result = measure(server, directory / f"{case}.json", args.client, connections, args.seconds)
                        print(row(f"{name} {case} c={connections}", result), flush=True)
            finally:
                server.stop()
        if not args.matrix and "allow" in args.case and args.client == "wrk":
            floor = FloorServer(directory / "floor")
            try:
                result = measure(floor, directory / "allow.json", args.client, 16, args.seconds)
                print(row("Go floor allow c=16", result), flush=True)
            finally:
                floor.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
