"""The Application spec: Argo CD's shape, driftguard's defaults, problems instead of exceptions."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.application import AppKey, normalize_path, parse_application, parse_duration

ARGO_EXAMPLE: dict[str, Any] = {
    "apiVersion": "driftguard.io/v1alpha1",
    "kind": "Application",
    "metadata": {"name": "my-service", "namespace": "argocd", "generation": 4},
    "spec": {
        "project": "default",
        "source": {"repoURL": "https://github.com/org/k8s-manifests", "targetRevision": "main",
                   "path": "services/my-service/production"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "production"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
    },
}


def app(**spec: Any) -> dict[str, Any]:
    base = {"source": {"repoURL": "/srv/repo"}}
    return {"metadata": {"name": "a", "namespace": "ns"}, "spec": {**base, **spec}}


def test_the_argo_cd_example_works_unchanged() -> None:
    spec = parse_application(ARGO_EXAMPLE)
    assert spec.valid and not spec.warnings
    assert spec.key == AppKey("argocd", "my-service") and str(spec.key) == "argocd/my-service"
    assert (spec.source.repo_url, spec.source.target_revision, spec.source.path) == (
        "https://github.com/org/k8s-manifests", "main", "services/my-service/production")
    assert (spec.destination_namespace, spec.automated, spec.prune, spec.self_heal) == ("production", True, True, True)
    assert (spec.enforcement, spec.refresh_interval, spec.generation) == ("deny", 3.0, 4)


def test_defaults_follow_argo_cd() -> None:
    spec = parse_application(app())
    assert spec.valid
    assert (spec.automated, spec.prune, spec.self_heal, spec.allow_empty, spec.create_namespace) == (
        False, False, False, False, False)
    assert (spec.source.target_revision, spec.source.path, spec.project) == ("HEAD", "", "default")


@pytest.mark.parametrize(("spec", "problem"), [
    ({"source": {}}, "spec.source.repoURL is required"),
    ({"destination": {"server": "https://other:6443"}}, "destination 'https://other:6443' is not supported"),
    ({"destination": {"name": "prod-cluster"}}, "destination 'prod-cluster' is not supported"),
    ({"enforcement": "block"}, "enforcement 'block' must be one of deny, warn, off"),
    ({"refreshInterval": "soon"}, "refreshInterval 'soon' is not a duration"),
    ({"source": {"repoURL": "x", "targetRevision": "--upload-pack=evil"}}, "is not a branch, tag or commit"),
    ({"source": {"repoURL": "x", "targetRevision": "a..b"}}, "is not a branch, tag or commit"),
    ({"source": {"repoURL": "x", "path": "../../etc"}}, "must be relative and stay inside the repository"),
    ({"source": {"repoURL": "x", "path": "/abs"}}, "must be relative"),
])
def test_problems(spec: dict[str, Any], problem: str) -> None:
    parsed = parse_application(app(**spec))
    assert not parsed.valid
    assert any(problem in p for p in parsed.problems), parsed.problems


@pytest.mark.parametrize(("destination", "valid"), [
    ({}, True), ({"server": ""}, True), ({"server": "https://kubernetes.default.svc"}, True),
    ({"name": "in-cluster"}, True), ({"server": "https://kubernetes.default.svc:443"}, False),
])
def test_only_the_in_cluster_destination(destination: dict[str, str], valid: bool) -> None:
    assert parse_application(app(destination=destination)).valid is valid


def test_sync_options_and_allow_empty() -> None:
    spec = parse_application(app(syncPolicy={
        "automated": {"allowEmpty": True},
        "syncOptions": ["CreateNamespace=true", "ServerSideApply=true", "Replace=true"],
    }))
    assert spec.create_namespace and spec.allow_empty and spec.automated
    assert spec.warnings == ("syncOptions Replace=true are not supported and are ignored",)
    assert parse_application(app(syncPolicy={"allowEmpty": True})).allow_empty


def test_secret_ref_and_interval() -> None:
    spec = parse_application(app(source={"repoURL": "git@github.com:org/repo.git", "secretRef": {"name": "creds"}},
                                 refreshInterval="1m30s", enforcement="warn"))
    assert (spec.source.secret_name, spec.refresh_interval, spec.enforcement) == ("creds", 90.0, "warn")
    assert parse_application(app(refreshInterval="1ms")).refresh_interval == 0.2  # floored


@pytest.mark.parametrize(("text", "seconds"), [
    ("3s", 3.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5), ("10", 10.0), ("250us", 0.00025),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "3x", "1m 30s", "-1s", "3s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(("path", "normal"), [
    ("", ""), (".", ""), ("./", ""), ("a/b/", "a/b"), ("./a//b", "a/b"), ("../a", None), ("a/../b", None), ("/a", None),
])
def test_paths(path: str, normal: str | None) -> None:
    assert normalize_path(path) == normal
