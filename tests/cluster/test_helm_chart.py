"""The Helm chart installed into the real cluster, as a Helm user does it, then uninstalled.

Runs after ``make undeploy`` (``LAST`` in conftest.py), into a cluster with no driftguard: ``helm
install`` with the cluster's admin kubeconfig and the locally built image (pull policy ``Never``, so
the pods prove the values reached them), ``driftguard certs install`` (the TLS Secret and caBundle, as
``make deploy`` does), both Deployments rolled out, an Application synced from the in-cluster git
server, and the laptop's out-of-band write denied by the webhook pods through their Service; ``helm
upgrade`` as the README says (no ``--force-conflicts``, no ``certs install`` after it) fails none of a
stream of admitted writes, keeps the caBundle and the aggregated rules, and keeps denying. Then a
plain ``helm uninstall --wait`` (nothing deleted first: Helm deletes the webhook configurations while the
reconciler's leader runs), after which nothing of driftguard is left and the formerly managed object is
the laptop's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.real_cluster import SYSTEM, Deployed, Repo, WriteStream, eventually, webhook_answers

from driftguard.install import manifests_dir
from driftguard.local.cluster import Cluster, image
from driftguard.local.controlplane.binaries import resolve_render_tools

NS = "charted"
APP = "charted"
CHART = manifests_dir().parent / "charts" / "driftguard"
REPO = manifests_dir().parent


class Helm:
    def __init__(self, deployed: Deployed, binary: Path) -> None:
        self.deployed, self.binary = deployed, binary

    def __call__(self, *args: str) -> str:
        result = subprocess.run([str(self.binary), *args], env=self.deployed.env(), capture_output=True, text=True,
                                timeout=360, check=False)
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def fresh(real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """A handle on the cluster with no driftguard in it (make undeploy if an earlier module left one)."""
    deployed = Deployed.on(real_cluster, tmp_path_factory.mktemp("helm") / "cluster-ca", REPO)
    if not deployed.gone("namespace", SYSTEM):
        result = deployed.make("undeploy")
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    eventually(lambda: deployed.gone("namespace", SYSTEM), f"namespace {SYSTEM} gone before helm install")
    return deployed


@pytest.fixture(scope="module")
def helm(fresh: Deployed) -> Iterator[Helm]:
    yield Helm(fresh, resolve_render_tools()["helm"])


@pytest.mark.timeout(600)
def test_helm_install_certs_install_deny_then_uninstall_leaves_nothing(fresh: Deployed, helm: Helm,
                                                                      tmp_path: Path) -> None:
    deployed = fresh
    repository, _, tag = image.IMAGE.rpartition(":")
    helm("install", "driftguard", str(CHART), "--namespace", "default",
         "--set", f"image.repository={repository}", "--set-string", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never", "--set", "reconciler.replicas=1")
    assert json.loads(helm("list", "--namespace", "default", "-o", "json"))[0]["status"] == "deployed"

    # the TLS Secrets and caBundle, then the rollouts: what `make deploy` does after `kubectl apply -k`, and
    # the UI's too — every pod below must be Ready, and the UI's start only once certs install made its Secret
    certs = deployed.driftguard("certs", "install", "--dir", str(deployed.ca_dir))
    assert certs.returncode == 0, certs.stderr
    replicas = {"driftguard-webhook": 2, "driftguard-reconciler": 1, "driftguard-ui": 2}
    for name in replicas:
        deployed.kubectl_run("-n", SYSTEM, "rollout", "status", f"deployment/{name}", "--timeout=180s", timeout=200)
    eventually(lambda: webhook_answers(deployed), "the webhook answering through its Service")
    pods = deployed.must("pods", "-n", SYSTEM)["items"]
    by_component = {c: [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == c]
                    for c in replicas}
    assert {c: len(p) for c, p in by_component.items()} == replicas
    assert len(pods) == sum(replicas.values()), [p["metadata"]["name"] for p in pods]
    for pod in pods:
        [container] = pod["spec"]["containers"]
        assert container["image"] == image.IMAGE and container["imagePullPolicy"] == "Never", container
        assert all(s["ready"] for s in pod["status"]["containerStatuses"]), pod["status"]

    # an Application on the in-cluster git server; its ConfigMap is managed
    cluster = deployed.cluster
    repo = Repo(tmp_path / "work", cluster.git_root / "charted.git", "apps/charted")
    repo.write({"namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n",
                "configmap.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {APP}\n  namespace: {NS}\n"
                                  "data:\n  LOG_LEVEL: info\n"})
    commit = repo.commit("charted: a ConfigMap")
    deployed.apply_application(APP, repo="charted", path="apps/charted", namespace=NS)
    eventually(lambda: deployed.synced(APP, commit), "the Application Synced through the Helm-installed reconciler")

    # the laptop's out-of-band write, denied by the webhook pods through their Service
    patch = deployed.laptop("patch", "configmap", APP, "-n", NS, "--type", "merge",
                                 "-p", '{"data": {"LOG_LEVEL": "debug"}}')
    assert patch.returncode != 0, patch.stdout
    assert 'admission webhook "validate.driftguard.io" denied the request' in patch.stderr, patch.stderr
    assert "data.LOG_LEVEL of ConfigMap" in patch.stderr and "declared in git" in patch.stderr, patch.stderr

    # upgrade as the README says: no --force-conflicts (the chart sets no caBundle, which `certs install`
    # owns, and no rules of the aggregated ClusterRole, which the aggregation controller owns) and no
    # certs install after it; admitted writes to the managed object go on throughout, none failing
    stream = WriteStream(lambda count: deployed.laptop("annotate", "configmap", APP, "-n", NS, f"stream={count}",
                                                       "--overwrite"))
    with stream:
        helm("upgrade", "driftguard", str(CHART), "--namespace", "default", "--reuse-values",
             "--set", "webhook.replicas=3")
        deployed.kubectl_run("-n", SYSTEM, "rollout", "status", "deployment/driftguard-webhook", "--timeout=180s",
                             timeout=200)
        stream.more("the upgrade")
    assert stream.failures() == [], stream.failures()[:3]
    webhook = deployed.must("deployment", "driftguard-webhook", "-n", SYSTEM)
    assert webhook["spec"]["replicas"] == 3 and webhook["status"].get("readyReplicas") == 3, webhook["status"]
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        live = deployed.must(kind, "driftguard")
        assert all(hook["clientConfig"].get("caBundle") for hook in live["webhooks"]), f"{kind}: caBundle blanked"
    role = deployed.must("clusterrole", "driftguard-reconciler")
    assert role.get("rules"), "the aggregated ClusterRole's rules are gone after the upgrade"
    patch = deployed.laptop("patch", "configmap", APP, "-n", NS, "--type", "merge",
                                 "-p", '{"data": {"LOG_LEVEL": "trace"}}')
    assert patch.returncode != 0 and "declared in git" in patch.stderr, patch.stderr

    # uninstall as a Helm user does, nothing first: Helm deletes the webhook configurations before
    # anything else while the reconciler's leader still runs; it must not bring them back for good
    # (they would fail closed on the deleted Service, and --wait would wait for them until its timeout)
    helm("uninstall", "driftguard", "--namespace", "default", "--wait", "--timeout", "3m")
    assert json.loads(helm("list", "--namespace", "default", "-o", "json")) == []
    for kind in ("namespace", "crd", "validatingwebhookconfiguration", "mutatingwebhookconfiguration",
                 "validatingadmissionpolicy", "validatingadmissionpolicybinding", "clusterrole",
                 "clusterrolebinding"):
        for selector in ("app.kubernetes.io/part-of=driftguard", "app.kubernetes.io/name=driftguard"):
            listed = deployed.kubectl_run("get", kind, "-l", selector, "-o", "name").stdout.split()
            left = [name for name in listed if not name.endswith("/driftguard-laptop-cluster-admin")]  # the cluster's
            assert left == [], f"left after helm uninstall: {left}"
    for args in (("namespace", SYSTEM), ("crd", "applications.driftguard.io"),
                 ("validatingwebhookconfiguration", "driftguard"), ("mutatingwebhookconfiguration", "driftguard"),
                 ("validatingadmissionpolicy", "driftguard-protect-webhooks"),
                 ("clusterrole", "driftguard-reconciler"), ("clusterrole", "driftguard-webhook")):
        assert deployed.gone(*args), args

    # nothing blocked: the formerly managed ConfigMap and its namespace are the laptop's again
    patch = deployed.laptop("patch", "configmap", APP, "-n", NS, "--type", "merge",
                                 "-p", '{"data": {"LOG_LEVEL": "debug"}}')
    assert patch.returncode == 0, patch.stderr
    delete = deployed.laptop("delete", "namespace", NS, "--wait=false")
    assert delete.returncode == 0, delete.stderr
    eventually(lambda: deployed.gone("namespace", NS), f"namespace {NS} deleted by the laptop")
