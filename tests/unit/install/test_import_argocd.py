"""``driftguard import argocd``: Argo CD objects as the driftguard ones, checked by driftguard's own schema and
parser; everything that does not carry is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from driftguard import cli
from driftguard.install import argocd

SCHEMAS = argocd.Schemas.load()

GUESTBOOK = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
  finalizers: [resources-finalizer.argocd.argoproj.io, post-delete-finalizer.argocd.argoproj.io]
  labels: {team: web, argocd.argoproj.io/instance: apps}
  annotations:
    notifications.argoproj.io/subscribe.on-sync-succeeded.slack: my-channel
    kubectl.kubernetes.io/last-applied-configuration: "{}"
    owner: alice
spec:
  project: default
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: HEAD
    path: guestbook
    directory: {recurse: true}
  destination: {server: https://kubernetes.default.svc, namespace: guestbook}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
  info: [{name: url, value: https://example.com}]
status:
  sync: {status: Synced}
"""

HELM = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: cache, namespace: team-a}
spec:
  project: team-a
  destination: {name: in-cluster, namespace: team-a}
  source:
    repoURL: https://charts.example.com
    chart: redis
    targetRevision: 17.*
    helm:
      releaseName: cache
      valuesObject: {replica: {replicaCount: 2}}
      parameters: [{name: auth.enabled, value: "false"}]
"""

PROJECT = """
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a, namespace: argocd}
spec:
  description: team a
  sourceRepos: ["https://github.com/team-a/*"]
  destinations:
    - {server: https://kubernetes.default.svc, namespace: team-a}
    - {server: https://prod.example.com:6443, namespace: team-a}
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
  namespaceResourceBlacklist: [{group: "", kind: ResourceQuota}]
  sourceNamespaces: [team-a]
  destinationServiceAccounts:
    - {server: https://kubernetes.default.svc, namespace: team-a, defaultServiceAccount: deployer}
  roles: [{name: ci, policies: ["p, proj:team-a:ci, applications, sync, team-a/*, allow"]}]
  syncWindows: [{kind: allow, schedule: "10 1 * * *", duration: 1h}]
  orphanedResources: {warn: true}
"""


def one(text: str) -> argocd.Converted:
    [result] = argocd.convert([yaml.safe_load(text)], SCHEMAS)
    return result


def test_guestbook_carries_over_with_its_metadata_rules() -> None:
    result = one(GUESTBOOK)
    assert result.obj is not None and not result.refused
    assert result.obj["apiVersion"] == "driftguard.io/v1alpha1" and result.obj["kind"] == "Application"
    assert result.obj["metadata"] == {"name": "guestbook", "namespace": "driftguard-system", "labels": {"team": "web"},
                                      "annotations": {"owner": "alice"},
                                      "finalizers": ["resources-finalizer.argocd.argoproj.io"]}
    spec = result.obj["spec"]
    assert spec["source"] == {"repoURL": "https://github.com/argoproj/argocd-example-apps.git",
                              "targetRevision": "HEAD", "path": "guestbook", "directory": {"recurse": True}}
    assert spec["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True},
                                  "syncOptions": ["CreateNamespace=true"]}
    assert spec["enforcement"] == "deny" and "status" not in result.obj
    assert result.dropped == [
        "metadata.labels: argocd.argoproj.io/instance",
        "metadata.annotations: notifications.argoproj.io/subscribe.on-sync-succeeded.slack",
        "metadata.finalizers: post-delete-finalizer.argocd.argoproj.io",
        "spec.info (informational only)",
    ]
    assert any(n.startswith("project default: Argo CD's default project permits everything") for n in result.notes)


def test_a_helm_chart_app_in_any_namespace_keeps_its_namespace_and_in_cluster_by_name() -> None:
    result = one(HELM)
    assert result.obj is not None
    assert result.obj["metadata"]["namespace"] == "team-a"
    assert result.obj["spec"]["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "team-a"}
    assert result.obj["spec"]["source"]["helm"]["valuesObject"] == {"replica": {"replicaCount": 2}}
    assert result.dropped == [] and result.notes == []


def test_a_project_keeps_what_driftguard_has_and_names_the_rest() -> None:
    result = one(PROJECT)
    assert result.obj is not None and result.obj["kind"] == "Project"
    spec = result.obj["spec"]
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": "team-a"}]
    assert spec["destinationServiceAccounts"] == [{"server": "https://kubernetes.default.svc", "namespace": "team-a",
                                                  "defaultServiceAccount": "deployer"}]
    assert spec["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    assert result.dropped == [
        "spec.roles (project roles and their tokens: driftguard uses Kubernetes RBAC on Applications instead)",
        "spec.syncWindows (driftguard has no sync windows)",
        "spec.orphanedResources (driftguard does not monitor orphaned resources)",
        "spec.destinations[1]: https://prod.example.com:6443 is another cluster",
    ]


@pytest.mark.parametrize(("change", "says"), [
    ({"destination": {"server": "https://prod.example.com:6443", "namespace": "x"}}, "is another cluster"),
    ({"source": {"repoURL": "https://git.example/x", "path": "x", "plugin": {"name": "cdk8s"}}}, "plugin"),
])
def test_what_driftguard_would_refuse_is_not_emitted(change: dict[str, Any], says: str) -> None:
    obj = yaml.safe_load(GUESTBOOK)
    obj["spec"].update(change)
    [result] = argocd.convert([obj], SCHEMAS)
    assert result.obj is None and says in result.refused


def test_fields_driftguard_lacks_are_named_wherever_they_are() -> None:
    obj = yaml.safe_load(GUESTBOOK)
    del obj["spec"]["source"]["directory"]
    obj["spec"]["source"]["kustomize"] = {"namePrefix": "a-", "forceCommonLabels": True}
    [result] = argocd.convert([obj], SCHEMAS)
    assert "spec.source.kustomize.forceCommonLabels (not in driftguard's schema)" in result.dropped
    assert result.obj is not None and result.obj["spec"]["source"]["kustomize"] == {"namePrefix": "a-"}


def test_not_argo_objects_are_refused_by_name() -> None:
    [result] = argocd.convert([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}], SCHEMAS)
    assert result.obj is None and result.refused.startswith("not an Argo CD Application or AppProject")


def test_the_command_writes_objects_to_stdout_and_the_report_to_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "guestbook.yaml").write_text(GUESTBOOK)
    (tmp_path / "apps" / "project.yml").write_text(PROJECT)
    (tmp_path / "apps" / "notes.txt").write_text("not read")
    assert cli.main(["import", "argocd", str(tmp_path / "apps")]) == 0
    out, err = capsys.readouterr()
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    assert kinds == ["Application", "Project"]
    assert "✓ Application argocd/guestbook → Application driftguard-system/guestbook" in err
    assert "    not carried over: spec.syncWindows (driftguard has no sync windows)" in err

    bad = yaml.safe_load(GUESTBOOK)
    bad["spec"]["destination"]["server"] = "https://elsewhere:6443"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert cli.main(["import", "argocd", str(tmp_path / "bad.yaml")]) == 1
    assert "✗ Application argocd/guestbook: not converted: destination https://elsewhere:6443 is another cluster" in (
        capsys.readouterr().err)
    (tmp_path / "broken.yaml").write_text("a: [")
    assert cli.main(["import", "argocd", str(tmp_path / "broken.yaml")]) == 2
    assert "not YAML" in capsys.readouterr().err
