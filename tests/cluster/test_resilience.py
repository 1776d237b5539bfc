"""What only a real cluster can show: replicas, a PodDisruptionBudget, readiness, Lease failover,
certificate rotation through a mounted Secret, and real controllers writing to managed objects.

One Application (warn mode, so a laptop edit is admitted and self-heal is observable) on the cluster's
https git server; a stream of admitted writes through the webhook while a webhook pod is deleted or the
serving certificate is rotated; the Lease holder deleted while git moves on; an HPA scaling a managed
Deployment whose replicas git does not declare.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from support.real_cluster import SYSTEM, Deployed, Repo, WriteStream, eventually, pause_deployment

from driftguard.local.cluster.node import PAUSE_IMAGE

NS = "resilience"
APP = "resilient"


def deployment(cpu: str = "10m") -> str:
    """git declares no replicas: they are the cluster's (the HPA's)."""
    return pause_deployment(APP, NS, replicas=None, container="app", cpu=cpu)


class Fixture:
    def __init__(self, deployed: Deployed, repo: Repo) -> None:
        self.deployed, self.repo = deployed, repo
        self.get, self.laptop = deployed.get, deployed.laptop

    def deploy(self) -> dict[str, Any]:
        return self.deployed.must("deployment", APP, "-n", NS)

    def pods(self, component: str) -> list[dict[str, Any]]:
        pods = self.get("pods", "-n", SYSTEM, "-l", f"app.kubernetes.io/name=driftguard-{component}") or {}
        return [p for p in pods.get("items", []) if not p["metadata"].get("deletionTimestamp")]

    def lease_holder(self) -> str:
        lease = self.get("lease", "driftguard-reconciler", "-n", SYSTEM) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def write_stream(self) -> WriteStream:
        """Admitted writes as the laptop user: an undeclared annotation on the managed Deployment (the webhook
        is called and allows it)."""
        return WriteStream(lambda count: self.laptop("annotate", f"deployment/{APP}", "-n", NS, f"stream={count}",
                                                     "--overwrite"))


@pytest.fixture(scope="module")
def app(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    repo = Repo(tmp_path_factory.mktemp("resilience") / "work", deployed.cluster.git_root / "resilience.git",
                path="apps/resilient")
    repo.write({"namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n",
                "deployment.yaml": deployment()})
    first = repo.commit("resilient: initial")
    deployed.apply_application(APP, repo="resilience", path="apps/resilient", namespace=NS, enforcement="warn")
    fixture = Fixture(deployed, repo)
    eventually(lambda: deployed.synced(APP, first) and fixture.get("deployment", APP, "-n", NS) is not None,
               "the resilience Application synced")
    yield fixture


def test_pods_ready_two_replicas_nonroot_readonly_with_pdb(deployed: Deployed, app: Fixture) -> None:
    for component in ("webhook", "reconciler"):
        pods = app.pods(component)
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        for pod in pods:
            assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["status"]
            name = pod["metadata"]["name"]
            uid = deployed.kubectl_run("exec", "-n", SYSTEM, name, "--", "id", "-u").stdout.strip()
            assert uid == "65532"
            write = deployed.kubectl_run("exec", "-n", SYSTEM, name, "--", "touch", "/opt/x", check=False)
            assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    pdb = app.get("pdb", "driftguard-webhook", "-n", SYSTEM) or {}
    assert (pdb.get("status") or {}).get("currentHealthy") == 2
    assert (pdb.get("status") or {}).get("disruptionsAllowed", 0) >= 1


def test_deleting_a_webhook_pod_during_writes_fails_no_admission(app: Fixture) -> None:
    victim = app.pods("webhook")[0]["metadata"]["name"]
    with app.write_stream() as stream:
        app.deployed.kubectl_run("delete", "pod", "-n", SYSTEM, victim, "--wait=false")
        eventually(lambda: victim not in {p["metadata"]["name"] for p in app.pods("webhook")}
                   and len(app.pods("webhook")) == 2
                   and all(c["ready"] for p in app.pods("webhook") for c in p["status"]["containerStatuses"]),
                   "a replacement webhook pod Ready")
        stream.more("the replacement")
    assert stream.failures() == [], stream.failures()[:3]
    assert len(stream.results) >= 6


def served_serial(pod_ip: str, ca_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    with socket.create_connection((pod_ip, 8443), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der or b"").serial_number


def test_rotating_the_serving_certificate_restarts_nothing_and_fails_no_admission(app: Fixture) -> None:
    deployed = app.deployed
    ca_file = deployed.ca_dir / "ca.crt"
    pods = app.pods("webhook")
    before = {p["metadata"]["name"]: (p["status"]["containerStatuses"][0]["restartCount"],
                                     served_serial(p["status"]["podIP"], ca_file)) for p in pods}
    with app.write_stream() as stream:
        rotated = deployed.driftguard("certs", "install", "--dir", str(deployed.ca_dir))
        assert rotated.returncode == 0, rotated.stderr

        def all_rotated() -> bool:
            return all(served_serial(p["status"]["podIP"], ca_file) != before[p["metadata"]["name"]][1]
                       for p in pods)

        eventually(all_rotated, "both webhook pods serving the new certificate (kubelet updates the Secret volume)",
                   timeout=240)
        stream.more("the rotation")
    assert stream.failures() == [], stream.failures()[:3]
    after = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in app.pods("webhook")}
    assert after == {name: restarts for name, (restarts, _) in before.items()}


def test_deleting_the_lease_holder_hands_over_and_sync_and_self_heal_go_on(app: Fixture) -> None:
    holder = eventually(app.lease_holder, "a reconciler holding the Lease")
    assert len([p for p in app.pods("reconciler") if p["metadata"]["name"] != holder]) == 1
    app.deployed.kubectl_run("delete", "pod", "-n", SYSTEM, holder, "--wait=false")

    def new_leader() -> str:
        # the standby, or the ReplicaSet's replacement when it starts first: the deleted pod released
        # the Lease on SIGTERM, so whichever live replica asks next takes it without waiting for expiry
        current = app.lease_holder()
        live = {p["metadata"]["name"] for p in app.pods("reconciler")}
        return current if current and current != holder and current in live else ""

    try:
        eventually(new_leader, f"another reconciler takes the Lease from {holder}", timeout=120)
    except AssertionError as error:
        lease = app.get("lease", "driftguard-reconciler", "-n", SYSTEM)
        logs = {name: app.deployed.kubectl_run("logs", "-n", SYSTEM, name, "--tail=30", check=False).stdout
                for name in (p["metadata"]["name"] for p in app.pods("reconciler"))}
        raise AssertionError(f"{error}\nlease: {lease}\nlogs: {json.dumps(logs, indent=1)}") from None

    # git moves on: the new leader syncs it
    app.repo.write({"deployment.yaml": deployment(cpu="20m")})
    app.repo.commit("resilient: more cpu")
    eventually(lambda: app.deploy()["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
               == "20m", "the new leader applies the commit")

    # a laptop edit (warn mode: admitted with a warning) is healed by the new leader
    edit = app.laptop("set", "image", f"deployment/{APP}", "-n", NS, "app=driftguard.local/pause:edited")
    assert edit.returncode == 0 and "Warning:" in edit.stderr, edit.stderr
    eventually(lambda: app.deploy()["spec"]["template"]["spec"]["containers"][0]["image"] == PAUSE_IMAGE,
               "self-heal by the new leader")


def test_an_hpa_scaling_a_deployment_git_leaves_replicas_to_is_admitted(app: Fixture) -> None:
    assert app.deploy()["spec"]["replicas"] == 1  # git declares no replicas: the default
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "minReplicas": 3, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    }
    app.deployed.kubectl_run("apply", "-f", "-", stdin=json.dumps(hpa))
    try:
        # kube-controller-manager's HPA controller raises replicas to minReplicas without any metrics,
        # through the scale subresource, as system:serviceaccount:kube-system:horizontal-pod-autoscaler
        eventually(lambda: app.deploy()["spec"]["replicas"] == 3, "the HPA scales the managed Deployment to 3")
        # and the reconciler does not fight it (git does not declare replicas)
        status = (app.get("application", APP, "-n", SYSTEM) or {}).get("status") or {}
        assert not [d for d in status.get("drift") or [] if "replicas" in json.dumps(d)], status.get("drift")
        assert app.deploy()["spec"]["replicas"] == 3
    finally:
        app.deployed.kubectl_run("delete", "hpa", APP, "-n", NS, "--ignore-not-found")
