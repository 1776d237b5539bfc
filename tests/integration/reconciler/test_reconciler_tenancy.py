"""Tenancy: Projects bound what a tenant's Application may deploy (issue #11's "Why", path by path).

A real API server, real git repositories, minted identities: the admin creates two Projects in the
Projects' namespace (the test's own), two tenants — users whose only RBAC is in their own namespace —
create Applications there, and one reconciler per tenant namespace (as the reconciler's ServiceAccount)
reads the Projects from the Projects' namespace. Each refused path fails safely with a condition and an
Event naming the rule, and nothing of it is applied or pruned; the positive test shows a tenant deploying
exactly what its project allows, and a Project change taking effect at the next sync without a refresh.
"""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.reconciler_harness import APPS, Harness, Repo, configmap, wait_for

from driftguard.kube import Kube, KubeError

pytestmark = pytest.mark.integration
PROJECTS = "/apis/driftguard.io/v1alpha1/namespaces/{ns}/projects"
MERGE = "application/merge-patch+json"


@dataclass
class Tenant:
    name: str
    namespace: str
    kube: Kube  # the tenant's own identity
    repo: Repo
    harness: Harness  # the reconciler watching the tenant's namespace

    def app(self, name: str, *, project: str, repo_url: str | None = None, path: str = "app",
            destination: str | None = None, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace or self.namespace},
            "spec": {"project": project,
                     "source": {"repoURL": repo_url or self.repo.url, "targetRevision": "main", "path": path},
                     "destination": {"namespace": destination or self.namespace},
                     "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}, **spec},
        }
        return self.kube.request("POST", APPS.format(ns=namespace or self.namespace), body=body)


def project_body(name: str, namespace: str, tenant_ns: str, repo: Repo, **extra: Any) -> dict[str, Any]:
    """What README's Multi-tenancy section recommends for a team."""
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"sourceRepos": [repo.url], "destinations": [{"namespace": tenant_ns}],
                     "sourceNamespaces": [tenant_ns],
                     "namespaceResourceBlacklist": [{"group": "driftguard.io", "kind": "*"}], **extra}}


def tenant_role(namespace: str, user: str) -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "tenant", "namespace": namespace},
         "rules": [{"apiGroups": ["driftguard.io"], "resources": ["applications"], "verbs": ["*"]},
                   {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["*"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "tenant", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]


@pytest.fixture
def tenants(admin: Kube, namespace: str, reconciler_kubeconfig: Path, tmp_path: Path,
            as_user: Callable[..., Kube]) -> Iterator[dict[str, Tenant]]:
    """Team a and team b: a namespace, a user with RBAC only there, a repo, a Project, a reconciler."""
    made: dict[str, Tenant] = {}
    suffix = secrets.token_hex(3)
    try:
        for team in ("a", "b"):
            ns = f"team-{team}-{suffix}"
            admin.request("POST", "/api/v1/namespaces", body={
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"driftguard.io/test": "true"}}})
            user = f"tenant-{team}"
            for obj in tenant_role(ns, user):
                plural = "roles" if obj["kind"] == "Role" else "rolebindings"
                admin.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{plural}", body=obj)
            path = tmp_path / f"repo-{team}"
            path.mkdir()
            repo = Repo(path)
            repo.git("init", "-q", "-b", "main")
            admin.request("POST", PROJECTS.format(ns=namespace), body=project_body(f"team-{team}", namespace, ns, repo))
            harness = Harness(admin, ns, reconciler_kubeconfig, tmp_path / f"cache-{team}")
            made[team] = Tenant(user, ns, as_user(user), repo, harness)
        yield made
    finally:
        for tenant in made.values():
            for service in tenant.harness.services:
                service.stop()
            try:
                admin.request("DELETE", f"/api/v1/namespaces/{tenant.namespace}")
            except KubeError as error:
                if error.status != 404:
                    raise


def start(tenant: Tenant, projects_namespace: str) -> None:
    tenant.harness.start(project_namespace=projects_namespace)


