"""Projects: parsing names the field; evaluation returns the violated rule (Argo CD's semantics)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from driftguard.core.projects import (
    Project,
    ProjectError,
    builtin_default,
    check_application,
    check_manifest,
    check_object,
    parse_project,
    permitted,
    pod_service_account,
)

SYSTEM = "driftguard-system"


def project(**spec: Any) -> Project:
    return parse_project({"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
                          "metadata": {"name": "team-a", "resourceVersion": "7"}, "spec": spec})


TEAM_A = project(
    sourceRepos=["https://git.example.com/team-a/*", "!https://git.example.com/team-a/secrets"],
    destinations=[{"server": "https://kubernetes.default.svc", "namespace": "team-a-*"},
                  {"namespace": "!team-a-admin"}],
    namespaceResourceWhitelist=[{"group": "", "kind": "ConfigMap"}, {"group": "apps", "kind": "*"}],
    clusterResourceWhitelist=[{"group": "", "kind": "Namespace"}],
    sourceNamespaces=["team-a"],
)


@pytest.mark.parametrize(("spec", "message"), [
    ({"sourceRepos": "https://x"}, "Project team-a: spec.sourceRepos must be a list"),
    ({"sourceRepos": [""]}, "spec.sourceRepos[0] must be a non-empty string pattern"),
    ({"sourceRepos": ["*", 3]}, "spec.sourceRepos[1] must be a non-empty string pattern, not 3"),
    ({"sourceRepos": ["!"]}, "spec.sourceRepos[0] must be a non-empty string pattern"),
    ({"destinations": ["team-a"]}, "spec.destinations[0] must be an object"),
    ({"destinations": [{"server": "*"}]}, "spec.destinations[0].namespace is required"),
    ({"destinations": [{"namespace": 1}]}, "spec.destinations[0].namespace must be a string"),
    ({"clusterResourceWhitelist": [{"group": ""}]}, "spec.clusterResourceWhitelist[0].kind is required"),
    ({"namespaceResourceBlacklist": [{"group": 1, "kind": "x"}]}, "spec.namespaceResourceBlacklist[0].group must"),
    ({"namespaceResourceWhitelist": {}}, "spec.namespaceResourceWhitelist must be a list"),
    ({"sourceNamespaces": [None]}, "spec.sourceNamespaces[0] must be a non-empty string"),
    ({"permitDriftguardServiceAccounts": "yes"}, "spec.permitDriftguardServiceAccounts must be true or false"),
])
def test_a_bad_project_names_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ProjectError, match=re.escape(message)):
        project(**spec)


def test_a_nameless_or_specless_project() -> None:
    with pytest.raises(ProjectError, match=re.escape("metadata.name is required")):
        parse_project({"metadata": {}})
    with pytest.raises(ProjectError, match="spec must be an object"):
        parse_project({"metadata": {"name": "p"}, "spec": []})
    empty = parse_project({"metadata": {"name": "p"}})
    assert empty.source_repos == () and empty.namespace_whitelist is None and not empty.builtin


@pytest.mark.parametrize(("value", "patterns", "expected"), [
    ("a", ["*"], True),
    ("a", [], False),
    ("team-a-web", ["team-a-*"], True),
    ("team-b-web", ["team-a-*"], False),
    ("team-a-admin", ["team-a-*", "!team-a-admin"], False),
    ("team-a-admin", ["!team-a-admin", "team-a-*"], False),  # a negation wins wherever it stands
    ("x", ["!y"], False),  # negations alone permit nothing
    ("https://h/o/r", ["https://h/*"], True),  # * crosses /
    ("ab", ["a?"], True),
    ("TEAM-A", ["team-a"], False),  # case-sensitive
])
def test_patterns(value: str, patterns: list[str], expected: bool) -> None:
    assert permitted(value, patterns) is expected


@pytest.mark.parametrize(("repo", "app_ns", "dest", "rule"), [
    ("https://git.example.com/team-a/web", "team-a", "team-a-prod", None),
    ("https://git.example.com/team-a/web.git", "team-a", "team-a-prod", None),
    ("https://git.example.com/team-a/web/", "team-a", "", None),
    ("https://git.example.com/team-a/web", SYSTEM, "team-a-prod", None),  # the Projects' namespace: always
    ("https://git.example.com/team-a/secrets", "team-a", "team-a-prod", "sourceRepos"),
    ("https://git.example.com/team-b/web", "team-a", "team-a-prod", "sourceRepos"),
    ("/var/cache/driftguard/git/team-b", "team-a", "team-a-prod", "sourceRepos"),
    ("https://git.example.com/team-a/web", "team-b", "team-a-prod", "sourceNamespaces"),
    ("https://git.example.com/team-a/web", "team-a", "kube-system", "destinations"),
    ("https://git.example.com/team-a/web", "team-a", "team-a-admin", "destinations"),
])
def test_check_application(repo: str, app_ns: str, dest: str, rule: str | None) -> None:
    violation = check_application(TEAM_A, repo_url=repo, app_namespace=app_ns, destination_namespace=dest,
                                  project_namespace=SYSTEM)
    assert (violation.rule if violation else None) == rule
    if violation is not None:
        assert violation.project == "team-a" and "team-a" in str(violation)


@pytest.mark.parametrize(("group", "kind", "namespace", "sa", "rule"), [
    ("", "ConfigMap", "team-a-prod", None, None),
    ("apps", "Deployment", "team-a-prod", "web", None),
    ("", "Secret", "team-a-prod", None, "namespaceResourceWhitelist"),
    ("", "ConfigMap", "team-b-prod", None, "destinations"),
    ("", "Namespace", "", None, None),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "", None, "clusterResourceWhitelist"),
])
def test_check_object_in_a_declared_project(group: str, kind: str, namespace: str, sa: str | None,
                                            rule: str | None) -> None:
    violation = check_object(TEAM_A, group=group, kind=kind, namespace=namespace, service_account=sa)
    assert (violation.rule if violation else None) == rule


DEFAULT = builtin_default(SYSTEM)


@pytest.mark.parametrize(("group", "kind", "namespace", "sa", "rule"), [
    ("", "ConfigMap", "production", None, None),
    ("", "Secret", "production", None, None),
    ("apps", "Deployment", "production", "default", None),
    ("rbac.authorization.k8s.io", "Role", "production", None, None),
    ("rbac.authorization.k8s.io", "RoleBinding", "production", None, None),
    ("", "Namespace", "", None, None),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "", None, None),
    ("", "ConfigMap", "kube-system", None, "destinations"),
    ("", "ConfigMap", SYSTEM, None, "destinations"),
    ("rbac.authorization.k8s.io", "ClusterRole", "", None, "clusterResourceBlacklist"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", "", None, "clusterResourceBlacklist"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "", None, "clusterResourceBlacklist"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "", None, "clusterResourceBlacklist"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "", None, "clusterResourceBlacklist"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", "", None, "clusterResourceBlacklist"),
    ("driftguard.io", "Application", "production", None, "namespaceResourceBlacklist"),
    ("driftguard.io", "Project", "production", None, "namespaceResourceBlacklist"),
])
def test_the_builtin_default_is_safe(group: str, kind: str, namespace: str, sa: str | None, rule: str | None) -> None:
    violation = check_object(DEFAULT, group=group, kind=kind, namespace=namespace, service_account=sa,
                             system_namespace=SYSTEM)
    assert (violation.rule if violation else None) == rule
    if violation is not None:
        assert violation.project == "default (built in)"


def deployment(namespace: str, sa: str | None, kind: str = "Deployment", api: str = "apps/v1") -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
    if sa is not None:
        pod["serviceAccountName"] = sa
    spec: dict[str, Any] = {"template": {"spec": pod}}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": spec}}
    elif kind == "Pod":
        spec = pod
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": namespace}, "spec": spec}


WIDE = project(sourceRepos=["*"], destinations=[{"namespace": "*"}], clusterResourceWhitelist=[{"group": "*",
                                                                                                 "kind": "*"}])
WIDE_AND_TRUSTED = project(destinations=[{"namespace": "*"}], permitDriftguardServiceAccounts=True)


@pytest.mark.parametrize(("proj", "obj", "rule"), [
    (WIDE, deployment("team-a", "driftguard-reconciler"), None),  # team-a's own SA of that name: harmless
    (WIDE, deployment(SYSTEM, "driftguard-reconciler"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, None), "permitDriftguardServiceAccounts"),  # "default" in driftguard's namespace
    (WIDE, deployment(SYSTEM, "driftguard-webhook", "StatefulSet"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, "x", "DaemonSet"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, "x", "ReplicaSet"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, "x", "Job", "batch/v1"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, "x", "CronJob", "batch/v1"), "permitDriftguardServiceAccounts"),
    (WIDE, deployment(SYSTEM, "x", "Pod", "v1"), "permitDriftguardServiceAccounts"),
    (WIDE, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": SYSTEM}}, None),
    (WIDE_AND_TRUSTED, deployment(SYSTEM, "driftguard-reconciler"), None),
    (DEFAULT, deployment(SYSTEM, "driftguard-reconciler"), "destinations"),
    (DEFAULT, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}, "destinations"),
    (DEFAULT, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}, None),
    (WIDE, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "x"}}, None),  # an admin's explicit project may allow it
])
def test_check_manifest(proj: Project, obj: dict[str, Any], rule: str | None) -> None:
    violation = check_manifest(proj, obj, system_namespace=SYSTEM)
    assert (violation.rule if violation else None) == rule


@pytest.mark.parametrize(("obj", "expected"), [
    (deployment("n", "web"), "web"),
    (deployment("n", None), "default"),
    (deployment("n", "job", "CronJob", "batch/v1"), "job"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"serviceAccount": "legacy"}}, "legacy"),
    ({"apiVersion": "v1", "kind": "ConfigMap"}, None),
    ({"apiVersion": "example.com/v1", "kind": "Deployment"}, None),
    ({"apiVersion": "apps/v1", "kind": "Deployment", "spec": "garbage"}, "default"),
])
def test_pod_service_account(obj: dict[str, Any], expected: str | None) -> None:
    assert pod_service_account(obj) == expected


def test_namespaced_whitelist_missing_permits_all_empty_permits_none() -> None:
    assert check_object(project(destinations=[{"namespace": "*"}]), group="x", kind="Y", namespace="n") is None
    empty = project(destinations=[{"namespace": "*"}], namespaceResourceWhitelist=[])
    violation = check_object(empty, group="", kind="ConfigMap", namespace="n")
    assert violation is not None and violation.rule == "namespaceResourceWhitelist" and "(none)" in violation.message


def test_a_destination_for_another_cluster_permits_nothing_here() -> None:
    other = project(destinations=[{"server": "https://other:6443", "namespace": "*"}])
    violation = check_object(other, group="", kind="ConfigMap", namespace="n")
    assert violation is not None and violation.rule == "destinations"
    named = project(destinations=[{"name": "in-cluster", "namespace": "n"}])
    assert check_object(named, group="", kind="ConfigMap", namespace="n") is None
