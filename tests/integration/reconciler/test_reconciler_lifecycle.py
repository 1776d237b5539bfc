"""Lifecycle: a reconciler killed mid-sync converges after restart; two replicas never both act;
the HTTP surface and ``driftguard status``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard.cli import main as driftguard_main
from driftguard.kube import Kube
from reconciler.controller import Settings
from reconciler.service import Options, Service, start

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def managed_configmaps(admin: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    items = admin.request("GET", f"/api/v1/namespaces/{namespace}/configmaps",
                          query={"labelSelector": "driftguard.io/managed=true"})["items"]
    return {i["metadata"]["name"]: i for i in items}


@contextlib.contextmanager
def reconciler_process(harness: Harness, tmp_path: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / f"reconciler-{time.monotonic_ns()}.log").open("wb")
    command = [sys.executable, "-m", "driftguard.cli", "reconcile", "--kubeconfig", str(harness.kubeconfig),
               "--namespace", harness.namespace, "--listen", f"127.0.0.1:{port}",
               "--cache-dir", str(tmp_path / "cache"), "--lease-namespace", "driftguard-system",
               "--lease-name", f"lease-{harness.namespace}"[:63], "--identity", "replica-0",
               "--apply-concurrency", "1", "--allow-local-repos", *extra]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": ""})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_killed_mid_sync_converges_after_restart(harness: Harness, repo: Repo, tmp_path: Path) -> None:
    count = 400
    for part in range(4):
        repo.write(f"app/part-{part}.yaml", [configmap(f"cm-{i:03d}", {"i": str(i)})
                                               for i in range(part * 100, (part + 1) * 100)])
    repo.commit("400 ConfigMaps")
    harness.make_app("bulk", repo)
    port = free_port()
    with reconciler_process(harness, tmp_path, port) as process:
        wait_for(lambda: len(managed_configmaps(harness.admin, harness.namespace)) >= 20, timeout=30,
                 interval=0.01, what="the sync under way")
        process.send_signal(signal.SIGKILL)
        process.wait()
    created = len(managed_configmaps(harness.admin, harness.namespace))
    assert created < count, "the sync finished before the kill; the test proves nothing"

    # While it is down, git drops the second half (some of which it created) and changes one object.
    repo.remove("app/part-2.yaml")
    repo.remove("app/part-3.yaml")
    repo.write("app/part-0.yaml", [configmap(f"cm-{i:03d}", {"i": str(i), "v": "2"}) for i in range(100)])
    sha = repo.commit("half of them, v2")

    with reconciler_process(harness, tmp_path, port):
        harness.wait_synced("bulk", sha, timeout=60)

    live = managed_configmaps(harness.admin, harness.namespace)
    assert sorted(live) == [f"cm-{i:03d}" for i in range(200)], "duplicates, losses or leftovers"
    assert all(live[f"cm-{i:03d}"]["data"] == {"i": str(i), "v": "2"} for i in range(100))
    status = harness.status("bulk")
    assert status["inventoryCount"] == 200
    assert {e["id"].split("_")[1] for e in status["inventory"]} == set(live)


def leader_service(harness: Harness, identity: str, lease: str) -> Service:
    service = start(Options(
        kubeconfig=str(harness.kubeconfig), namespace=harness.namespace, listen="127.0.0.1:0",
        cache_dir=harness.cache_dir / identity, leader_elect=True, lease_namespace="driftguard-system",
        lease_name=lease, lease_duration=2.0, identity=identity, refresh_token="s3cret",
        settings=Settings(namespace=harness.namespace, cache_dir=harness.cache_dir / identity, watch_timeout=5.0,
                          allow_local_repos=True),
    ))
    harness.services.append(service)
    return service


def post(url: str, token: str = "") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", data=b"{}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_two_replicas_one_leader_and_failover(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    first = repo.commit("one")
    harness.make_app("svc", repo, refreshInterval="1h")  # only pushes and failover trigger syncs
    lease = f"lease-{harness.namespace}"[:63]
    a = leader_service(harness, "replica-a", lease)
    wait_for(lambda: a.controller.leading, what="replica-a leads")
    b = leader_service(harness, "replica-b", lease)
    harness.wait_synced("svc", first)
    time.sleep(1.0)
    assert a.controller.leading and not b.controller.leading
    assert not b.controller.states, "the standby must not reconcile"

    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))
    second = repo.commit("two")
    assert post(b.url + f"/refresh/{harness.namespace}/svc", "s3cret")[0] == 202  # the standby forwards the push
    harness.wait_synced("svc", second, timeout=5)

    a.stop()  # a clean stop releases the Lease
    wait_for(lambda: b.controller.leading, timeout=5, what="replica-b takes over")
    repo.write("app/a.yaml", configmap("alpha", {"v": "3"}))
    third = repo.commit("three")
    post(b.url + "/refresh", "s3cret")
    harness.wait_synced("svc", third)
    lease_obj = harness.admin.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/driftguard-system/leases/"
                                             f"{lease}")
    assert lease_obj["spec"]["holderIdentity"] == "replica-b"


def test_http_surface(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    sha = repo.commit("one")
    harness.make_app("svc", repo)
    service = start(Options(kubeconfig=str(harness.kubeconfig), namespace=harness.namespace, listen="127.0.0.1:0",
                            cache_dir=harness.cache_dir, leader_elect=False, refresh_token="s3cret",
                            settings=Settings(allow_local_repos=True)))
    harness.services.append(service)
    harness.wait_synced("svc", sha)
    with urllib.request.urlopen(service.url + "/healthz") as response:
        assert response.status == 200
    with urllib.request.urlopen(service.url + "/readyz") as response:
        assert json.loads(response.read()) == {"ready": True, "leader": True}
    with urllib.request.urlopen(service.url + "/metrics") as response:
        metrics = response.read().decode()
    assert f'driftguard_managed_objects{{application="{harness.namespace}/svc"}} 1.0' in metrics
    assert 'driftguard_apiserver_requests_total{verb="apply"}' in metrics
    assert post(service.url + "/refresh")[0] == 401
    unprotected = start(Options(kubeconfig=str(harness.kubeconfig), namespace=harness.namespace,
                                listen="127.0.0.1:0", cache_dir=harness.cache_dir / "no-token", leader_elect=False))
    harness.services.append(unprotected)
    code, body = post(unprotected.url + "/refresh")
    assert (code, "POST /refresh is disabled" in body["error"]) == (403, True), "no token configured: never open"
    assert post(service.url + "/refresh", "wrong")[0] == 401
    assert post(service.url + f"/refresh/{harness.namespace}/nope", "s3cret")[0] == 404
    assert post(service.url + f"/refresh/{harness.namespace}/svc", "s3cret") == (
        202, {"refreshed": [f"{harness.namespace}/svc"]})


def test_status_command(harness: Harness, repo: Repo, cluster: Any) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    sha = repo.commit("one")
    harness.make_app("svc", repo)
    harness.make_app("broken", "/nonexistent/repo")
    harness.start()
    harness.wait_synced("svc", sha)
    harness.wait_condition("broken", "SourceReady", "False")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert driftguard_main(["status", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", harness.namespace]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PROJECT", "SYNC", "HEALTH", "REVISION", "OBJECTS", "DRIFT",
                                "LAST", "SYNC", "MESSAGE"]
    broken, svc = (line.split() for line in lines[1:])
    assert svc[:8] == [harness.namespace, "svc", "default", "Synced", "Healthy", sha[:7], "1", "0"]
    assert broken[:4] == [harness.namespace, "broken", "default", "Error"] and "/nonexistent/repo" in lines[1]

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        driftguard_main(["status", "--kubeconfig", str(cluster.admin_kubeconfig), "-A", "--json"])
    listed = {(a["namespace"], a["name"]): a for a in json.loads(out.getvalue())}
    assert listed[(harness.namespace, "svc")]["status"]["sync"]["revision"] == sha


def test_deleted_application_stops_self_heal(harness: Harness, repo: Repo, laptop: Kube) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("one"))
    harness.admin.request("DELETE", f"/apis/driftguard.io/v1alpha1/namespaces/{harness.namespace}/applications/svc")
    wait_for(lambda: not harness.service.controller.states, what="the Application forgotten")  # type: ignore[union-attr]
    laptop.request("PATCH", f"/api/v1/namespaces/{harness.namespace}/configmaps/alpha", body={"data": {"v": "9"}},
                   content_type="application/merge-patch+json")
    time.sleep(0.5)
    assert harness.cm("alpha")["data"] == {"v": "9"}  # type: ignore[index]