def events(admin: Kube, namespace: str, app: str) -> list[dict[str, Any]]:
    items = admin.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e["involvedObject"]["kind"] == "Application" and e["involvedObject"]["name"] == app]


def warned(admin: Kube, namespace: str, app: str, reason: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((e for e in events(admin, namespace, app) if e["reason"] == reason), None)
    return wait_for(find, what=f"a {reason} Event on Application {app}")


def test_a_tenant_deploys_exactly_what_its_project_allows_and_a_project_change_applies_at_the_next_sync(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    a = tenants["a"]
    a.repo.write("app/config.yaml", configmap("settings", {"color": "blue"}))
    a.repo.write("app/web.yaml", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                                           "template": {"metadata": {"labels": {"app": "web"}},
                                                        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    sha = a.repo.commit("team a's service")
    a.app("web", project="team-a")
    start(a, namespace)

    status = a.harness.wait_synced("web", sha)
    assert status["inventoryCount"] == 2 and a.harness.cm("settings") is not None
    permitted = a.harness.condition("web", "ProjectPermitted")
    assert (permitted["status"], permitted["message"]) == ("True", "Project team-a permits every declared object")
    assert f"{sha[:7]} (Project team-a): " in warned(admin, a.namespace, "web", "Synced")["message"]

    # The admin narrows the project: ConfigMaps are no longer team a's to manage. No refresh, no commit.
    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE, body={
        "spec": {"namespaceResourceBlacklist": [{"group": "driftguard.io", "kind": "*"},
                                                {"group": "", "kind": "ConfigMap"}]}})
    refused = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectViolation")
    assert f"ConfigMap {a.namespace}/settings: kind ConfigMap is in the project's namespaceResourceBlacklist " \
           "((core)/ConfigMap) (Project team-a, namespaceResourceBlacklist)" in refused["message"]
    assert a.harness.cm("settings") is not None, "refused, not pruned: it is still declared"
    assert a.harness.condition("web", "Ready")["reason"] == "ProjectViolation"
    assert "Project team-a" in warned(admin, a.namespace, "web", "ProjectViolation")["message"]

    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE, body={
        "spec": {"namespaceResourceBlacklist": [{"group": "driftguard.io", "kind": "*"}]}})
    a.harness.wait_condition("web", "ProjectPermitted", "True", "Permitted")
    a.harness.wait_condition("web", "Ready", "True")


def test_a_project_that_does_not_exist_applies_nothing(tenants: dict[str, Tenant], namespace: str) -> None:
    a = tenants["a"]
    a.repo.write("app/config.yaml", configmap("settings", {"color": "blue"}))
    a.repo.commit("declare")
    a.app("web", project="tenant-only-project")
    start(a, namespace)

    condition = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectNotFound")
    assert condition["message"].startswith(f"Project tenant-only-project (spec.project) does not exist in namespace "
                                           f"{namespace}; nothing applied or pruned")
    assert a.harness.cm("settings") is None
    assert a.harness.condition("web", "SourceReady") == {}, "git was never fetched"


def test_kube_system_and_driftguards_own_namespace_are_refused(tenants: dict[str, Tenant], namespace: str,
                                                               admin: Kube) -> None:
    a = tenants["a"]
    a.repo.write("app/mine.yaml", configmap("mine", {"a": "b"}))
    a.repo.write("app/grab.yaml", configmap("grab", {"a": "b"}, namespace="kube-system"))
    a.repo.write("app/reconciler-pod.yaml", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "grab", "namespace": "driftguard-system"},
        "spec": {"selector": {"matchLabels": {"app": "grab"}}, "template": {
            "metadata": {"labels": {"app": "grab"}},
            "spec": {"serviceAccountName": "driftguard-reconciler",
                     "containers": [{"name": "c", "image": "busybox"}]}}}})
    sha = a.repo.commit("reach out")
    a.app("web", project="team-a")
    start(a, namespace)

    condition = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectViolation")
    message = condition["message"]
    assert "ConfigMap kube-system/grab: namespace kube-system is not one of the project's destinations" in message
    assert "Deployment driftguard-system/grab: namespace driftguard-system is not one of" in message
    assert a.harness.cm("grab", "kube-system") is None
    assert harness_get(a, "/apis/apps/v1/namespaces/driftguard-system/deployments/grab") is None
    assert a.harness.cm("mine") is not None, "what the project permits is applied"
    assert a.harness.status("web")["sync"]["revision"] == sha

    # An Application whose destination itself is outside the project stops before git is read.
    a.app("elsewhere", project="team-a", destination="kube-system")
    stop = a.harness.wait_condition("elsewhere", "ProjectPermitted", "False", "ProjectViolation")
    assert "destination namespace kube-system is not one of the project's destinations" in stop["message"]


