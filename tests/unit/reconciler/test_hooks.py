"""Hook completion (reconciler.hooks.completion) and hooks in manifests: what a finished hook looks like."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.manifests import ManifestError, check_unique, parse_documents
from reconciler.hooks import completion


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"kind": "Job", "status": {"conditions": [{"type": t, "status": s, "message": f"{t} says"}
                                                     for t, s in conditions]}}


@pytest.mark.parametrize(("obj", "result"), [
    ({"kind": "Job"}, "Running"),
    (job(("Complete", "False")), "Running"),
    (job(("SuccessCriteriaMet", "True"), ("Complete", "True")), "Succeeded"),
    (job(("FailureTarget", "True"), ("Failed", "True")), "Failed"),
    ({"kind": "Pod", "status": {"phase": "Running"}}, "Running"),  # a hook Pod runs to completion
    ({"kind": "Pod", "status": {"phase": "Succeeded"}}, "Succeeded"),
    ({"kind": "Pod", "status": {"phase": "Failed"}}, "Failed"),
    ({"kind": "ConfigMap"}, "Succeeded"),  # a kind without completion: done once it exists and is healthy
    ({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {}}, "Running"),
])
def test_completion(obj: dict[str, Any], result: str) -> None:
    assert completion(obj)[0] == result


def test_a_failed_job_says_why() -> None:
    assert completion(job(("Failed", "True"))) == ("Failed", "Failed says")


HOOK = """apiVersion: batch/v1
kind: Job
metadata:
  generateName: migrate-
  annotations: {%s}
"""


@pytest.mark.parametrize("annotation", ["argocd.argoproj.io/hook: PreSync", "helm.sh/hook: pre-upgrade"])
def test_a_hook_may_use_generate_name(annotation: str) -> None:
    twice = parse_documents(HOOK % annotation + "---\n" + HOOK % annotation, "hooks.yaml")
    assert [m.obj["metadata"]["generateName"] for m in twice] == ["migrate-", "migrate-"]
    check_unique(twice)  # each is a new object: not a duplicate


@pytest.mark.parametrize(("text", "says"), [
    (HOOK % "team: a", "hooks.yaml:1: Job has no metadata.name (only a hook, annotated argocd.argoproj.io/hook, may "
     "use metadata.generateName instead)"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, generateName: b-}\n",
     "hooks.yaml:1: ConfigMap a: generateName cannot be managed from git (only a hook"),
])
def test_only_hooks_may_use_generate_name(text: str, says: str) -> None:
    with pytest.raises(ManifestError) as e:
        parse_documents(text, "hooks.yaml")
    assert str(e.value).startswith(says)
