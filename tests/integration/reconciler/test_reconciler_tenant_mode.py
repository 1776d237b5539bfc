"""``overlays/tenant-mode``: the reconciler that may write no tenant object itself (issue #11, "the reconciler's
default ClusterRole is no wider than it needs with impersonation on").

The overlay is rendered with the real kustomize; a reconciler identity is bound to exactly the roles it
aggregates into ``driftguard-reconciler`` (plus the seal extra, and ``driftguard-reconciler-impersonate`` in one
team namespace), and run with the overlay's ``--default-service-account``. It syncs a team's git as the team's
``driftguard-applier``, while its own identity is refused a write there and everything the team's RBAC does
not allow fails by name.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.guarded import delete_if_present
from support.reconciler_harness import ROOT, Harness, Repo, apply_admin, configmap, render_tools, wait_for

from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration
RBAC = "rbac.authorization.k8s.io/v1"
WRITES = {"create", "update", "patch", "delete", "deletecollection", "*"}
OWN = {"applications", "applications/status", "events", "namespaces", "customresourcedefinitions",
       "validatingwebhookconfigurations", "mutatingwebhookconfigurations",
       "tokenreviews", "subjectaccessreviews"}  # the reconciler's own business (and who may `driftguard sync`)


def rendered() -> list[dict[str, Any]]:
    out = subprocess.run([str(render_tools()["kustomize"]), "build", str(ROOT / "overlays" / "tenant-mode")],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_overlay_aggregates_no_write_on_tenant_objects_and_sets_a_default_serviceaccount() -> None:
    docs = rendered()
    aggregated = [d for d in docs if d["kind"] == "ClusterRole"
                  and (d["metadata"].get("labels") or {}).get("driftguard.io/aggregate-to-reconciler") == "true"]
    assert {d["metadata"]["name"] for d in aggregated} == {"driftguard-reconciler-core", "driftguard-reconciler-read"}
    wide = [(rule["resources"], rule["verbs"]) for role in aggregated for rule in role["rules"]
            if set(rule["verbs"]) & WRITES and not set(rule["resources"]) <= OWN]
    assert wide == []
    reconciler = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "driftguard-reconciler")
    args = reconciler["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--default-service-account=driftguard-applier" in args


def test_a_tenant_mode_reconciler_syncs_as_the_teams_serviceaccount_and_cannot_write_itself(
        admin: Kube, namespace: str, cluster: Any, repo: Repo, tmp_path: Path, reconciler_kubeconfig: Path) -> None:
    """(``reconciler_kubeconfig``: installs the CRDs and driftguard-system; its identity is not used.)"""
    if cluster.control_plane is None:
        pytest.skip("mints a ServiceAccount token through the local control plane")
    docs = {d["metadata"]["name"]: d for d in rendered() if d["kind"] == "ClusterRole"}
    name = f"dg-tenant-mode-{secrets.token_hex(3)}"
    apply_admin(admin, {"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": "driftguard-system"}})
    subject = {"kind": "ServiceAccount", "name": name, "namespace": "driftguard-system"}
    for role in ("driftguard-reconciler-core", "driftguard-reconciler-read", "driftguard-reconciler-seal"):
        apply_admin(admin, docs[role])
        apply_admin(admin, {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": f"{name}-{role}"},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                            "subjects": [subject]})
    apply_admin(admin, docs["driftguard-reconciler-impersonate"])
    apply_admin(admin, {"apiVersion": RBAC, "kind": "RoleBinding",
                        "metadata": {"name": "driftguard-reconciler-impersonate", "namespace": namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": "driftguard-reconciler-impersonate"}, "subjects": [subject]})
    # The team's applier: ConfigMaps in its namespace, nothing else.
    apply_admin(admin, {"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "driftguard-applier", "namespace": namespace}})
    apply_admin(admin, {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "applier", "namespace": namespace},
                        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]})
    apply_admin(admin, {"apiVersion": RBAC, "kind": "RoleBinding",
                        "metadata": {"name": "applier", "namespace": namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "applier"},
                        "subjects": [{"kind": "ServiceAccount", "name": "driftguard-applier", "namespace": namespace}]})
    kubeconfig = cluster.control_plane.kubeconfig_for_serviceaccount("driftguard-system", name)
    try:
        with Kube(kubeconfig) as itself, pytest.raises(KubeError) as refused:
            itself.request("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                           body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}})
        assert refused.value.status == 403, "the tenant-mode reconciler writes no tenant object itself"

        repo.write("app/config.yaml", configmap("settings", {"color": "blue"}))
        repo.write("app/svc.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                    "spec": {"ports": [{"port": 80}]}})
        repo.commit("the team's app")
        harness = Harness(admin, namespace, Path(kubeconfig), tmp_path / "cache")
        try:
            harness.make_app("web", repo)
            harness.start(default_service_account="driftguard-applier")
            failed = harness.wait_condition("web", "Applied", "False", "ApplyFailed")
            assert (f'User "system:serviceaccount:{namespace}:driftguard-applier" cannot' in failed["message"]
                    and f"Service {namespace}/web" in failed["message"])
            assert harness.cm("settings")["data"] == {"color": "blue"}
            assert harness.status("web")["sync"]["appliedAs"] == f"{namespace}/driftguard-applier"
            # Self-heal, through the reconciler's own read-only watch, writes as the team's applier.
            admin.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/settings",
                          body={"data": {"color": "red"}}, content_type="application/merge-patch+json")
            wait_for(lambda: harness.cm("settings")["data"] == {"color": "blue"} or None, what="drift reverted")
        finally:
            for service in harness.services:
                service.stop()
    finally:
        for role in ("driftguard-reconciler-core", "driftguard-reconciler-read", "driftguard-reconciler-seal"):
            delete_if_present(admin, f"/apis/{RBAC}/clusterrolebindings/{name}-{role}")
        delete_if_present(admin, f"/api/v1/namespaces/driftguard-system/serviceaccounts/{name}")
