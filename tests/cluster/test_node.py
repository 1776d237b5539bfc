"""The cluster itself: a Ready node with real controllers, pods that run, and its network discipline."""

from __future__ import annotations

import time

import pytest

from driftguard.kube import Kube, KubeError
from driftguard.local.cluster import Cluster, ClusterError, host
from driftguard.local.cluster.node import BRIDGE, NODE_NAME, PAUSE_IMAGE
from driftguard.local.controlplane import LAPTOP_USER


def eventually(check, timeout: float = 120.0, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s: {check}")
        time.sleep(interval)


def exists(kube: Kube, path: str) -> bool:
    try:
        kube.request("GET", path)
    except KubeError as error:
        if error.status == 404:
            return False
        raise
    return True


def test_node_ready_with_controllers(cluster_admin: Kube) -> None:
    node = cluster_admin.request("GET", f"/api/v1/nodes/{NODE_NAME}")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "10.244.0.1"
    # kube-controller-manager's ServiceAccount controller made the default ServiceAccount
    eventually(lambda: exists(cluster_admin, "/api/v1/namespaces/default/serviceaccounts/default"))


def test_a_deployment_runs_pods_from_local_images(cluster_admin: Kube) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sleeper", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {"containers": [{"name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}]},
            },
        },
    }
    path = "/apis/apps/v1/namespaces/default/deployments"
    cluster_admin.request("POST", path, body=deployment)
    try:
        eventually(lambda: cluster_admin.request("GET", f"{path}/sleeper").get("status", {}).get("readyReplicas") == 2)
        pods = cluster_admin.request("GET", "/api/v1/namespaces/default/pods", query={"labelSelector": "app=sleeper"})
        assert {pod["status"]["podIP"].rsplit(".", 1)[0] for pod in pods["items"]} == {"10.244.0"}
    finally:
        cluster_admin.request("DELETE", f"{path}/sleeper")


def test_laptop_user_is_cluster_admin_by_rbac(real_cluster: Cluster) -> None:
    with Kube(real_cluster.laptop_kubeconfig) as laptop:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        who = laptop.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review)
    assert who["status"]["userInfo"]["username"] == LAPTOP_USER


def test_forward_guard_is_first_so_pods_never_leave_the_host(real_cluster: Cluster) -> None:
    assert host.guard_is_first(BRIDGE)


def test_a_second_cluster_is_refused(real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(ClusterError, match="already runs on this host"):
        Cluster(tmp_path_factory.mktemp("second")).up(timeout=30)
    # the refusal touched nothing of the running cluster
    assert host.link_exists(BRIDGE)
