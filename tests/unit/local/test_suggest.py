"""driftguard suggest: a kubectl intent or an audit record → a minimal edit of the commented manifest, committed on a
new branch of a real git repository when asked."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from driftguard.local.suggest import Change, SuggestError, edit, parse_intent, parse_record, suggest

MANIFEST = """\
# my-service: the production deployment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-service   # keep the name: the Service selects on it
  labels: {app: my-service}
spec:
  replicas: 3        # peak traffic needs more; see runbook
  selector:
    matchLabels:
      app: my-service
  template:
    metadata:
      labels:
        app: my-service
    spec:
      containers:
        - name: web
          image: "registry.example/web:1.4.2"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: my-config
data:
  color: 'blue'
"""


@pytest.mark.parametrize(("argv", "expected"), [
    (["scale", "deployment/my-service", "-n", "production", "--replicas=9"],
     Change("apps/v1", "Deployment", "production", "my-service", ((("spec", "replicas"), 9),))),
    (["kubectl", "label", "cm/my-config", "--namespace=p", "tier=web"],
     Change("v1", "ConfigMap", "p", "my-config", ((("metadata", "labels", "tier"), "web"),))),
    (["annotate", "deploy/x", "a.io/b=c"],
     Change("apps/v1", "Deployment", "default", "x", ((("metadata", "annotations", "a.io/b"), "c"),))),
])
def test_parse_intent(argv: list[str], expected: Change) -> None:
    assert parse_intent(argv) == expected


@pytest.mark.parametrize(("argv", "words"), [
    (["edit", "deployment/x"], "understands kubectl scale, label and annotate"),
    (["scale", "deployment/x"], "--replicas=N"),
    (["scale", "widget/x", "--replicas=2"], "name the object as KIND/NAME"),
    (["label", "cm/x", "tier-"], "is not key=value"),
])
def test_parse_intent_errors(argv: list[str], words: str) -> None:
    with pytest.raises(SuggestError, match=words):
        parse_intent(argv)


RECORD: dict[str, Any] = {
    "decision": "deny", "kind": "Deployment", "name": "my-service", "namespace": "production", "api_version": "apps/v1",
    "repo": "https://git.example/org/k8s", "commit": "1a2b3c4", "path": "services/my-service/deployment.yaml",
    "fields": [{"field": "spec.replicas", "declared": "3", "requested": "9"},
               {"field": 'metadata.labels["app.kubernetes.io/tier"]', "declared": "<absent>", "requested": "web"}],
}


def test_parse_record() -> None:
    change, source = parse_record(RECORD)
    assert change.sets == ((("spec", "replicas"), 9), (("metadata", "labels", "app.kubernetes.io/tier"), "web"))
    assert source == {"repo": "https://git.example/org/k8s", "commit": "1a2b3c4",
                      "path": "services/my-service/deployment.yaml"}
    for field, requested, words in [("data.password", "<redacted>", "holds no value"),
                                    ("spec.x", "<absent>", "holds no value"),
                                    ("spec.template.spec.containers[name=web].image", "x:2", "in a list")]:
        with pytest.raises(SuggestError, match=words):
            parse_record({**RECORD, "fields": [{"field": field, "requested": requested}]})


def test_a_commented_manifest_gets_a_minimal_diff() -> None:
    change = parse_intent(["scale", "deployment/my-service", "-n", "production", "--replicas=9"])
    after = edit(MANIFEST, change, where="deployment.yaml")
    before_lines, after_lines = MANIFEST.splitlines(), after.splitlines()
    changed = [(a, b) for a, b in zip(before_lines, after_lines, strict=True) if a != b]
    assert changed == [("  replicas: 3        # peak traffic needs more; see runbook",
                        "  replicas: 9        # peak traffic needs more; see runbook")]
    label = edit(MANIFEST, parse_intent(["label", "cm/my-config", "tier=web"]), where="x.yaml")
    assert "  color: 'blue'" in label and "    tier: web" in label.split("kind: ConfigMap", 1)[1]
    assert label.split("---", 1)[0] == MANIFEST.split("---", 1)[0]


@pytest.mark.parametrize(("text", "words"), [
    ("kind: Deployment\nmetadata: {name: {{ .Values.name }}}\n", "is a template"),
    (MANIFEST.replace("my-service", "other"), "declares no Deployment my-service"),
    ("a: [\n", "is not YAML"),
])
def test_no_clear_mapping_is_said(text: str, words: str) -> None:
    with pytest.raises(SuggestError, match=words):
        edit(text, parse_intent(["scale", "deployment/my-service", "--replicas=9"]), where="f.yaml")


def test_commit_on_a_new_branch(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=A", "-c", "user.email=a@org", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q", "-b", "main")
    (tmp_path / "app").mkdir()
    (tmp_path / "app/deployment.yaml").write_text(MANIFEST)
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    change = parse_intent(["scale", "deployment/my-service", "-n", "production", "--replicas=9"])
    subprocess.run(["git", "config", "user.name", "A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "config", "user.email", "a@org"], cwd=tmp_path, check=True)
    out = suggest(tmp_path, change, "app/deployment.yaml", commit=True)
    assert "-  replicas: 3" in out and "+  replicas: 9" in out and "committed on branch" in out
    assert git("rev-parse", "--abbrev-ref", "HEAD") == "driftguard/suggest-deployment-my-service"
    assert "spec.replicas=9" in git("log", "-1", "--format=%s")
    assert git("diff", "main", "--stat").count("\n") == 1  # one file changed
    assert suggest(tmp_path, change, "app/deployment.yaml") == "# app/deployment.yaml already declares that\n"