def test_pods_may_not_run_as_driftguards_service_accounts_even_where_a_project_reaches(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    """An admin-widened project that reaches driftguard's namespace still refuses pods running as its SAs."""
    a = tenants["a"]
    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE, body={
        "spec": {"destinations": [{"namespace": a.namespace}, {"namespace": "driftguard-system"}]}})
    a.repo.write("app/job.yaml", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "steal", "namespace": "driftguard-system"},
        "spec": {"template": {"spec": {"serviceAccountName": "driftguard-reconciler", "restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}}})
    a.repo.write("app/mine.yaml", configmap("mine", {"a": "b"}))
    a.repo.commit("a job as the reconciler")
    a.app("web", project="team-a")
    start(a, namespace)

    condition = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectViolation")
    assert ("Job driftguard-system/steal: its pods would run as ServiceAccount driftguard-system/driftguard-reconciler"
            ", one of driftguard's own") in condition["message"]
    assert "permitDriftguardServiceAccounts" in condition["message"]
    assert harness_get(a, "/apis/batch/v1/namespaces/driftguard-system/jobs/steal") is None


def test_another_teams_application_is_neither_declared_nor_re_pointed(
        tenants: dict[str, Tenant], namespace: str) -> None:
    a, b = tenants["a"], tenants["b"]
    b.repo.write("app/config.yaml", configmap("b-settings", {"owner": "b"}))
    b_sha = b.repo.commit("team b")
    b.app("b-web", project="team-b")
    start(b, namespace)
    b.harness.wait_synced("b-web", b_sha)

    # Team a's git declares team b's Application, pointed at team a's repo.
    a.repo.write("app/takeover.yaml", {
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "b-web", "namespace": b.namespace},
        "spec": {"project": "team-b", "source": {"repoURL": a.repo.url, "path": "evil"},
                 "destination": {"namespace": b.namespace}}})
    a.repo.write("app/mine.yaml", configmap("mine", {"a": "b"}))
    a.repo.commit("take b over")
    a.app("web", project="team-a")
    start(a, namespace)

    condition = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectViolation")
    assert f"Application {b.namespace}/b-web: namespace {b.namespace} is not one of the project's destinations" \
        in condition["message"]
    assert b.harness.app("b-web")["spec"]["source"]["repoURL"] == b.repo.url, "team b's Application untouched"

    # Team b cannot borrow team a's project either: its namespace is not among team-a's sourceNamespaces.
    b.app("borrow", project="team-a", repo_url=a.repo.url, destination=a.namespace)
    borrowed = b.harness.wait_condition("borrow", "ProjectPermitted", "False", "ProjectViolation")
    assert f"Applications in namespace {b.namespace} may not use this project" in borrowed["message"]
    assert "(Project team-a, sourceNamespaces)" in borrowed["message"]


def test_a_repo_outside_the_project_is_never_fetched_local_paths_and_caches_included(
        tenants: dict[str, Tenant], namespace: str) -> None:
    a, b = tenants["a"], tenants["b"]
    b.repo.write("app/secret-config.yaml", configmap("b-only", {"token": "b's"}))
    b_sha = b.repo.commit("team b")
    b.app("b-web", project="team-b")
    start(b, namespace)
    b.harness.wait_synced("b-web", b_sha)
    caches = [p for p in b.harness.cache_dir.rglob("*") if p.is_dir()]
    assert caches, "team b's repo is in its reconciler's cache"

    start(a, namespace)
    a.app("peek-repo", project="team-a", repo_url=b.repo.url)
    a.app("peek-cache", project="team-a", repo_url=str(b.harness.cache_dir))
    for name, url in (("peek-repo", b.repo.url), ("peek-cache", str(b.harness.cache_dir))):
        condition = a.harness.wait_condition(name, "ProjectPermitted", "False", "ProjectViolation")
        assert condition["message"].startswith(f"repoURL {url} is not one of the project's sourceRepos ({a.repo.url})")
        assert a.harness.condition(name, "SourceReady") == {}, "never fetched"
    assert a.harness.cm("b-only") is None
    assert not a.harness.cache_dir.exists() or not any(a.harness.cache_dir.iterdir()), "nothing fetched into a's cache"


def test_the_builtin_default_project_refuses_cluster_rbac_and_driftguards_kinds(
        tenants: dict[str, Tenant], namespace: str) -> None:
    a = tenants["a"]
    a.repo.write("app/admin.yaml", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"grab-{a.namespace}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": a.name, "apiGroup": "rbac.authorization.k8s.io"}]})
    a.repo.write("app/project.yaml", {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
                                      "metadata": {"name": "default", "namespace": a.namespace},
                                      "spec": {"sourceRepos": ["*"]}})
    a.repo.write("app/mine.yaml", configmap("mine", {"a": "b"}))
    a.repo.commit("widen")
    # The default project lives in the Projects' namespace: only Applications there may use it.
    a.harness.namespace = namespace
    a.harness.make_app("web", a.repo, destination=a.namespace)
    a.harness.start()

    condition = a.harness.wait_condition("web", "ProjectPermitted", "False", "ProjectViolation")
    assert (f"ClusterRoleBinding grab-{a.namespace}: cluster-scoped kind ClusterRoleBinding.rbac.authorization.k8s.io"
            " is in the project's clusterResourceBlacklist") in condition["message"]
    assert "(Project default (built in), clusterResourceBlacklist)" in condition["message"]
    assert f"Project {a.namespace}/default: kind Project.driftguard.io is in the project's namespaceResourceBlacklist" \
        in condition["message"]
    assert harness_get(a, f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/grab-{a.namespace}") is None
    assert a.harness.cm("mine", a.namespace) is not None


def harness_get(tenant: Tenant, path: str) -> dict[str, Any] | None:
    return tenant.harness.get(path)


def test_another_teams_secret_is_never_adopted_overwritten_or_pruned_without_its_owners_opt_in(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    """Both projects reach a shared namespace (team b's); team b creates its Secret there with kubectl."""
    a, b = tenants["a"], tenants["b"]
    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE, body={
        "spec": {"destinations": [{"namespace": a.namespace}, {"namespace": b.namespace}]}})
    secrets_path = f"/api/v1/namespaces/{b.namespace}/secrets"
    b.kube.request("POST", secrets_path, body={"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": "b-creds"}, "stringData": {"token": "team-b"}})
    declared = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b-creds", "namespace": b.namespace},
                "stringData": {"token": "team-a-was-here"}}
    a.repo.write("app/steal.yaml", declared)
    a.repo.write("app/mine.yaml", configmap("mine", {"a": "b"}))
    sha = a.repo.commit("declare team b's Secret")
    a.app("web", project="team-a")
    start(a, namespace)

    applied = a.harness.wait_condition("web", "Applied", "False", "ApplyFailed")
    assert (f"Secret {b.namespace}/b-creds failed: exists and driftguard did not create it: not taken over, not "
            f"pruned. If Application {a.namespace}/web should own it, its owner opts in: kubectl annotate secret "
            f"b-creds -n {b.namespace} driftguard.io/adopt={a.namespace}/web") in applied["message"]
    assert a.harness.cm("mine") is not None and a.harness.status("web")["sync"]["revision"] == sha

    def token() -> str:
        live = b.kube.request("GET", f"{secrets_path}/b-creds")
        return base64.b64decode(live["data"]["token"]).decode()
    assert token() == "team-b", "not overwritten"
    assert "driftguard.io/managed" not in (b.kube.request("GET", f"{secrets_path}/b-creds")["metadata"].get("labels")
                                           or {}), "not stamped: the webhook and the reconciler leave it to team b"
    assert not [e for e in a.harness.status("web")["inventory"] if "b-creds" in e["id"]], "never in the inventory"

    a.repo.remove("app/steal.yaml")
    sha = a.harness.commit_and_sync(a.repo, "web", "drop it")
    assert token() == "team-b", "not pruned either"

    # Its owner opts in: now (and only now) team a's Application takes it over, and may prune it.
    b.kube.request("PATCH", f"{secrets_path}/b-creds", content_type=MERGE,
                   body={"metadata": {"annotations": {"driftguard.io/adopt": f"{a.namespace}/web"}}})
    a.repo.write("app/steal.yaml", declared)
    a.harness.commit_and_sync(a.repo, "web", "declare it again, adopted this time")
    assert token() == "team-a-was-here"
    adopted = b.kube.request("GET", f"{secrets_path}/b-creds")["metadata"]
    assert "driftguard.io/adopt" not in adopted.get("annotations", {}), "the opt-in is consumed"
    assert adopted["annotations"]["driftguard.io/application"] == f"{a.namespace}/web"
    a.repo.remove("app/steal.yaml")
    a.harness.commit_and_sync(a.repo, "web", "drop it again")
    assert a.harness.get(f"{secrets_path}/b-creds") is None, "adopted with opt-in: pruned"


