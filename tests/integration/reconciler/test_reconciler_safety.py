"""Safety: a bad source, ref, path, render or spec applies nothing, prunes nothing, says why, and recovers."""

from __future__ import annotations

import pytest
from support.reconciler_harness import Harness, Repo, configmap

pytestmark = pytest.mark.integration


@pytest.fixture
def synced(harness: Harness, repo: Repo) -> str:
    """An Application ``svc`` synced with two ConfigMaps, alpha and beta."""
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.write("app/b.yaml", configmap("beta", {"v": "1"}))
    sha = repo.commit("good")
    harness.make_app("svc", repo)
    harness.start()
    harness.wait_synced("svc", sha)
    return sha


def assert_untouched(harness: Harness) -> None:
    alpha, beta = harness.cm("alpha"), harness.cm("beta")
    assert alpha is not None and beta is not None, "nothing may be pruned"
    assert alpha["data"] == {"v": "1"} and beta["data"] == {"v": "1"}, "nothing may be applied"


def test_unreachable_repo(harness: Harness, repo: Repo, synced: str, tmp_path: object) -> None:
    harness.patch_app("svc", {"spec": {"source": {"repoURL": "/nonexistent/repo.git"}}})
    condition = harness.wait_condition("svc", "SourceReady", "False", "FetchFailed")
    assert "/nonexistent/repo.git" in condition["message"] and "nothing applied or pruned" in condition["message"]
    assert harness.status("svc")["sync"]["status"] == "Error"
    assert_untouched(harness)

    harness.patch_app("svc", {"spec": {"source": {"repoURL": repo.url}}})
    harness.wait_condition("svc", "SourceReady", "True")
    harness.wait_synced("svc", synced)


def test_bad_ref_then_branch_appears(harness: Harness, repo: Repo, synced: str) -> None:
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": "release"}}})
    condition = harness.wait_condition("svc", "SourceReady", "False", "RevisionNotFound")
    assert "'release'" in condition["message"]
    assert_untouched(harness)

    repo.git("branch", "release")
    harness.refresh("svc")
    harness.wait_synced("svc", synced)


def test_tag_and_commit_targets(harness: Harness, repo: Repo, synced: str) -> None:
    repo.git("tag", "v1")
    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))
    repo.commit("v2 on main")
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": "v1"}}})
    harness.wait_synced("svc", synced)
    assert harness.cm("alpha")["data"] == {"v": "1"}  # type: ignore[index]
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": synced[:10]}}})
    harness.wait_synced("svc", synced)


def test_missing_and_empty_path(harness: Harness, repo: Repo, synced: str) -> None:
    harness.patch_app("svc", {"spec": {"source": {"path": "nowhere"}}})
    harness.wait_condition("svc", "SourceReady", "False", "PathNotFound")
    assert_untouched(harness)

    repo.write("empty/.gitkeep", "")  # nothing at all to render (a README would be listed instead)
    sha = repo.commit("an empty path")
    harness.patch_app("svc", {"spec": {"source": {"path": "empty"}}})
    condition = harness.wait_condition("svc", "RenderReady", "False", "EmptyRender")
    assert "allowEmpty" in condition["message"]
    assert_untouched(harness)

    harness.patch_app("svc", {"spec": {"syncPolicy": {"allowEmpty": True}}})
    harness.wait_synced("svc", sha)
    assert harness.cm("alpha") is None and harness.cm("beta") is None  # told to: everything pruned


def test_broken_yaml_applies_nothing_from_that_revision(harness: Harness, repo: Repo, synced: str) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))  # a good change in the same commit...
    repo.remove("app/b.yaml")  # ...and a removal...
    repo.write("app/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: b: c\n")
    repo.commit("broken")
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "RenderReady", "False", "InvalidManifest")
    assert condition["message"].startswith("app/broken.yaml:6: invalid YAML: mapping values are not allowed")
    assert_untouched(harness)

    repo.write("app/broken.yaml", configmap("gamma", {"v": "1"}))
    fixed = harness.commit_and_sync(repo, "svc", "fixed")
    assert harness.cm("alpha")["data"] == {"v": "2"}  # type: ignore[index]
    assert harness.cm("beta") is None and harness.cm("gamma") is not None
    assert harness.status("svc")["sync"]["revision"] == fixed


def test_object_without_name_is_named_by_file_and_line(harness: Harness, repo: Repo, synced: str) -> None:
    repo.write("app/c.yaml", "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\n"
                             "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    repo.commit("nameless")
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "RenderReady", "False", "InvalidManifest")
    assert condition["message"].startswith("app/c.yaml:7: ConfigMap has no metadata.name")
    assert harness.cm("ok") is None


def test_one_failing_object_does_not_stop_the_others(harness: Harness, repo: Repo, synced: str) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))
    repo.write("app/bad.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"},
                                "data": {"k": 42}})  # the API server rejects a number in data
    repo.commit("one bad object")
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "Applied", "False", "ApplyFailed")
    assert f"ConfigMap {harness.namespace}/bad failed" in condition["message"]
    assert harness.cm("alpha")["data"] == {"v": "2"}  # type: ignore[index]


def test_unsupported_destination_is_a_condition(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.commit("one")
    harness.make_app("remote", repo)
    harness.patch_app("remote", {"spec": {"destination": {"server": "https://elsewhere:6443"}}})
    harness.start()
    condition = harness.wait_condition("remote", "SpecValid", "False", "InvalidSpec")
    assert "https://elsewhere:6443" in condition["message"] and "not supported" in condition["message"]
    assert harness.status("remote")["sync"]["status"] == "Error"
    assert harness.cm("alpha") is None


def test_without_automated_nothing_is_applied(harness: Harness, repo: Repo) -> None:
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.commit("one")
    harness.make_app("manual", repo, automated=False)
    harness.start()
    ready = harness.wait_condition("manual", "Ready", "False", "OutOfSync")
    assert "automated sync is off" in ready["message"]
    assert harness.cm("alpha") is None
