"""spec.ignoreDifferences through the real reconciler: an ignored field is not reverted, not drift, not OutOfSync;
RespectIgnoreDifferences=true keeps the live value when the object is applied anyway; a rule that cannot be
evaluated is a condition naming it.

"Not reverted" is checked after a full sync (``refresh``) and a self-heal of another field of the same object,
the two ways the reconciler would otherwise have put git's value back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for

from driftguard.core import contract
from driftguard.core.ignore import Ignore
from driftguard.kube import Kube

pytestmark = pytest.mark.integration
MERGE = "application/merge-patch+json"
REPLICAS = {"group": "apps", "kind": "Deployment", "name": "web", "jsonPointers": ["/spec/replicas"]}


def deployment(image: str = "nginx:1.27") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def start(harness: Harness, repo: Repo, *, options: tuple[str, ...] = (), rules: list[Any] | None = None) -> str:
    repo.write("app/d.yaml", deployment())
    repo.write("app/c.yaml", configmap("alpha", {"color": "blue", "size": "m"}))
    repo.write("app/s.yaml", configmap("sentinel", {"v": "1"}))
    sha = repo.commit("good")
    harness.make_app("svc", repo, ignoreDifferences=rules if rules is not None else [REPLICAS],
                     syncPolicy={"automated": {"prune": True, "selfHeal": True}, "syncOptions": list(options)})
    harness.start()
    harness.wait_synced("svc", sha)
    return sha


def web(harness: Harness) -> dict[str, Any]:
    found = harness.get(f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web")
    assert found is not None
    return found


def scale(kube: Kube, harness: Harness, replicas: int) -> None:
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web/scale",
                 body={"spec": {"replicas": replicas}}, content_type=MERGE)


def set_image(kube: Kube, harness: Harness, image: str) -> None:
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{harness.namespace}/deployments/web",
                 content_type="application/strategic-merge-patch+json", query={"fieldManager": "kubectl-set"},
                 body={"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})


def settle(harness: Harness, laptop: Kube) -> None:
    """Until the reconciler has certainly looked at everything changed so far: a self-heal of a sentinel edit
    made after it (events are taken in order), then a full sync that finished after that."""
    path = f"/api/v1/namespaces/{harness.namespace}/configmaps/sentinel"
    laptop.request("PATCH", path, body={"data": {"v": "2"}}, content_type=MERGE, query={"fieldManager": "kubectl-edit"})
    wait_for(lambda: (harness.cm("sentinel") or {}).get("data", {}).get("v") == "1", timeout=20,
             what="the sentinel edit reverted")
    before = harness.status("svc").get("lastSyncTime")
    time.sleep(1.1)  # lastSyncTime has whole seconds
    harness.refresh("svc")
    wait_for(lambda: harness.status("svc").get("lastSyncTime") != before, timeout=20, what="a full sync")


def image_of(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def test_an_ignored_field_is_not_reverted_not_drift_and_not_out_of_sync(harness: Harness, repo: Repo,
                                                                        laptop: Kube) -> None:
    start(harness, repo)
    live = web(harness)
    assert contract.annotations_of(live)[contract.ANN_IGNORE] == Ignore(("/spec/replicas",)).encode()
    assert contract.ANN_IGNORE not in contract.annotations_of(harness.cm("alpha"))  # the rule names web only
    scale(laptop, harness, 9)
    settle(harness, laptop)
    assert web(harness)["spec"]["replicas"] == 9
    status = harness.status("svc")
    assert status["sync"]["status"] == "Synced"
    assert not [d for d in status.get("drift") or [] if d["object"].endswith("/web")]
    # Without RespectIgnoreDifferences a sync of the object applies git's value, as in Argo CD: a self-heal
    # of the image puts replicas back too (the README says so, and points to the option).
    set_image(laptop, harness, "nginx:evil")
    wait_for(lambda: image_of(web(harness)) == "nginx:1.27", timeout=20, what="the image reverted")
    assert web(harness)["spec"]["replicas"] == 2


def test_respect_ignore_differences_keeps_the_live_value_through_heals_and_git_changes(
    harness: Harness, repo: Repo, laptop: Kube,
) -> None:
    start(harness, repo, options=("RespectIgnoreDifferences=true",))
    assert harness.condition("svc", "Ready").get("message", "").find("not supported") == -1
    scale(laptop, harness, 7)
    settle(harness, laptop)
    assert web(harness)["spec"]["replicas"] == 7
    set_image(laptop, harness, "nginx:evil")
    wait_for(lambda: image_of(web(harness)) == "nginx:1.27", timeout=20, what="the image reverted")
    assert web(harness)["spec"]["replicas"] == 7
    repo.write("app/d.yaml", deployment(image="nginx:1.28"))
    harness.commit_and_sync(repo, "svc", "new image")
    live = web(harness)
    assert (image_of(live), live["spec"]["replicas"]) == ("nginx:1.28", 7)


def test_fields_of_a_named_manager_and_jq_selections_are_ignored_others_reverted(
    harness: Harness, repo: Repo, laptop: Kube,
) -> None:
    start(harness, repo, rules=[
        {"kind": "ConfigMap", "name": "alpha", "managedFieldsManagers": ["color-operator"]},
        {"kind": "ConfigMap", "jqPathExpressions": ['.data | select(has("size")) | .size']},
    ])
    path = f"/api/v1/namespaces/{harness.namespace}/configmaps/alpha"
    laptop.request("PATCH", path, body={"data": {"color": "green"}}, content_type=MERGE,
                   query={"fieldManager": "color-operator"})
    # the jq expression selects data.size wherever there is one (jq computes the path ["data", "size"])
    laptop.request("PATCH", path, body={"data": {"size": "xl"}}, content_type=MERGE, query={"fieldManager": "kubectl"})
    settle(harness, laptop)
    assert harness.cm("alpha")["data"] == {"color": "green", "size": "xl"}  # type: ignore[index]
    assert harness.status("svc")["sync"]["status"] == "Synced"
    # the same field written by another manager is git's again: ownership moved, the rule no longer covers it
    laptop.request("PATCH", path, body={"data": {"color": "red"}}, content_type=MERGE,
                   query={"fieldManager": "kubectl-edit"})
    wait_for(lambda: harness.cm("alpha")["data"]["color"] == "blue", timeout=20,  # type: ignore[index]
             what="color reverted")


def test_a_rule_that_cannot_be_evaluated_is_a_condition_naming_it(harness: Harness, repo: Repo) -> None:
    repo.write("app/c.yaml", configmap("alpha", {"color": "blue"}))
    repo.commit("good")
    harness.make_app("svc", repo, ignoreDifferences=[{"kind": "ConfigMap", "jqPathExpressions": [".data | ("]},
                                                     {"kind": "ConfigMap", "jsonPointers": ["data/color"]}])
    harness.start()
    condition = wait_for(lambda: harness.condition("svc", "Ready") or None, what="a Ready condition")
    assert condition["status"] == "False"
    assert ("spec.ignoreDifferences[0].jqPathExpressions[0]: jq expression '.data | (' does not compile: syntax "
            "error, unexpected end of file") in condition["message"]
    assert ("spec.ignoreDifferences[1].jsonPointers[0]: 'data/color' is not a JSON pointer (it starts with /, "
            "e.g. /spec/replicas)") in condition["message"]
    assert harness.cm("alpha") is None  # nothing applied under rules it cannot read


def test_an_expression_that_is_no_path_on_the_object_fails_that_object_naming_it(harness: Harness,
                                                                                  repo: Repo) -> None:
    """It compiles, so only git's object shows it is no path (``to_entries`` builds new values): that object is
    not applied, and the Applied condition says why; the others are."""
    repo.write("app/c.yaml", configmap("alpha", {"color": "blue"}))
    repo.write("app/s.yaml", configmap("sentinel", {"v": "1"}))
    repo.commit("good")
    harness.make_app("svc", repo, ignoreDifferences=[
        {"kind": "ConfigMap", "name": "alpha", "jqPathExpressions": [".data | to_entries[] | .value"]}])
    harness.start()
    condition = wait_for(lambda: harness.condition("svc", "Applied").get("status") == "False"
                         and harness.condition("svc", "Applied"), what="the Applied condition failing")
    assert ("c.yaml:1: ConfigMap alpha: spec.ignoreDifferences: jq expression '.data | to_entries[] | .value' "
            "failed on this object: Invalid path expression") in condition["message"]
    assert harness.cm("alpha") is None
    assert harness.cm("sentinel") is not None
