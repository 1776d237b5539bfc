"""Multi-source Applications at admission: every repository they read is judged against the Project."""

from __future__ import annotations

from typing import Any

from webhook.applications import ProjectRead, needs_project, project_denial, risky_changes

PROJECT = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project", "metadata": {"name": "team-a"},
           "spec": {"sourceRepos": ["https://git.example/team-a/*"], "destinations": [{"namespace": "team-a"}],
                    "sourceNamespaces": ["driftguard-system"]}}


def app(*urls: str) -> dict[str, Any]:
    sources = [{"repoURL": urls[0], "path": "chart"}, *({"repoURL": u, "ref": f"r{i}"} for i, u in enumerate(urls[1:]))]
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "driftguard-system"},
            "spec": {"project": "team-a", "destination": {"namespace": "team-a"}, "sources": sources}}


def test_a_ref_source_outside_the_projects_repositories_is_denied() -> None:
    read = ProjectRead("team-a", PROJECT)
    assert project_denial(app("https://git.example/team-a/chart", "https://git.example/team-a/values"), read) == ""
    denial = project_denial(app("https://git.example/team-a/chart", "https://git.example/team-b/secrets"), read)
    assert "violates its project" in denial and "https://git.example/team-b/secrets" in denial


def test_changing_a_ref_sources_repository_is_judged_and_recorded() -> None:
    old, new = app("https://git.example/team-a/chart", "https://git.example/team-a/values"), \
        app("https://git.example/team-a/chart", "https://git.example/team-b/values")
    request = {"operation": "UPDATE", "kind": {"group": "driftguard.io", "version": "v1alpha1", "kind": "Application"},
               "resource": {"group": "driftguard.io", "version": "v1alpha1", "resource": "applications"},
               "oldObject": old, "object": new}
    assert needs_project(request)  # type: ignore[arg-type]
    assert risky_changes(old, new) == ["changes spec.sources"]
