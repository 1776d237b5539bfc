"""`make undeploy` (last in the tier: files run in name order) removes driftguard and blocks nothing."""

from __future__ import annotations

import json

from support.real_cluster import Deployed, eventually

from driftguard.local.cluster.node import PAUSE_IMAGE


def test_make_undeploy_removes_everything_and_leaves_nothing_blocked(deployed: Deployed) -> None:
    # a managed object exists (the story's, or one made here when this test runs alone)
    managed = deployed.kubectl_run("get", "deployments", "-A", "-l", "driftguard.io/managed=true", "-o", "json")
    items = json.loads(managed.stdout)["items"]
    if not items:
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "plain", "namespace": "default"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "plain"}},
                               "template": {"metadata": {"labels": {"app": "plain"}}, "spec": {"containers": [
                                   {"name": "c", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}]}}}}
        deployed.kubectl_run("apply", "-f", "-", stdin=json.dumps(deployment))
        items = [deployment]

    result = deployed.make("undeploy")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

    assert deployed.gone("validatingwebhookconfiguration", "driftguard")
    assert deployed.gone("mutatingwebhookconfiguration", "driftguard")
    eventually(lambda: deployed.gone("namespace", "driftguard-system"), "namespace driftguard-system deleted")
    eventually(lambda: deployed.gone("crd", "applications.driftguard.io"), "the Application CRD deleted")
    assert deployed.gone("clusterrole", "driftguard-reconciler")

    # what driftguard managed is the laptop's again: scale and delete go through
    for item in items:
        meta = item["metadata"]
        target = ["-n", meta["namespace"], f"deployment/{meta['name']}"]
        scale = deployed.laptop("scale", *target, "--replicas=0")
        assert scale.returncode == 0, scale.stderr
        delete = deployed.laptop("delete", *target, "--wait=false")
        assert delete.returncode == 0, delete.stderr
