"""The web UI's speed and size: time to first byte and full render of the Applications page with 500
Applications and of an Application page with 1,000 objects, and the UI process's memory.

A real control plane (or ``--kubeconfig``), real Applications (spec, and a status as the reconciler
writes it) and 1,000 labelled ConfigMaps as one Application's inventory; the UI is ``driftguard ui``
as a process (gunicorn, the event worker, TLS), signed in as the admin user, every read filtered by
SubjectAccessReviews as in production (cold: the first request asks them; warm: cached answers).

    .venv/bin/python bench/bench_ui.py [--apps 500] [--objects 1000] [--requests 20]
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import secrets
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reconciler_bench import create_namespace, environment, parser

from certs.authority import CertificateAuthority
from driftguard.kube import Kube
from driftguard.local.controlplane.processes import free_port

NAMESPACES = 5


def application(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"project": "default", "enforcement": "deny",
                     "source": {"repoURL": "https://git.example.org/acme/apps.git", "targetRevision": "main",
                                "path": f"apps/{name}"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}}


def status(inventory: list[dict[str, str]], now: str) -> dict[str, Any]:
    return {"sync": {"status": "Synced", "revision": "a" * 40, "shortRevision": "aaaaaaa", "author": "ann@example.org",
                     "committedAt": now, "message": "bump the image"},
            "health": {"status": "Healthy", "message": f"{len(inventory)} objects healthy"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "in sync",
                            "lastTransitionTime": now}],
            "inventoryCount": len(inventory), "inventory": inventory, "lastSyncTime": now, "drift": [],
            "history": [{"id": i, "revision": "a" * 40, "author": "ann@example.org", "commitTime": now,
                         "startedAt": now, "finishedAt": now, "result": "Succeeded", "initiator": "automated",
                         "message": "ok"} for i in range(10)]}


def populate(admin: Kube, apps: int, objects: int) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spaces = [create_namespace(admin, f"bench-ui-{i}") for i in range(NAMESPACES)]

    def one_app(index: int) -> None:
        namespace, name = spaces[index % NAMESPACES], f"app-{index:04d}"
        path = f"/apis/driftguard.io/v1alpha1/namespaces/{namespace}/applications"
        admin.request("POST", path, body=application(namespace, name))
        inventory = [{"id": f"{namespace}_{name}-cm__ConfigMap", "v": "v1"}]
        admin.request("PATCH", f"{path}/{name}/status", body={"status": status(inventory, now)},
                      content_type="application/merge-patch+json")

    big_ns, big = spaces[0], "big"

    def one_object(index: int) -> None:
        admin.request("POST", f"/api/v1/namespaces/{big_ns}/configmaps", body={
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{index:04d}", "labels": {"driftguard.io/managed": "true"},
                         "annotations": {"driftguard.io/application": f"{big_ns}/{big}"}},
            "data": {"key": f"value-{index}"}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_app, range(apps - 1)))
        list(pool.map(one_object, range(objects)))
    path = f"/apis/driftguard.io/v1alpha1/namespaces/{big_ns}/applications"
    admin.request("POST", path, body=application(big_ns, big))
    inventory = [{"id": f"{big_ns}_cm-{i:04d}__ConfigMap", "v": "v1"} for i in range(objects)]
    admin.request("PATCH", f"{path}/{big}/status", body={"status": status(inventory, now)},
                  content_type="application/merge-patch+json")
    return big_ns, big


class Client:
    def __init__(self, port: int, ca: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))
        self.cookie = ""

    def request(self, method: str, path: str, body: str = "") -> tuple[float, float, int, bytes, Any]:
        """(seconds to the first byte, seconds to the last, status, body, headers) on a fresh connection."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=60)
        conn.connect()
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        conn.request(method, path, body=body or None, headers=headers)
        answer = conn.getresponse()
        first = time.perf_counter() - started
        data = answer.read()
        full = time.perf_counter() - started
        found = answer.getheader("Set-Cookie")
        if found:
            self.cookie = found.split(";", 1)[0]
        conn.close()
        return first, full, answer.status, data, answer


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (gunicorn's master and workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def measure(client: Client, path: str, count: int) -> dict[str, float]:
    cold_first, cold_full, code, body, _ = client.request("GET", path)
    assert code == 200, (path, code, body[:300])
    firsts, fulls = [], []
    for _ in range(count):
        first, full, code, _, _ = client.request("GET", path)
        assert code == 200
        firsts.append(first)
        fulls.append(full)
    return {"cold_ttfb": cold_first, "cold_full": cold_full, "ttfb_p50": statistics.median(firsts),
            "full_p50": statistics.median(fulls), "full_p90": sorted(fulls)[int(len(fulls) * 0.9) - 1],
            "bytes": float(len(body))}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--apps", type=int, default=500)
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--requests", type=int, default=20)
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        started = time.monotonic()
        big_ns, big = populate(admin, args.apps, args.objects)
        print(f"created {args.apps} Applications and {args.objects} ConfigMaps in {time.monotonic() - started:.1f}s")
        ca, _ = CertificateAuthority.load_or_generate(scratch / "ui", "bench-ui-ca")
        serving = ca.issue_serving("ui", ["localhost"], ["127.0.0.1"])
        serving.write(scratch / "ui" / "tls.crt", scratch / "ui" / "tls.key")
        token = secrets.token_urlsafe(24)
        (scratch / "login").write_text(token + "\n")
        port = free_port()
        log = (scratch / "ui.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "driftguard.cli", "ui", "--kubeconfig", str(kubeconfig),
                                    "--port", str(port), "--cert-file", str(scratch / "ui" / "tls.crt"),
                                    "--key-file", str(scratch / "ui" / "tls.key"),
                                    "--login-token-file", str(scratch / "login"), "--login-user", "admin",
                                    "--login-groups", "system:masters", "--log-format", "text"],
                                   stdout=log, stderr=log)
        try:
            client = Client(port, scratch / "ui" / "ca.crt")
            _until(lambda: _ready(client), "the UI to answer /readyz")
            idle = rss_kib(process.pid)
            _, _, _, page, _ = client.request("GET", "/login")
            csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page)
            assert csrf is not None
            form = urllib.parse.urlencode({"csrf_token": csrf.group(1).decode(), "token": token})
            _, _, code, _, _ = client.request("POST", "/login", form)
            assert code == 302, code
            figures = {
                f"Applications page, {args.apps} Applications": measure(client, "/", args.requests),
                f"Application page, {args.objects} objects": measure(client, f"/applications/{big_ns}/{big}",
                                                                    args.requests),
            }
            busy = rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        for name, f in figures.items():
            print(f"{name}: cold TTFB {f['cold_ttfb'] * 1000:.0f} ms, full {f['cold_full'] * 1000:.0f} ms; "
                  f"warm TTFB p50 {f['ttfb_p50'] * 1000:.0f} ms, full render p50 {f['full_p50'] * 1000:.0f} ms "
                  f"p90 {f['full_p90'] * 1000:.0f} ms; {f['bytes'] / 1024:.0f} KiB of HTML")
        print(f"UI process memory (gunicorn master + 1 worker, RSS): {idle / 1024:.0f} MiB idle, "
              f"{busy / 1024:.0f} MiB after the runs")
        print(json.dumps({"figures": figures, "rss_kib": {"idle": idle, "busy": busy}}))


def _ready(client: Client) -> bool:
    try:
        return client.request("GET", "/readyz")[2] == 200
    except OSError:
        return False


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    main()
