"""The sync pipeline under a Project: a missing, unreadable or violated project stops the cycle before git
is contacted and before anything is applied or pruned; an object the project refuses is neither applied
nor pruned (its inventory entry stays) while the rest syncs, and the report names each with its rule."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from support.fake_cluster import FakeCluster, FakeSource
from support.reconciler_builders import REV1, REV2, cm, desired

from driftguard.core.changes import Action
from driftguard.core.inventory import Inventory
from driftguard.kube.resources import Cluster
from reconciler.application import AppSpec, is_local_url, parse_application
from reconciler.apply import Applier, Mode
from reconciler.gitsource import GitSource
from reconciler.projects import ProjectSource
from reconciler.reconcile import Memory, Reconciler, Result
from reconciler.status import Snapshot, compose

PROJECTS_NS = "driftguard-system"
REV2_TIME = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
WEB = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n"
SYSTEM_CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: grab, namespace: kube-system}\ndata: {a: b}\n"
SYSTEM_NS = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: driftguard-system}\n"


def app(project: str = "default", namespace: str = PROJECTS_NS, repo: str = "https://git.example/org/repo",
        destination: str = "prod") -> AppSpec:
    return parse_application({
        "metadata": {"name": "svc", "namespace": namespace},
        "spec": {"project": project, "source": {"repoURL": repo, "path": "app"},
                 "destination": {"namespace": destination},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}})


def project_object(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
            "metadata": {"name": name, "namespace": PROJECTS_NS}, "spec": spec}


class Run:
    """A cluster holding one ConfigMap the Application created earlier (``old``, in its inventory)."""

    def __init__(self, source: FakeSource, spec: AppSpec, *, old: dict[str, Any] | None = None) -> None:
        self.cluster = FakeCluster()
        applier = Applier(cast(Cluster, self.cluster), concurrency=1)
        before = desired(old or cm("old"), revision=REV1, app=spec)
        applier.sync_all([before], Mode())
        self.memory = Memory(inventory=Inventory.of([before.entry]))
        self.before = self.memory.inventory
        self.cluster.calls.clear()
        self.cluster.log.clear()
        self.source = source
        self.reconciler = Reconciler(cast(Cluster, self.cluster), cast(GitSource, source), applier,
                                     projects=ProjectSource(cast(Cluster, self.cluster), PROJECTS_NS, PROJECTS_NS))
        self.spec = spec

    def sync(self) -> Result:
        return self.reconciler.reconcile(self.spec, self.memory, save_inventory=lambda _: None)

    def add_project(self, name: str, **spec: Any) -> None:
        self.cluster.put(project_object(name, **spec))


TEAM = {"sourceRepos": ["https://git.example/team-a/*"], "destinations": [{"namespace": "team-a-*"}],
        "sourceNamespaces": ["team-a"]}
STOPS = [
    pytest.param(app("team-b"), {}, "ProjectNotFound", "Project team-b (spec.project) does not exist", id="missing"),
    pytest.param(app("team-a", repo="https://git.example/team-b/web", destination="team-a-prod"), TEAM,
                 "ProjectViolation", "repoURL https://git.example/team-b/web is not one of the project's sourceRepos",
                 id="foreign-repo"),
    pytest.param(app("team-a", repo="/var/cache/driftguard/git/x", destination="team-a-prod"), TEAM,
                 "ProjectViolation", "sourceRepos", id="local-path"),
    pytest.param(app("team-a", repo="https://git.example/team-a/web", destination="kube-system"), TEAM,
                 "ProjectViolation", "destination namespace kube-system is not one of the project's destinations",
                 id="destination"),
    pytest.param(app("team-a", namespace="team-b", repo="https://git.example/team-a/web", destination="team-a-x"),
                 TEAM, "ProjectViolation", "Applications in namespace team-b may not use this project",
                 id="source-namespace"),
    pytest.param(app("default", destination="kube-system"), {}, "ProjectViolation",
                 "(Project default (built in), destinations)", id="builtin-default-destination"),
    pytest.param(app("team-a"), {"sourceRepos": "*"}, "InvalidProject", "Project team-a: spec.sourceRepos must be",
                 id="invalid-project"),
]


@pytest.mark.parametrize(("spec", "team_a", "reason", "message"), STOPS)
def test_a_project_problem_stops_before_git_and_before_anything_is_applied_or_pruned(
        spec: AppSpec, team_a: dict[str, Any], reason: str, message: str) -> None:
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB}), spec)
    if team_a:
        run.add_project("team-a", **team_a)

    result = run.sync()

    problem = result.report.problem
    assert problem is not None and (problem.condition, problem.reason) == ("ProjectPermitted", reason)
    assert message in problem.message and "nothing applied or pruned" in problem.message
    assert run.source.calls["resolve"] == 0 and run.source.calls["read"] == 0, "git never contacted"
    assert run.cluster.writes() == 0 and not result.report.applied.changes and not result.report.pruned.changes
    assert ("ConfigMap", spec.destination_namespace, "old") in run.cluster.objects, "nothing pruned"
    assert run.memory.inventory == run.before
    status = compose(Snapshot(spec, result.report, run.memory.inventory), {}, REV2_TIME)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["ProjectPermitted"]["status"] == "False" and conditions["ProjectPermitted"]["reason"] == reason
    assert conditions["Ready"]["reason"] == reason and "SourceReady" not in conditions
    assert status["sync"]["status"] == "Error"


def test_refused_objects_are_neither_applied_nor_pruned_and_the_rest_syncs() -> None:
    grab = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grab", "namespace": "kube-system"},
            "data": {"a": "b"}}
    # "grab" was created by an earlier sync (before the project existed); git still declares it.
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB, "app/grab.yaml": SYSTEM_CM, "app/ns.yaml": SYSTEM_NS}),
              app(), old=grab)

    result = run.sync()

    report = result.report
    assert report.problem is None and report.project == "default (built in)"
    assert [(str(ref), why.endswith("(Project default (built in), destinations)")) for ref, why in report.refused
            ] == [("ConfigMap kube-system/grab", True), ("Namespace driftguard-system", True)]
    assert [(c.action, c.ref.name) for c in report.applied.changes] == [(Action.CREATED, "web")]
    assert not report.pruned.changes, "a refused object still declared is not pruned"
    assert ("ConfigMap", "kube-system", "grab") in run.cluster.objects
    assert ("Namespace", "", "driftguard-system") not in run.cluster.objects
    assert {e.ref.name for e in run.memory.inventory.entries} == {"web", "grab"}, "grab's entry kept, ns never added"
    assert [d.ref.name for d in result.desired] == ["web"], "self-heal never sees a refused object"
    assert report.failed, "retried (with backoff) until git or the project changes"

    status = compose(Snapshot(run.spec, report, run.memory.inventory), {}, REV2_TIME)
    conditions = {c["type"]: c for c in status["conditions"]}
    permitted = conditions["ProjectPermitted"]
    assert (permitted["status"], permitted["reason"]) == ("False", "ProjectViolation")
    assert permitted["message"].startswith("not applied or pruned, the project does not permit them: "
                                           "ConfigMap kube-system/grab: namespace kube-system is not one of the "
                                           "project's destinations (*, !kube-system, !driftguard-system)")
    assert conditions["Ready"]["reason"] == "ProjectViolation" and status["sync"]["status"] == "Error"


def test_a_declared_project_replaces_the_builtin_default() -> None:
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB, "app/grab.yaml": SYSTEM_CM}), app())
    run.add_project("default", sourceRepos=["*"], destinations=[{"namespace": "*"}])

    result = run.sync()

    assert result.report.problem is None and not result.report.refused and result.report.project == "default"
    assert ("ConfigMap", "kube-system", "grab") in run.cluster.objects
    status = compose(Snapshot(run.spec, result.report, run.memory.inventory), {}, REV2_TIME)
    permitted = next(c for c in status["conditions"] if c["type"] == "ProjectPermitted")
    assert (permitted["status"], permitted["message"]) == ("True", "Project default permits every declared object")


@pytest.mark.parametrize(("url", "local"), [
    ("https://git.example/org/repo", False),
    ("http://git.example/org/repo", False),
    ("ssh://git@git.example/org/repo", False),
    ("git://git.example/org/repo", False),
    ("git@github.com:org/repo.git", False),
    ("file:///var/cache/driftguard/git/abc.git", True),
    ("/var/cache/driftguard/git/abc.git", True),
    ("./repo", True),
    ("repo", True),
    ("../other/repo", True),
    ("https:///etc/passwd", True),  # no host: git would not fetch it over the network
    ("file://localhost/srv/repo", True),
])
def test_local_urls(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_a_local_path_is_refused_unless_local_repos_are_allowed() -> None:
    spec = app(repo="/var/cache/driftguard/git/0123abcd.git")
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB}), spec)

    result = run.sync()

    problem = result.report.problem
    assert problem is not None and (problem.condition, problem.reason) == ("SourceReady", "LocalSourceRefused")
    assert "run the reconciler with --allow-local-repos" in problem.message
    assert run.source.calls["resolve"] == 0 and run.cluster.writes() == 0

    run.reconciler.allow_local = True
    assert run.sync().report.problem is None


def test_nothing_is_pruned_where_the_project_no_longer_reaches() -> None:
    grab = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grab", "namespace": "kube-system"},
            "data": {"a": "b"}}
    # "grab" was created by an earlier sync (before the project existed); git no longer declares it.
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB}), app(), old=grab)

    result = run.sync()

    report = result.report
    assert report.problem is None and not report.pruned.changes
    assert ("ConfigMap", "kube-system", "grab") in run.cluster.objects
    assert [(str(ref), why.split(":")[0]) for ref, why in report.refused] == [
        ("ConfigMap kube-system/grab", "no longer in git, not pruned")]
    assert {e.ref.name for e in run.memory.inventory.entries} == {"web", "grab"}, "kept, to be pruned once permitted"

    run.add_project("default", sourceRepos=["*"], destinations=[{"namespace": "*"}])
    again = run.sync()
    assert [c.ref.name for c in again.report.pruned.changes] == ["grab"] and not again.report.refused
    assert ("ConfigMap", "kube-system", "grab") not in run.cluster.objects