def test_outside_local_mode_a_local_path_is_never_a_source_whatever_the_project_says(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    """A reconciler without --allow-local-repos reads no file:// URL or path, even one a project permits."""
    a, b = tenants["a"], tenants["b"]
    b.repo.write("app/secret-config.yaml", configmap("b-only", {"token": "b's"}))
    b_sha = b.repo.commit("team b")
    b.app("b-web", project="team-b")
    start(b, namespace)
    b.harness.wait_synced("b-web", b_sha)
    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE,
                  body={"spec": {"sourceRepos": ["*"]}})

    a.harness.start(project_namespace=namespace, allow_local_repos=False)
    cache = next(p for p in b.harness.cache_dir.iterdir() if p.name.endswith(".git"))
    for name, url in (("peek-cache", str(cache)), ("peek-file", f"file://{cache}")):
        a.app(name, project="team-a", repo_url=url)
        condition = a.harness.wait_condition(name, "SourceReady", "False", "LocalSourceRefused")
        assert condition["message"].startswith(f"repoURL {url} is a file:// URL or a local path, which this "
                                               "reconciler does not read")
    assert a.harness.cm("b-only") is None


def test_another_teams_repository_credentials_are_sent_only_to_the_urls_and_projects_they_name(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    """The issue's setup: every Application in one namespace (the Projects' own), team b's repository Secret
    among them; team a names it with a repoURL of its choosing, a listener here. Nothing reaches it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        admin.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-b-creds"},
            "stringData": {"username": "team-b-bot", "password": "team-b-token",
                           "url": "https://git.example.com/team-b/", "project": "team-b"}})
        a = tenants["a"]
        a.harness.namespace = namespace  # the shared namespace, where any project may be named
        a.harness.start()
        cases = {
            "plain-http": ("default", f"http://127.0.0.1:{port}/team-b/web",
                           "holds a login and repoURL http://127.0.0.1:{port}/team-b/web is plain http://"),
            "elsewhere": ("default", f"https://127.0.0.1:{port}/steal",
                          f"repoURL https://127.0.0.1:{port}/steal is not under the URLs Secret "
                          f"{namespace}/team-b-creds (spec.source.secretRef) serves (https://git.example.com/team-b/)"),
            "other-project": ("default", "https://git.example.com/team-b/web",
                              f"Secret {namespace}/team-b-creds (spec.source.secretRef) serves projects team-b only, "
                              "not project default"),
        }
        for name, (project, url, _) in cases.items():
            a.harness.make_app(name, url, project=project, destination=a.namespace,
                               source={"repoURL": url, "targetRevision": "main", "path": "app",
                                       "secretRef": {"name": "team-b-creds"}})
        for name, (_, _, message) in cases.items():
            condition = a.harness.wait_condition(name, "SourceReady", "False", "CredentialsRefused")
            assert message.format(port=port) in condition["message"], condition["message"]
            assert "team-b-token" not in condition["message"]
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected: no credential, not even a TLS hello
    finally:
        listener.close()


# ---------------------------------------------------------------- applying as the tenant (serviceAccountName)

def deployer(admin: Kube, tenant: Tenant, name: str = "deployer", resources: tuple[str, ...] = ("configmaps",),
             *, impersonable: bool = True) -> str:
    """ServiceAccount ``name`` in the tenant's namespace with RBAC for ``resources`` there only, and (unless not
    ``impersonable``) the shipped ``driftguard-reconciler-impersonate`` bound there for the reconciler."""
    ns, rbac = tenant.namespace, "/apis/rbac.authorization.k8s.io/v1"
    admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                  body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    admin.request("POST", f"{rbac}/namespaces/{ns}/roles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": list(resources), "verbs": ["*"]}]})
    admin.request("POST", f"{rbac}/namespaces/{ns}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})
    if impersonable:
        try:
            admin.request("POST", f"{rbac}/namespaces/{ns}/rolebindings", body={
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "driftguard-reconciler-impersonate"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "driftguard-reconciler-impersonate"},
                "subjects": [{"kind": "ServiceAccount", "name": "driftguard-reconciler",
                              "namespace": "driftguard-system"}]})
        except KubeError as error:
            if error.status != 409:
                raise
    return f"system:serviceaccount:{ns}:{name}"


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], "selector": {"app": name}}}


def test_an_application_applies_prunes_and_heals_as_its_serviceaccount_whose_rbac_is_the_final_bound(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    a = tenants["a"]
    user = deployer(admin, a)  # may manage ConfigMaps in its namespace, nothing else
    a.repo.write("app/config.yaml", configmap("settings", {"color": "blue"}))
    a.repo.write("app/old.yaml", configmap("old", {"x": "y"}))
    a.repo.write("app/svc.yaml", service("web"))  # the reconciler itself could create it; the tenant cannot
    a.repo.commit("team a's service")
    a.app("web", project="team-a", serviceAccountName="deployer")
    start(a, namespace)

    applied = a.harness.wait_condition("web", "Applied", "False", "ApplyFailed")
    assert f'User "{user}" cannot' in applied["message"] and f"Service {a.namespace}/web" in applied["message"]
    assert a.harness.get(f"/api/v1/namespaces/{a.namespace}/services/web") is None, "not created with its rights"
    assert a.harness.cm("settings")["data"] == {"color": "blue"} and a.harness.cm("old") is not None
    assert a.harness.status("web")["sync"]["appliedAs"] == f"{a.namespace}/deployer"
    permitted = a.harness.condition("web", "ProjectPermitted")
    assert permitted["message"] == ("Project team-a permits every declared object; applied as ServiceAccount "
                                    f"{a.namespace}/deployer")

    # Pruned as it, and drift healed as it.
    a.repo.remove("app/old.yaml")
    a.repo.remove("app/svc.yaml")
    sha = a.repo.commit("drop old and the service")
    a.harness.refresh("web")
    a.harness.wait_synced("web", sha)
    wait_for(lambda: a.harness.cm("old") is None or None, what="ConfigMap old pruned")
    admin.request("PATCH", f"/api/v1/namespaces/{a.namespace}/configmaps/settings", content_type=MERGE,
                  body={"data": {"color": "red"}})
    wait_for(lambda: a.harness.cm("settings")["data"] == {"color": "blue"} or None, what="drift reverted")

    # The same with a ServiceAccount that may not even manage ConfigMaps: every write fails, nothing else happens.
    revoked = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + a.namespace + "/roles/deployer"
    admin.request("PATCH", revoked, content_type=MERGE, body={"rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})
    a.repo.write("app/config.yaml", configmap("settings", {"color": "green"}))
    sha = a.repo.commit("green")
    a.harness.refresh("web")
    failed = a.harness.wait_condition("web", "Applied", "False", "ApplyFailed")
    assert f'User "{user}" cannot patch resource "configmaps"' in failed["message"]
    assert a.harness.cm("settings")["data"] == {"color": "blue"}


def test_a_serviceaccount_choice_is_refused_with_the_rule_and_nothing_is_applied(
        tenants: dict[str, Tenant], namespace: str, admin: Kube) -> None:
    a = tenants["a"]
    a.repo.write("app/config.yaml", configmap("settings", {"color": "blue"}))
    a.repo.commit("declare")
    start(a, namespace)

    a.app("missing", project="team-a", serviceAccountName="nobody")
    gone = a.harness.wait_condition("missing", "ProjectPermitted", "False", "ServiceAccountNotFound")
    assert gone["message"].startswith(f"ServiceAccount {a.namespace}/nobody (spec.serviceAccountName) does not "
                                      "exist; create it")
    # The project pins one for its destination: the Application may not pick another.
    deployer(admin, a, "pinned")
    admin.request("PATCH", PROJECTS.format(ns=namespace) + "/team-a", content_type=MERGE, body={
        "spec": {"destinationServiceAccounts": [{"namespace": a.namespace, "defaultServiceAccount": "pinned"}]}})
    a.app("other", project="team-a", serviceAccountName="deployer")
    refused = a.harness.wait_condition("other", "ProjectPermitted", "False", "ServiceAccountRefused")
    assert "spec.serviceAccountName deployer is not the ServiceAccount the project pins" in refused["message"]
    assert "(Project team-a, destinationServiceAccounts)" in refused["message"]
    assert a.harness.cm("settings") is None

    # Without spec.serviceAccountName, the pin applies (the missing one too, now: the pin wins).
    a.app("web", project="team-a")
    a.harness.wait_condition("web", "Ready", "True")
    assert a.harness.status("web")["sync"]["appliedAs"] == f"{a.namespace}/pinned"
    assert a.harness.cm("settings") is not None


def test_impersonating_a_serviceaccount_needs_the_rolebinding_and_the_seal_extra_its_own_grant(
        tenants: dict[str, Tenant], namespace: str, admin: Kube, reconciler_kubeconfig: Path) -> None:
    """The two RBAC walls, as the API server enforces them for the reconciler's own identity."""
    a, b = tenants["a"], tenants["b"]
    deployer(admin, a)
    deployer(admin, b, impersonable=False)
    reconciler = Kube(reconciler_kubeconfig)
    extra = "Impersonate-Extra-driftguard.io%2freconciler"
    path = "/api/v1/namespaces/{ns}/configmaps"
    found = reconciler.request("GET", path.format(ns=a.namespace), headers={
        "Impersonate-User": f"system:serviceaccount:{a.namespace}:deployer", extra: "v1.1.x"})
    assert isinstance(found.get("items"), list), "impersonated: the tenant may list its ConfigMaps"
    with pytest.raises(KubeError) as refused:
        reconciler.request("GET", path.format(ns=b.namespace), headers={
            "Impersonate-User": f"system:serviceaccount:{b.namespace}:deployer", extra: "v1.1.x"})
    assert refused.value.status == 403 and "cannot impersonate resource \"serviceaccounts\"" in refused.value.message
    with pytest.raises(KubeError) as other_extra:
        reconciler.request("GET", path.format(ns=a.namespace), headers={
            "Impersonate-User": f"system:serviceaccount:{a.namespace}:deployer",
            "Impersonate-Extra-authentication.kubernetes.io%2fpod-name": "driftguard-reconciler-x"})
    assert other_extra.value.status == 403 and "userextras" in other_extra.value.message
