"""The Application spec: Argo CD's shape, driftguard's defaults, problems instead of exceptions."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from reconciler.application import AppKey, credentials_refusal, normalize_path, parse_application, parse_duration

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


def _data(**values: str) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


B_CREDS = _data(username="bot", password="team-b-token", url="https://git.example.com/team-b/", project="team-b")


@pytest.mark.parametrize(("data", "repo", "project", "refusal"), [
    pytest.param(B_CREDS, "https://git.example.com/team-b/web", "team-b", "", id="served"),
    pytest.param(B_CREDS, "https://git.example.com/team-b/web.git", "team-b", "", id="served-.git"),
    pytest.param(B_CREDS, "https://git.example.com/team-b", "team-b", "", id="the-prefix-itself"),
    pytest.param(B_CREDS, "https://bot:x@git.example.com/team-b/web", "team-b", "", id="userinfo-ignored"),
    pytest.param(B_CREDS, "http://git.example.com/team-b/web", "team-b", "is plain http://: credentials are never "
                 "sent unencrypted", id="plain-http"),
    pytest.param(B_CREDS, "HTTP://10.0.0.9:8080/listener", "team-b", "plain http://", id="plain-http-any-case"),
    pytest.param(B_CREDS, "https://listener.example/x", "team-b", "repoURL https://listener.example/x is not under "
                 "the URLs Secret ns/b-creds (spec.source.secretRef) serves (https://git.example.com/team-b/): its "
                 "login is sent to those only", id="a-url-it-does-not-name"),
    pytest.param(B_CREDS, "https://git.example.com/team-b-evil/web", "team-b", "is not under", id="prefix-boundary"),
    pytest.param(B_CREDS, "https://git.example.com/team-b/web", "team-a",
                 "Secret ns/b-creds (spec.source.secretRef) serves projects team-b only, not project team-a",
                 id="another-project"),
    pytest.param(_data(token="t"), "https://git.example.com/x", "default", "does not name the repositories it serves",
                 id="unscoped-login"),
    pytest.param(_data(sshPrivateKey="KEY", url="git@git.example.com:team-b/"), "git@git.example.com:team-b/web",
                 "default", "", id="ssh-scp-prefix"),
    pytest.param(_data(sshPrivateKey="KEY", url="git@git.example.com:team-b/"), "git@git.example.com:team-a/web",
                 "default", "is not under", id="ssh-other-path"),
    pytest.param(_data(token="t", url="https://a.example/, https://b.example/org"), "https://b.example/org/r",
                 "default", "", id="several-urls"),
    pytest.param(_data(token="t", url="https://a.example/", projects="x, team-a"), "https://a.example/r", "team-a",
                 "", id="projects-list"),
    pytest.param(_data(**{"ca.crt": "PEM"}), "http://anywhere/x", "default", "", id="a-ca-alone-is-no-credential"),
    pytest.param(_data(password="p", url="oci://ghcr.io/acme"), "oci://ghcr.io/acme/charts", "default", "",
                 id="oci-registry"),
    pytest.param(_data(password="p", url="ghcr.io/acme"), "oci://ghcr.io/acme/charts", "default", "",
                 id="oci-argo-cd-scheme-less-secret"),
    pytest.param(_data(password="p", url="oci://ghcr.io/acme"), "ghcr.io/acme/charts", "default", "",
                 id="oci-scheme-less-repo-url"),
    pytest.param(_data(password="p", url="oci://ghcr.io/acme"), "oci://ghcr.io/acme-evil/charts", "default",
                 "is not under", id="oci-prefix-boundary"),
    pytest.param(_data(password="p", url="oci://ghcr.io/acme"), "oci://ghcr.io.evil/acme", "default",
                 "is not under", id="oci-other-host"),
])
def test_repository_credentials_serve_only_the_urls_and_projects_they_name(
        data: dict[str, str], repo: str, project: str, refusal: str) -> None:
    found = credentials_refusal(data, secret="ns/b-creds", repo_url=repo, project=project)
    if not refusal:
        assert found == ""
    else:
        assert refusal in found and "team-b-token" not in found


def _multi(*sources: dict[str, Any], **spec: Any) -> Any:
    return parse_application({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"sources": list(sources), **spec}})


def test_multi_source_one_rendered_and_named_refs() -> None:
    app = _multi({"repoURL": "https://git.example/charts", "path": "chart",
                  "helm": {"valueFiles": ["$values/prod.yaml"]}},
                 {"repoURL": "https://git.example/values", "targetRevision": "v1", "ref": "values"})
    assert app.problems == ()
    assert app.source.repo_url == "https://git.example/charts" and app.source.path == "chart"
    assert [(name, ref.repo_url, ref.target_revision) for name, ref in app.refs] == [
        ("values", "https://git.example/values", "v1")]


def test_multi_source_several_rendered_sources_are_named_by_their_index() -> None:
    app = _multi({"repoURL": "https://git.example/values", "ref": "values"},
                 {"repoURL": "https://git.example/base", "path": "base"},
                 {"repoURL": "oci://registry.example/charts", "chart": "web", "targetRevision": "^1.2",
                  "helm": {"valueFiles": ["$values/web.yaml"]}},
                 {"repoURL": "https://git.example/extra", "path": "overlay", "kustomize": {"namePrefix": "x-"}})
    assert app.problems == ()
    assert app.source_name == "spec.sources[1]" and app.source.path == "base"
    assert [(name, s.repo_url, s.render.chart) for name, s in app.extra_sources] == [
        ("sources[2]", "oci://registry.example/charts", "web"), ("sources[3]", "https://git.example/extra", "")]
    assert app.extra_sources[1][1].render.kustomize.name_prefix == "x-"
    assert _multi({"repoURL": "https://git.example/base", "path": "base"}).extra_sources == ()


@pytest.mark.parametrize(("sources", "problem"), [
    ([{"repoURL": "a", "ref": "v"}], "no source without ref, so nothing is rendered"),
    ([{"repoURL": "a", "path": "x"}, {"repoURL": "b", "path": "y", "helm": {"valueFiles": ["$nope/v.yaml"]}}],
     "spec.sources[1]: '$nope/v.yaml' names no ref source"),
    ([{"repoURL": "a", "path": "x"}, {"repoURL": "b", "ref": "v", "path": "p"}], "a ref source that is also rendered"),
    ([{"repoURL": "a", "path": "x"}, {"repoURL": "b", "ref": "bad name"}], "must be a unique name"),
    ([{"repoURL": "a", "path": "x", "helm": {"valueFiles": ["$other/v.yaml"]}}, {"repoURL": "b", "ref": "v"}],
     "'$other/v.yaml' names no ref source (declared: v)"),
    ([], "spec.sources must be a non-empty list"),
])
def test_multi_source_problems_name_the_rule(sources: list[dict[str, Any]], problem: str) -> None:
    assert any(problem in p for p in _multi(*sources).problems), _multi(*sources).problems


def test_prune_last_managed_namespace_metadata_and_retry() -> None:
    spec = parse_application(app(syncPolicy={
        "syncOptions": ["CreateNamespace=true", "PruneLast=true", "ApplyOutOfSyncOnly=true"],
        "managedNamespaceMetadata": {"labels": {"team": "blue"}, "annotations": {"owner": "blue@org"}},
        "retry": {"limit": 3, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "1m"}}}))
    assert spec.prune_last and not spec.warnings and not spec.problems
    assert (spec.namespace_labels, spec.namespace_annotations) == ((("team", "blue"),), (("owner", "blue@org"),))
    assert spec.retry is not None and (spec.retry.limit, spec.retry.duration, spec.retry.factor,
                                       spec.retry.max_duration) == (3, 10.0, 2.0, 60.0)
    defaults = parse_application(app(syncPolicy={"retry": {}})).retry  # Argo CD's defaults
    assert defaults is not None and (defaults.limit, defaults.duration, defaults.factor, defaults.max_duration) == (
        0, 5.0, 2.0, 180.0)
    assert parse_application(app(syncPolicy={"retry": {"limit": -1}})).retry.limit == -1  # type: ignore[union-attr]
    assert parse_application(app()).retry is None


@pytest.mark.parametrize(("policy", "says"), [
    ({"retry": {"backoff": {"duration": "soon"}}}, "syncPolicy.retry.backoff.duration 'soon' is not a duration"),
    ({"retry": {"backoff": {"factor": 0.5}}}, "factor must be at least 1"),
    ({"retry": {"limit": "many"}}, "syncPolicy.retry:"),
    ({"retry": "yes"}, "syncPolicy.retry must be an object"),
    ({"managedNamespaceMetadata": {"labels": {"driftguard.io/managed": "true"}},
      "syncOptions": ["CreateNamespace=true"]},
     "driftguard.io/managed are driftguard's own keys"),
    ({"managedNamespaceMetadata": {"labels": {"n": 1}}}, "labels must map names to strings"),
])
def test_sync_policy_problems(policy: dict[str, Any], says: str) -> None:
    problems = parse_application(app(syncPolicy=policy)).problems
    assert any(says in p for p in problems), problems


def test_managed_namespace_metadata_needs_create_namespace() -> None:
    spec = parse_application(app(syncPolicy={"managedNamespaceMetadata": {"labels": {"a": "b"}}}))
    assert spec.warnings == ("syncPolicy.managedNamespaceMetadata has no effect without syncOptions "
                             "CreateNamespace=true",)
