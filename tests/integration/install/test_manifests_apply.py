"""The kustomize base is proven on a real API server (no Docker here, so no kind in CI).

`kubectl kustomize` renders exactly the objects driftguard's installer reads; a server-side dry run of
the whole base is accepted; a real apply makes the CRD Established, the webhook configurations are
accepted by admission registration validation, and the RBAC objects exist with their rules.
The webhook configurations point at a Service with no pods here, so they are removed at the end
(failurePolicy Fail would otherwise block managed objects for the rest of the session).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from driftguard.install import INSTALL_MANAGER, base_manifests, manifests_dir
from driftguard.kube import Kube
from driftguard.kube.resources import Cluster
from driftguard.local.controlplane import ControlPlane
from reconciler import crd

pytestmark = pytest.mark.integration

WEBHOOKS = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")


@pytest.fixture
def installer(admin: Kube) -> Iterator[Cluster]:
    yield Cluster(admin, field_manager=INSTALL_MANAGER)
    for resource in WEBHOOKS:
        admin.request("DELETE", f"/apis/admissionregistration.k8s.io/v1/{resource}/driftguard")


def test_kubectl_kustomize_renders_what_the_installer_reads(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl is not None
    rendered = subprocess.run([str(control_plane.kubectl), "kustomize", str(manifests_dir())],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    kustomized = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d}
    assert kustomized == {(m.obj["kind"], m.obj["metadata"]["name"]) for m in base_manifests()}


def test_dry_run_then_apply_the_whole_base(installer: Cluster, admin: Kube) -> None:
    manifests = base_manifests()
    [namespace] = [m for m in manifests if m.obj["kind"] == "Namespace"]
    installer.apply(namespace.obj)  # namespaced objects can only be dry-run into an existing namespace

    crds = [m for m in manifests if m.obj["kind"] == "CustomResourceDefinition"]
    for manifest in crds + [m for m in manifests if m not in crds]:
        installer.apply(manifest.obj, dry_run=True)

    for manifest in crds + [m for m in manifests if m not in crds]:
        installer.apply(manifest.obj)
    assert {c.obj["metadata"]["name"] for c in crds} == {"applications.driftguard.io", "projects.driftguard.io"}
    for manifest in crds:
        crd.wait_established(installer, manifest.obj, timeout=30)

    for resource in WEBHOOKS:
        hooks = admin.request("GET", f"/apis/admissionregistration.k8s.io/v1/{resource}/driftguard")["webhooks"]
        assert hooks, f"{resource}/driftguard has no webhooks"
        # Fail closed, except the advisory one: it only warns on HPA creates (HPAs are not managed objects).
        assert all(h["failurePolicy"] == ("Ignore" if h["name"] == "autoscalers.driftguard.io" else "Fail")
                   and h["timeoutSeconds"] <= 3 for h in hooks)
    role = admin.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/driftguard-webhook")
    assert {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]} in role["rules"]
    binding = admin.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/driftguard-reconciler")
    assert binding["subjects"][0]["name"] == "driftguard-reconciler"
    deployment = admin.request("GET", "/apis/apps/v1/namespaces/driftguard-system/deployments/driftguard-webhook")
    assert deployment["spec"]["replicas"] == 2
    printed = json.dumps(admin.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                              "applications.driftguard.io")["spec"]["versions"][0])
    assert "additionalPrinterColumns" in printed


def test_kubectl_get_shows_each_applications_project(control_plane: ControlPlane, admin: Kube, namespace: str) -> None:
    assert control_plane.kubectl is not None
    crd.install(Cluster(admin))
    admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{namespace}/projects", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Project", "metadata": {"name": "team-a"},
        "spec": {"sourceRepos": ["https://git.example.com/team-a/*"], "destinations": [{"namespace": "team-a"}]}})
    admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{namespace}/applications", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"project": "team-a", "source": {"repoURL": "https://git.example.com/team-a/web"}}})

    def kubectl(*args: str) -> list[list[str]]:
        out = subprocess.run([str(control_plane.kubectl), "--kubeconfig", str(control_plane.admin_kubeconfig),
                              "-n", namespace, "get", *args], capture_output=True, text=True, check=True, timeout=60)
        return [line.split() for line in out.stdout.splitlines()]

    header, row = kubectl("applications")
    assert header[:3] == ["NAME", "PROJECT", "SYNC"] and row[:2] == ["web", "team-a"]
    header, row = kubectl("projects")
    assert header[:3] == ["NAME", "REPOS", "DESTINATIONS"]
    assert row[:3] == ["team-a", '["https://git.example.com/team-a/*"]', "team-a"]
