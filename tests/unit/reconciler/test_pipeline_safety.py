"""The sync pipeline's safety rules, against an in-memory cluster and source: a source, render or empty
render problem stops the cycle before anything is applied *or pruned*, and the inventory is saved
before the first create."""

from __future__ import annotations

from typing import Any, cast

import pytest
from support.fake_cluster import FakeCluster, FakeSource
from support.reconciler_builders import APP, REV1, REV2, cm, desired

from driftguard.core.changes import Action
from driftguard.core.inventory import Inventory
from driftguard.kube.resources import Cluster
from reconciler.application import AppSpec, parse_application
from reconciler.apply import Applier, Mode
from reconciler.gitsource import GitSource, SourceError
from reconciler.reconcile import Memory, Reconciler, Result

WEB = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n"
API = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata: {color: green}\n"


def app_with(**sync_policy: Any) -> AppSpec:
    return parse_application({
        "metadata": {"name": "svc", "namespace": "driftguard-system"},
        "spec": {"source": {"repoURL": "https://git.example/org/repo", "path": "app"},
                 "destination": {"namespace": "prod"},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, **sync_policy}}})


class Run:
    """A cluster holding one object the Application created earlier ("old", in its inventory)."""

    def __init__(self, source: FakeSource, app: AppSpec = APP) -> None:
        self.cluster = FakeCluster()
        applier = Applier(cast(Cluster, self.cluster), concurrency=1)
        old = desired(cm("old"), revision=REV1)
        applier.sync_all([old], Mode())
        self.memory = Memory(inventory=Inventory.of([old.entry]))
        self.before = self.memory.inventory
        self.cluster.calls.clear()
        self.cluster.log.clear()
        self.saved: list[tuple[Inventory, int]] = []  # (inventory, writes made before it was saved)
        self.reconciler = Reconciler(cast(Cluster, self.cluster), cast(GitSource, source), applier)
        self.app = app

    def sync(self) -> Result:
        return self.reconciler.reconcile(self.app, self.memory, save_inventory=self.save)

    def save(self, inventory: Inventory) -> None:
        self.saved.append((inventory, len(self.cluster.log)))


STOPS = [
    pytest.param(FakeSource(REV2, resolve_error=SourceError("FetchFailed", "could not read from remote")),
                 "SourceReady", "FetchFailed", id="unreachable-source"),
    pytest.param(FakeSource(REV2, read_error=SourceError("PathNotFound", "path app not found at 2222222")),
                 "SourceReady", "PathNotFound", id="path-missing"),
    pytest.param(FakeSource(REV2, {"app/web.yaml": WEB, "app/bad.yaml": b"kind: [unclosed\n"}),
                 "RenderReady", "InvalidManifest", id="invalid-manifest"),
    pytest.param(FakeSource(REV2, {"app/web.yaml": WEB, "app/web2.yaml": WEB}),
                 "RenderReady", "InvalidManifest", id="duplicate-object"),
    pytest.param(FakeSource(REV2, {"app/README.md": b"# nothing here"}), "RenderReady", "EmptyRender",
                 id="empty-render"),
]


@pytest.mark.parametrize(("source", "condition", "reason"), STOPS)
def test_a_problem_stops_the_cycle_before_anything_is_applied_or_pruned(
        source: FakeSource, condition: str, reason: str) -> None:
    run = Run(source)

    result = run.sync()

    problem = result.report.problem
    assert problem is not None and (problem.condition, problem.reason) == (condition, reason)
    assert "nothing" in problem.message and "applied" in problem.message
    assert run.cluster.writes() == 0 and run.cluster.calls["apply-dry-run"] == 0, "nothing applied"
    assert not result.report.applied.changes and not result.report.pruned.changes
    assert ("ConfigMap", "prod", "old") in run.cluster.objects, "nothing pruned"
    assert run.memory.inventory == run.before and run.saved == [], "the inventory is untouched"


def test_an_empty_render_prunes_everything_only_when_allowed() -> None:
    run = Run(FakeSource(REV2, {}), app=app_with(allowEmpty=True))

    result = run.sync()

    assert result.report.problem is None
    assert [c.action for c in result.report.pruned.changes] == [Action.DELETED]
    assert run.cluster.objects == {} and len(run.memory.inventory) == 0


def test_the_inventory_is_saved_before_the_first_create() -> None:
    run = Run(FakeSource(REV2, {"app/web.yaml": WEB, "app/api.yaml": API}))

    result = run.sync()

    assert result.report.problem is None
    assert [c.action for c in result.report.applied.changes] == [Action.CREATED, Action.CREATED]
    assert len(run.saved) == 1
    saved, writes_before = run.saved[0]
    assert writes_before == 0, "saved before anything was created"
    assert {e.ref.name for e in saved.entries} == {"old", "web", "api"}, "old plus new: no crash forgets"
    assert [verb for verb, _ in run.cluster.log].count("apply") == 2
    assert {e.ref.name for e in run.memory.inventory.entries} == {"web", "api"}, "old pruned afterwards"


def test_nothing_new_to_create_saves_nothing_before_applying() -> None:
    run = Run(FakeSource(REV2, {"app/old.yaml": cm_yaml("old")}))

    result = run.sync()

    assert result.report.problem is None and run.saved == []
    assert run.memory.inventory == run.before


def cm_yaml(name: str) -> bytes:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{color: blue}}\n".encode()


def test_a_revision_that_fails_to_render_is_not_parsed_again_until_something_changes() -> None:
    source = FakeSource(REV2, {"app/web.yaml": WEB, "app/bad.yaml": b"kind: [unclosed\n"})
    run = Run(source)
    first, second = run.sync(), run.sync()
    assert first.report.problem is not None and second.report.problem == first.report.problem
    assert source.calls["read"] == 1, "the failure is remembered for (revision, path, render options)"
    run.app = app_with(allowEmpty=True)  # a spec change that does not touch rendering: still remembered
    run.sync()
    assert source.calls["read"] == 1
    source.revision = REV1
    run.sync()
    assert source.calls["read"] == 2, "a new revision is rendered"
