"""driftguard suggest: a kubectl intent or an audit record → a minimal edit of the commented manifest, committed on a
new branch of a real git repository when asked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from driftguard.core.fields import MISSING, ListKey
from driftguard.local.suggest import (
    Change,
    SuggestError,
    edit,
    parse_intent,
    parse_record,
    parse_sets,
    propose,
    suggest,
)

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
    assert parse_intent(argv, "elsewhere").namespace == ("elsewhere" if expected.namespace == "default"
                                                         else expected.namespace)


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
    listed, _ = parse_record({**RECORD, "fields": [
        {"field": "spec.template.spec.containers[name=web].image", "requested": "x:2"},
        {"field": 'metadata.labels["on"]', "requested": "yes"}, {"field": "metadata.labels.n", "requested": '"9"'}]})
    assert listed.sets == ((("spec", "template", "spec", "containers", ListKey((("name", "web"),)), "image"), "x:2"),
                           (("metadata", "labels", "on"), "yes"), (("metadata", "labels", "n"), "9"))
    assert source == {"repo": "https://git.example/org/k8s", "commit": "1a2b3c4",
                      "path": "services/my-service/deployment.yaml"}
    for field, requested, words in [("data.password", "<redacted>", "holds no value"),
                                    ("spec.x", "<absent>", "holds no value"),
                                    ("spec.x", "0123456789" * 8 + "…", "cut short"),
                                    ("spec.[x", "1", "not a field path")]:
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


@pytest.mark.parametrize(("sets", "target", "expected"), [
    (["spec.template.spec.containers[name=web].image=nginx:1.27"], ["deployment/my-service"],
     ((("spec", "template", "spec", "containers", ListKey((("name", "web"),)), "image"), "nginx:1.27"),)),
    (['data.color="9"', "spec.x=9", "spec.y=true", 'metadata.labels["a.io/b"]=c=d'], ["cm/my-config"],
     ((("data", "color"), "9"), (("spec", "x"), 9), (("spec", "y"), True), (("metadata", "labels", "a.io/b"), "c=d"))),
])
def test_parse_sets(sets: list[str], target: list[str], expected: tuple[Any, ...]) -> None:
    change = parse_sets(sets, target, "production")
    assert change.sets == expected and change.namespace == "production"


@pytest.mark.parametrize(("sets", "target", "words"), [
    (["spec.replicas"], ["deployment/x"], "PATH=VALUE"),
    (["spec..replicas=1"], ["deployment/x"], "is not a field path"),
    (["spec.replicas=1"], [], "name it once as KIND/NAME"),
    (["spec.replicas=1"], ["deployment/x", "deployment/y"], "name it once"),
    (["spec.replicas=1"], ["widget/x"], "name the object as KIND/NAME"),
])
def test_parse_sets_errors(sets: list[str], target: list[str], words: str) -> None:
    with pytest.raises(SuggestError, match=words):
        parse_sets(sets, target, None)


IMAGE = "spec.template.spec.containers[name=web].image"


@pytest.mark.parametrize(("sets", "changed"), [
    ([f"{IMAGE}=registry.example/web:1.5.0"],  # its quotes kept
     [('          image: "registry.example/web:1.4.2"', '          image: "registry.example/web:1.5.0"')]),
    (["spec.template.spec.containers[name=web].imagePullPolicy=Always"],
     [("          image: \"registry.example/web:1.4.2\"",
       "          image: \"registry.example/web:1.4.2\"\n          imagePullPolicy: Always")]),
])
def test_a_list_element_is_edited_by_its_merge_key(sets: list[str], changed: list[tuple[str, str]]) -> None:
    after = edit(MANIFEST, parse_sets(sets, ["deployment/my-service"], None), where="d.yaml")
    before_lines = MANIFEST.split("---", 1)[0].splitlines()
    after_lines = after.split("---", 1)[0].splitlines()
    for old, new in changed:
        assert old in before_lines
        assert new.splitlines()[0] in after_lines and all(line in after_lines for line in new.splitlines())
    assert len(after_lines) - len(before_lines) == sum(new.count("\n") for _, new in changed)
    assert after.split("---", 1)[1] == MANIFEST.split("---", 1)[1]


@pytest.mark.parametrize(("sets", "words"), [
    (["spec.template.spec.containers[name=api].image=x:1"], "has 0 spec.template.spec.containers\\[name=api\\]"),
    (["spec.replicas.x=1"], "spec.replicas is not a map"),
])
def test_a_list_element_the_file_lacks_is_said(sets: list[str], words: str) -> None:
    with pytest.raises(SuggestError, match=words):
        edit(MANIFEST, parse_sets(sets, ["deployment/my-service"], None), where="d.yaml")


# ---------------------------------------------------------------- rendered sources: the overlay or values file

REPLICAS = ("spec", "replicas")
IMG = ("spec", "template", "spec", "containers", ListKey((("name", "web"),)), "image")
KUSTOMIZATION = "resources: [../../base]\n"


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _change(path: tuple[Any, ...], value: Any, was: Any) -> Change:
    return Change("apps/v1", "Deployment", "prod", "web", ((path, value),), (was,))


@pytest.mark.parametrize(("files", "change", "file", "old", "new"), [
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "replicas:\n  - name: web   # peak\n    count: 3\n"},
                 _change(REPLICAS, 9, 3), "k/kustomization.yaml", "    count: 3", "    count: 9", id="replicas entry"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + 'images:\n- name: registry.example/web\n  newTag: "1.4.2"\n'},
                 _change(IMG, "registry.example/web:1.5.0", "registry.example/web:1.4.2"), "k/kustomization.yaml",
                 '  newTag: "1.4.2"', '  newTag: "1.5.0"', id="images entry"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "images:\n- name: web\n  newName: reg.example/web\n"
                                                          "  digest: sha256:aaa\n"},
                 _change(IMG, "reg.example/web:2", MISSING), "k/kustomization.yaml", "  digest: sha256:aaa",
                 "  newTag: '2'", id="images entry by newName, a digest becomes a tag"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "patches:\n  - path: scale.yaml\n",
                  "k/scale.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
                                  "spec:\n  replicas: 5  # more in prod\n"},
                 _change(REPLICAS, 9, 5), "k/scale.yaml", "  replicas: 5  # more in prod",
                 "  replicas: 9  # more in prod", id="a strategic merge patch"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "patchesStrategicMerge: [image.yaml]\n",
                  "k/image.yaml": "kind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n"
                                  "      containers:\n      - name: web\n        image: reg/web:1\n"},
                 _change(IMG, "reg/web:2", "reg/web:1"), "k/image.yaml", "        image: reg/web:1",
                 "        image: reg/web:2", id="a patchesStrategicMerge file, a list element"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "patches:\n- path: ops.yaml\n"
                                                          "  target: {kind: Deployment, name: web}\n",
                  "k/ops.yaml": "- op: replace\n  path: /spec/replicas\n  value: 5\n"},
                 _change(REPLICAS, 9, 5), "k/ops.yaml", "  value: 5", "  value: 9", id="a JSON 6902 patch"),
    pytest.param({"chart/values.yaml": "# web\nreplicaCount: 3   # per zone\nimage:\n  repository: reg/web\n"},
                 _change(REPLICAS, 9, 3), "chart/values.yaml", "replicaCount: 3   # per zone",
                 "replicaCount: 9   # per zone", id="a values key holding the value once"),
    pytest.param({"chart/values.yaml": 'replicaCount: 3\nimage:\n  repository: reg/web\n  tag: "1.4.2"\n'},
                 _change(IMG, "reg/web:1.5.0", "reg/web:1.4.2"), "chart/values.yaml", '  tag: "1.4.2"',
                 '  tag: "1.5.0"', id="an image's tag key"),
])
def test_a_rendered_objects_field_is_proposed_in_its_overlay_or_values(
        tmp_path: Path, files: dict[str, str], change: Change, file: str, old: str, new: str) -> None:
    repo = _files(tmp_path, files)
    source = "helm template chart" if file.startswith("chart/") else "kustomize build k"
    proposal = propose(repo, change, source)
    assert proposal.file == file and proposal.before == files[file]
    removed = [x for x in proposal.before.splitlines() if x not in proposal.after.splitlines()]
    added = [x for x in proposal.after.splitlines() if x not in proposal.before.splitlines()]
    assert (removed, added) == ([old], [new])
    assert change.kind in proposal.note and file in proposal.note


@pytest.mark.parametrize(("files", "source", "change", "words"), [
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION}, "kustomize build k", _change(REPLICAS, 9, 3),
                 "neither a replicas:/images: entry of k/kustomization.yaml nor a patch", id="a base sets it"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "images:\n- {name: other/img, newTag: '1'}\n"},
                 "kustomize build k", _change(IMG, "reg/web:2", "reg/web:1"), "is not clear", id="another image"),
    pytest.param({"k/kustomization.yaml": KUSTOMIZATION + "patches:\n- path: p.yaml\n",
                  "k/p.yaml": "kind: Deployment\nmetadata: {name: other}\nspec: {replicas: 5}\n"},
                 "kustomize build k", _change(REPLICAS, 9, 5), "is not clear", id="a patch of another object"),
    pytest.param({"k/x.yaml": ""}, "kustomize build k", _change(REPLICAS, 9, 3), "has no kustomization.yaml",
                 id="no kustomization"),
    pytest.param({"k/kustomization.yaml": "replicas: [{name: web, count: 3}]\n"}, "kustomize build k",
                 Change("apps/v1", "Deployment", "p", "web", ((REPLICAS, 9), (IMG, "x:1"))), "one at a time",
                 id="two fields"),
    pytest.param({"chart/values.yaml": "replicaCount: 3\nmaxSurge: 3\n"}, "helm template chart",
                 _change(REPLICAS, 9, 3), "2 keys of chart/values.yaml hold its value 3 (replicaCount, maxSurge)",
                 id="the value twice"),
    pytest.param({"chart/values.yaml": "replicaCount: 2\n"}, "helm template chart", _change(REPLICAS, 9, 3),
                 "0 keys", id="the value in no key (a template's default)"),
    pytest.param({"chart/values.yaml": "replicaCount: 3\n"}, "helm template chart", _change(REPLICAS, 9, MISSING),
                 "git's rendered value is not known", id="git's value unknown"),
    pytest.param({"j/main.jsonnet": "{}"}, "j/main.jsonnet", _change(REPLICAS, 9, 3), "jsonnet's output",
                 id="jsonnet"),
    pytest.param({"README": ""}, "helm template web", _change(REPLICAS, 9, 3),
                 "web/values.yaml does not exist", id="a chart from a chart repository"),
])
def test_a_rendered_field_without_a_clear_place_is_said(tmp_path: Path, files: dict[str, str], source: str,
                                                        change: Change, words: str) -> None:
    with pytest.raises(SuggestError, match=re.escape(words)):
        propose(_files(tmp_path, files), change, source)
