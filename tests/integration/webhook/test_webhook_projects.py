"""The webhook judges an Application against its Project at ``kubectl apply`` time (real API server, real
webhook, Projects read through the webhook's own ServiceAccount): a missing project, or a repoURL,
destination or namespace the project does not permit, is denied with the rule and the fix; a permitted
one is created; an unrelated edit of an Application is never held against it."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from support.guarded import Guarded

from driftguard.kube import KubeError
from driftguard.kube.resources import Cluster
from reconciler import crd

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"


def app(guarded: Guarded, name: str, project: str, repo: str, destination: str) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": guarded.namespace},
            "spec": {"project": project, "source": {"repoURL": repo, "path": "apps"},
                     "destination": {"namespace": destination}}}


def test_an_application_is_judged_against_its_project_when_created(guarded: Guarded) -> None:
    crd.install(Cluster(guarded.admin))
    ns = guarded.namespace
    apps = f"/apis/driftguard.io/v1alpha1/namespaces/{ns}/applications"
    team = f"team-{secrets.token_hex(2)}"
    guarded.admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{ns}/projects", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Project", "metadata": {"name": team},
        "spec": {"sourceRepos": ["https://git.example.com/team-a/*"], "destinations": [{"namespace": ns}]}})

    def denied(body: dict[str, Any]) -> str:
        with pytest.raises(KubeError) as error:
            guarded.admin.request("POST", apps, body=body)
        return guarded.denied_by_us(error.value, "applications")

    assert denied(app(guarded, "a1", "tenant-only-project", "https://git.example.com/team-a/web", ns)) == (
        f"Application {ns}/a1: Project tenant-only-project (spec.project) does not exist in namespace {ns}; create it "
        "(kind: Project) or name an existing project")
    assert denied(app(guarded, "a2", team, "https://git.example.com/team-a/web", "kube-system")) == (
        f"Application {ns}/a2 violates its project: destination namespace kube-system is not one of the project's "
        f"destinations ({ns}) (Project {team}, destinations); choose a permitted namespace, or ask an admin to add it "
        "to the Project")
    assert denied(app(guarded, "a3", team, "http://10.0.0.9/listener", ns)).endswith(
        f"repoURL http://10.0.0.9/listener is not one of the project's sourceRepos (https://git.example.com/team-a/*); "
        f"use a permitted repository, or ask an admin to add it to the Project (Project {team}, sourceRepos)")
    assert "(Project default (built in), destinations)" in denied(
        app(guarded, "a4", "default", "https://git.example.com/any", "kube-system"))
    guarded.wait_record("a2", decision="deny", kind="Application")

    answer = guarded.admin.request_with_warnings("POST", apps, body=app(guarded, "ok", team,
                                                                        "https://git.example.com/team-a/web", ns))
    created = answer.body
    assert created["spec"]["project"] == team
    # this webhook was told of no reconciler watching this namespace (--application-namespaces: driftguard-system)
    assert answer.warnings == (
        f"Application {ns}/ok: no driftguard reconciler watches its namespace, so nothing will sync it; create it in "
        "driftguard-system, or add the namespace to --application-namespaces (the reconciler's and the webhook's)",)
    # the admin narrows the project; an unrelated edit of the Application is still admitted…
    guarded.admin.request("PATCH", f"/apis/driftguard.io/v1alpha1/namespaces/{ns}/projects/{team}",
                          content_type=MERGE, body={"spec": {"sourceRepos": ["https://git.example.com/team-b/*"]}})
    guarded.admin.request("PATCH", f"{apps}/ok", content_type=MERGE, body={"metadata": {"labels": {"tier": "web"}}})
    # …but re-pointing it is judged against the project as it is now
    with pytest.raises(KubeError) as error:
        guarded.admin.request("PATCH", f"{apps}/ok", content_type=MERGE,
                              body={"spec": {"source": {"repoURL": "https://git.example.com/team-a/other"}}})
    assert "is not one of the project's sourceRepos (https://git.example.com/team-b/*)" in guarded.denied_by_us(
        error.value, "applications")
