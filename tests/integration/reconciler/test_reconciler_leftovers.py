"""Git removes, the cluster follows — whoever else co-owns the field (issue 10, path 6).

The ``laptop`` user server-side-applies git's own values (admitted by any webhook: nothing changes) and so
co-owns those fields with the reconciler. When git then stops declaring them, the reconciler's apply
releases only its own ownership; without more the fields would stay while status said Synced.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap

from driftguard.kube import Kube

pytestmark = pytest.mark.integration


def laptop_apply(laptop: Kube, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    return laptop.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                          query={"fieldManager": "laptop-apply"})


def managers(obj: dict[str, Any]) -> set[str]:
    return {str(entry.get("manager")) for entry in obj["metadata"].get("managedFields") or []}


def test_a_field_git_removed_goes_even_when_a_user_co_owns_it(harness: Harness, repo: Repo, laptop: Kube) -> None:
    ns = harness.namespace
    repo.write("app/cm.yaml", configmap("settings", {"a": "1", "b": "2"}, labels={"team": "x"}))
    sha = repo.commit("a and b")
    harness.make_app("svc", repo, "app")
    harness.start()
    harness.wait_synced("svc", sha)
    path = f"/api/v1/namespaces/{ns}/configmaps/settings"
    co_owned = laptop_apply(laptop, path, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "settings", "labels": {"team": "x"}},
                                           "data": {"b": "2"}})
    assert co_owned["data"] == {"a": "1", "b": "2"} and "laptop-apply" in managers(co_owned)

    repo.write("app/cm.yaml", configmap("settings", {"a": "1"}))  # git drops data.b and the label
    sha = harness.commit_and_sync(repo, "svc", "drop b and the label")

    live = harness.cm("settings")
    assert live is not None
    assert live["data"] == {"a": "1"}
    assert "team" not in (live["metadata"].get("labels") or {})
    assert harness.status("svc")["sync"]["revision"] == sha


def test_a_value_someone_changed_after_git_dropped_it_is_theirs(harness: Harness, repo: Repo,
                                                                laptop: Kube) -> None:
    """Only git's leftover value is removed: a field git no longer declares but that a user set to a value
    of their own (an undeclared field, allowed) stays."""
    ns = harness.namespace
    repo.write("app/cm.yaml", configmap("settings", {"a": "1", "b": "2"}))
    sha = repo.commit("a and b")
    harness.make_app("svc", repo, "app")
    harness.start()
    harness.wait_synced("svc", sha)
    path = f"/api/v1/namespaces/{ns}/configmaps/settings"
    laptop_apply(laptop, path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                                "data": {"b": "2"}})
    repo.write("app/cm.yaml", configmap("settings", {"a": "1"}))
    harness.commit_and_sync(repo, "svc", "drop b")
    assert harness.cm("settings")["data"] == {"a": "1"}  # type: ignore[index]

    laptop_apply(laptop, path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                                "data": {"b": "mine"}})
    repo.write("app/cm.yaml", configmap("settings", {"a": "1", "c": "3"}))
    harness.commit_and_sync(repo, "svc", "add c")
    assert harness.cm("settings")["data"] == {"a": "1", "b": "mine", "c": "3"}  # type: ignore[index]
