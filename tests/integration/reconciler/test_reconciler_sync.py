"""Sync: a commit is applied, a change updates only what changed, a removal prunes, a revert rolls back."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from support.reconciler_harness import TEST_GROUP, Harness, Repo, configmap, wait_for

from driftguard.core.contract import read_stamp

pytestmark = pytest.mark.integration


def rv(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


def test_commit_is_applied_and_stamped(harness: Harness, repo: Repo) -> None:
    repo.write("app/config.yaml", [configmap("alpha", {"color": "blue"}), configmap("beta", {"size": "3"})])
    repo.write("app/README.md", "not a manifest")
    repo.write("app/.github/workflow.yaml", "on: push")  # hidden: ignored
    sha = repo.commit("first")
    harness.make_app("svc", repo)
    harness.start()

    status = harness.wait_synced("svc", sha)

    stamp = read_stamp(harness.cm("alpha"))
    assert stamp is not None
    assert (stamp.application, stamp.source.commit, stamp.source.author, stamp.source.path) == (
        f"{harness.namespace}/svc", sha, "alice@org", "app/config.yaml")
    assert stamp.declared == {"data": {"color": "blue"}}
    assert status["inventoryCount"] == 2
    assert status["sync"]["author"] == "alice@org"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["lastSyncResult"]["created"] == 2


def test_change_updates_only_changed_objects(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"color": "blue"}))
    repo.write("app/b.yaml", configmap("beta", {"size": "3"}))
    repo.write("app/s.yaml", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                              "stringData": {"password": "hunter2"}})
    first = repo.commit("first")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", first)
    before = {name: rv(harness.cm(name)) for name in ("alpha", "beta")}
    secret_rv = rv(harness.get(f"/api/v1/namespaces/{harness.namespace}/secrets/creds"))

    repo.write("app/a.yaml", configmap("alpha", {"color": "green"}))
    second = harness.commit_and_sync(repo, "svc", "alpha goes green")

    alpha, beta = harness.cm("alpha"), harness.cm("beta")
    assert alpha is not None and beta is not None
    assert alpha["data"] == {"color": "green"}
    assert rv(alpha) != before["alpha"]
    assert rv(beta) == before["beta"], "an object the commit did not touch was rewritten"
    assert read_stamp(beta).source.commit == first  # type: ignore[union-attr]
    assert read_stamp(alpha).source.commit == second  # type: ignore[union-attr]
    assert rv(harness.get(f"/api/v1/namespaces/{harness.namespace}/secrets/creds")) == secret_rv

    harness.refresh("svc")  # a forced full resync of an unchanged revision writes nothing
    wait_for(lambda: harness.status("svc")["lastSyncResult"].get("unchanged") == 3, what="a no-op resync")
    assert {rv(harness.cm(n)) for n in ("alpha", "beta")} == {rv(alpha), rv(beta)}


def test_deleted_file_is_pruned(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"k": "v"}))
    repo.write("app/b.yaml", configmap("beta", {"k": "v"}))
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("two"))

    repo.remove("app/b.yaml")
    status = harness.commit_and_sync(repo, "svc", "drop beta")

    wait_for(lambda: harness.cm("beta") is None, what="beta pruned")
    assert harness.cm("alpha") is not None
    assert harness.condition("svc", "Pruned")["message"] == f"deleted ConfigMap {harness.namespace}/beta"
    assert harness.status("svc")["inventoryCount"] == 1
    assert status


def test_prune_disabled_keeps_and_reports(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"k": "v"}))
    repo.write("app/b.yaml", configmap("beta", {"k": "v"}))
    harness.make_app("svc", repo, prune=False)
    harness.start()
    harness.wait_synced("svc", repo.commit("two"))

    repo.remove("app/b.yaml")
    sha = repo.commit("drop beta")
    harness.refresh("svc")

    pruned = harness.wait_condition("svc", "Pruned", "False", "PruneDisabled")
    assert f"ConfigMap {harness.namespace}/beta" in pruned["message"]
    status = harness.status("svc")
    assert status["sync"] == status["sync"] | {"status": "OutOfSync", "revision": sha}
    assert harness.cm("beta") is not None
    assert status["inventoryCount"] == 2  # still ours: enabling prune later deletes it

    harness.patch_app("svc", {"spec": {"syncPolicy": {"automated": {"prune": True}}}})
    wait_for(lambda: harness.cm("beta") is None, what="beta pruned once prune is enabled")


def test_git_revert_rolls_back(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"image": "v1"}))
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", repo.commit("v1"))
    repo.write("app/a.yaml", configmap("alpha", {"image": "v2"}))
    repo.write("app/b.yaml", configmap("beta", {"new": "thing"}))
    bad = harness.commit_and_sync(repo, "svc", "v2")
    assert harness.cm("alpha")["data"] == {"image": "v2"}  # type: ignore[index]

    repo.git("revert", "--no-edit", bad)
    harness.commit_and_sync(repo, "svc", "revert")  # the revert commit is HEAD already; empty commit on top

    assert harness.cm("alpha")["data"] == {"image": "v1"}  # type: ignore[index]
    wait_for(lambda: harness.cm("beta") is None, what="beta removed by the revert")


def test_polling_picks_up_commits_without_a_push(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"n": "1"}))
    harness.make_app("svc", repo, refreshInterval="500ms")
    harness.start()
    harness.wait_synced("svc", repo.commit("one"))
    repo.write("app/a.yaml", configmap("alpha", {"n": "2"}))
    sha = repo.commit("two")
    harness.wait_synced("svc", sha, timeout=5)
    assert harness.cm("alpha")["data"] == {"n": "2"}  # type: ignore[index]


def test_crd_and_its_custom_resource_in_one_commit(harness: Harness, repo: Repo) -> None:
    group, kind = TEST_GROUP, f"Widget{secrets.token_hex(3)}"
    plural = kind.lower() + "s"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "size": {"type": "integer"}}}}}}}]},
    }
    widget = {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "w1"}, "spec": {"size": 3}}
    repo.write("app/widget.yaml", widget)  # sorts before crd.yaml: order comes from the apply table
    repo.write("app/z-crd.yaml", crd)
    harness.make_app("svc", repo)
    harness.start()

    harness.wait_synced("svc", repo.commit("crd and cr"), timeout=30)

    live = harness.get(f"/apis/{group}/v1/namespaces/{harness.namespace}/{plural}/w1")
    assert live is not None and live["spec"] == {"size": 3}
    assert harness.status("svc")["inventoryCount"] == 2


def test_two_applications_never_prune_each_other(harness: Harness, repo: Repo) -> None:
    repo.write("a/x.yaml", configmap("x", {"owner": "a"}))
    repo.write("a/y.yaml", configmap("y", {"owner": "a"}))
    repo.write("b/z.yaml", configmap("z", {"owner": "b"}))
    repo.write("b/x.yaml", configmap("x", {"owner": "b"}))  # b also claims a's object
    sha = repo.commit("two apps")
    harness.make_app("a", repo, path="a")
    harness.start()
    harness.wait_synced("a", sha)
    harness.make_app("b", repo, path="b")
    failed = harness.wait_condition("b", "Applied", "False", "ApplyFailed")
    assert f"already managed by Application {harness.namespace}/a" in failed["message"]
    assert harness.cm("x")["data"] == {"owner": "a"}  # type: ignore[index]

    repo.remove("b/x.yaml")  # b drops its claim: x is not b's to prune
    repo.remove("a/y.yaml")  # a drops y: pruned, and z (b's) stays
    sha = harness.commit_and_sync(repo, "a", "drop y and b's claim on x")
    harness.refresh("b")
    harness.wait_synced("b", sha)

    assert harness.cm("x") is not None and harness.cm("z") is not None
    wait_for(lambda: harness.cm("y") is None, what="y pruned by a")


def test_forged_stamp_is_never_pruned(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"k": "v"}))
    sha = repo.commit("one")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", sha)
    forged = configmap("innocent", {"k": "v"}, labels={"driftguard.io/managed": "true"},
                       annotations={"driftguard.io/application": f"{harness.namespace}/svc"})
    harness.admin.request("POST", f"/api/v1/namespaces/{harness.namespace}/configmaps", body=forged)

    repo.remove("app/a.yaml")
    repo.write("app/b.yaml", configmap("beta", {"k": "v"}))
    harness.commit_and_sync(repo, "svc", "replace alpha by beta")

    assert harness.cm("alpha") is None
    assert harness.cm("innocent") is not None, "an object outside the inventory was pruned"
