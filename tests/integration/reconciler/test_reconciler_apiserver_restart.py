"""The reconciler survives a kube-apiserver restart, and an API server that is gone for ~5 s.

A *dedicated* control plane (not the session one other tests share) is started in a temp dir, given
the CRD and the reconciler's ServiceAccount and RBAC, and a real ``driftguard reconcile`` process runs
against it **with leader election** and the shipped Lease settings (15 s lease, 10 s renew deadline):
that is how the Deployment and local mode run it, and the strictest case, since a leader that cannot
renew for 10 s must stop acting.

Two outages, each followed by the same checks, without touching the reconciler:

* **short** — etcd and kube-apiserver killed (1 s grace) and started again ~5 s after they went away:
  within the renew deadline, so the leader rides it out in place;
* **restart** — a graceful stop and start in the same directory (same ports, same etcd data, same
  ServiceAccount signing keys, so the reconciler's token stays valid). kube-apiserver stops listening
  at once but lingers 10 s on the reconciler's open watches before ``ControlPlane.stop`` kills it, so
  the API is gone for longer than the renew deadline: the leader steps down, and must lead again.

After each: (1) a laptop edit of a declared field is reverted within ``BOUND`` s; (2) a new commit
pushed with ``POST /refresh`` is applied and reported in status; the process is the one we started,
``/healthz`` answers, it holds the Lease, and its log names the outage and has no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
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
from support.reconciler_harness import (
    SA_NAME,
    SA_NAMESPACE,
    Harness,
    Repo,
    configmap,
    install_reconciler_access,
    wait_for,
)

from driftguard.kube import Kube, KubeError
from driftguard.local.controlplane import ControlPlane, resolve_binaries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "restart-test-refresh-token"
OUTAGE = 5.0  # seconds with no API server in the short outage
BOUND = 15.0  # seconds allowed for each recovery step after the restart
APP, TARGET, IDENTITY = "restart", "restart-target", "restart-replica"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    if os.environ.get("DRIFTGUARD_TEST_KUBECONFIG"):
        pytest.skip("restarts driftguard's own control plane; an external cluster cannot be restarted")
    control_plane = ControlPlane(tmp_path / "plane", resolve_binaries())
    control_plane.start()
    try:
        yield control_plane
    finally:
        control_plane.stop()
        shutil.rmtree(control_plane.directory / "etcd", ignore_errors=True)  # WAL files are 64 MB each


class Reconciler:
    """``driftguard reconcile`` as a child process in its own process group, logging to a file."""

    def __init__(self, kubeconfig: Path, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "reconciler.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "driftguard.cli", "reconcile", "--kubeconfig", str(kubeconfig),
                   "--namespace", SA_NAMESPACE, "--listen", f"127.0.0.1:{self.port}",
                   "--cache-dir", str(tmp_path / "git-cache"), "--leader-elect", "--identity", IDENTITY,
                   "--allow-local-repos"]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "POD_NAME": "", "DRIFTGUARD_REFRESH_TOKEN": TOKEN},
                                        start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()
        except urllib.error.URLError as e:  # not listening (yet, or any more)
            return 0, str(e.reason)

    def refresh(self, name: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/refresh/{SA_NAMESPACE}/{name}", method="POST", data=b"",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def assert_alive(self, when: str) -> None:
        assert self.process.poll() is None, (
            f"the reconciler exited ({self.process.returncode}) {when}; log:\n{self.tail()}")
        status, body = self.get("/healthz")
        assert status == 200, f"/healthz answered {status} {body!r} {when}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own child's group (start_new_session)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@pytest.fixture
def reconciler_factory(tmp_path: Path) -> Iterator[list[Reconciler]]:
    started: list[Reconciler] = []
    yield started
    for r in started:
        r.stop()


def lease_holder(admin: Kube) -> str:
    lease = admin.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{SA_NAMESPACE}/leases/"
                                 "driftguard-reconciler")
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def colour(harness: Harness) -> str:
    return str((harness.cm("settings", TARGET) or {}).get("data", {}).get("colour"))


def test_reconciler_survives_apiserver_outage_and_restart(
    plane: ControlPlane, repo: Repo, tmp_path: Path, reconciler_factory: list[Reconciler]
) -> None:
    began = time.monotonic()
    with plane.admin() as admin, Kube(plane.laptop_kubeconfig) as laptop:
        install_reconciler_access(admin)
        admin.request("POST", "/api/v1/namespaces",
                      body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TARGET}})
        kubeconfig = plane.kubeconfig_for_serviceaccount(SA_NAMESPACE, SA_NAME)
        harness = Harness(admin, SA_NAMESPACE, kubeconfig, tmp_path / "unused-cache")

        repo.write("app/settings.yaml", configmap("settings", {"colour": "blue"}))
        sha = repo.commit("settings: blue")
        reconciler = Reconciler(kubeconfig, tmp_path)
        reconciler_factory.append(reconciler)
        wait_for(lambda: reconciler.get("/readyz")[0] == 200 if reconciler.process.poll() is None else None,
                 timeout=15, what="the reconciler ready")
        harness.make_app(APP, repo, destination=TARGET, refreshInterval="1s")
        harness.wait_synced(APP, sha, timeout=15)
        assert colour(harness) == "blue"
        wait_for(lambda: lease_holder(admin) == IDENTITY, timeout=5, what="our replica leads")

        def outage(label: str, grace: float, down_for: float) -> float:
            """Stop etcd + kube-apiserver, keep them down ``down_for`` s, start them; the API's downtime."""
            went = time.monotonic()
            plane.stop(grace=grace)
            with pytest.raises(KubeError):
                admin.request("GET", "/version")
            reconciler.assert_alive(f"while the API server is down ({label})")
            time.sleep(max(0.0, down_for - (time.monotonic() - went)))
            reconciler.assert_alive(f"{time.monotonic() - went:.0f}s without an API server ({label})")
            plane.start()  # same directory: same ports, etcd data and ServiceAccount signing keys
            assert admin.request("GET", "/version")["major"], "the admin kubeconfig works again (same port)"
            return time.monotonic() - went

        def recovers(label: str, old: str, new: str) -> tuple[float, float]:
            """(1) laptop drift reverted, (2) a pushed commit applied; the seconds each took."""
            drifted = time.monotonic()
            laptop.request("PATCH", f"/api/v1/namespaces/{TARGET}/configmaps/settings",
                           body={"data": {"colour": "red"}}, content_type="application/merge-patch+json")
            try:
                wait_for(lambda: colour(harness) == old, timeout=BOUND, interval=0.05,
                         what=f"the laptop's drift reverted after the {label}")
                heal = time.monotonic() - drifted
                repo.write("app/settings.yaml", configmap("settings", {"colour": new}))
                sha = repo.commit(f"settings: {new}")
                pushed = time.monotonic()
                assert reconciler.refresh(APP) == {"refreshed": [f"{SA_NAMESPACE}/{APP}"]}
                harness.wait_synced(APP, sha, timeout=BOUND)
                assert colour(harness) == new
            except AssertionError as e:
                raise AssertionError(f"{e}\nreconciler log:\n{reconciler.tail()}") from None
            applied = time.monotonic() - pushed
            reconciler.assert_alive(f"after the {label}")
            assert reconciler.get("/readyz")[0] == 200
            wait_for(lambda: lease_holder(admin) == IDENTITY, timeout=5, what=f"our replica leads after the {label}")
            return heal, applied

        # -- short: the API server gone for ~5 s ------------------------------------------------
        mark = len(reconciler.log())
        short = outage("short outage", grace=1.0, down_for=OUTAGE - 2.5)  # starting takes ~2.5 s
        short_heal, short_apply = recovers("short outage", "blue", "green")
        log = reconciler.log()[mark:]
        assert "leader election: Lease driftguard-system/driftguard-reconciler" in log, log
        assert "Connection refused" in log, log
        if short < 7.0:  # + up to one retry period (2 s) since the last renewal: inside the 10 s deadline
            assert "lost the Lease" not in log, f"a {short:.1f}s outage cost the Lease:\n{log}"

        # -- restart: a graceful stop (kube-apiserver lingers 10 s on open watches) and a start -----
        mark = len(reconciler.log())
        restart = outage("restart", grace=10.0, down_for=0.0)
        restart_heal, restart_apply = recovers("restart", "green", "yellow")
        log = reconciler.log()[mark:]
        if restart > 11.0:  # past the renew deadline: stepped down, then led again in the same process
            assert "lost the Lease" in log and "campaigning again" in log, log
            assert log.count(f"{IDENTITY} became the leader") == 1, log

        log = reconciler.log()
        assert "Traceback" not in log and "Exception in thread" not in log, log
        reconciler.stop()
        assert reconciler.process.returncode == 0, reconciler.tail()
        assert lease_holder(admin) == "", "a clean stop releases the Lease"
        print(f"\nshort outage {short:.1f}s: drift reverted in {short_heal:.2f}s, commit applied in "
              f"{short_apply:.2f}s; restart outage {restart:.1f}s: drift reverted in {restart_heal:.2f}s, "
              f"commit applied in {restart_apply:.2f}s; test {time.monotonic() - began:.1f}s")
