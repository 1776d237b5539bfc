"""The ``driftguard suggest`` line a denial ends with: given only when suggest can make the change, pasteable as it
is (shell-quoted), and read back by ``--set`` to exactly the requested values."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from driftguard.core import fields
from driftguard.core.contract import Source, Stamp
from driftguard.core.fields import MISSING, FieldDrift, ListKey
from driftguard.core.objects import ObjectRef
from driftguard.core.suggestion import command, parse_set

DEPLOY = ObjectRef("apps", "Deployment", "prod", "web")
CM = ObjectRef("", "ConfigMap", "prod", "settings")
WEB = ("spec", "template", "spec", "containers", ListKey((("name", "web"),)))
COMMENT = "  # the git change instead: edits a clone, prints the diff"


def stamp(path: str = "apps/web/deployment.yaml", sensitive: bool = False) -> Stamp:
    source = Source("https://git.example/org/k8s", "1a2b3c4d", "alice@org", "2024-05-01T10:00:00Z", path)
    return Stamp("team/web", source, "deny", {}, sensitive=sensitive)


def drift(path: tuple[Any, ...], actual: object, declared: object = "x") -> FieldDrift:
    return FieldDrift(path, declared, actual)


@pytest.mark.parametrize(("ref", "changes", "expected"), [
    (DEPLOY, [drift(("spec", "replicas"), 9, 3)], "driftguard suggest -- scale deployment/web -n prod --replicas=9"),
    (ObjectRef("apps", "StatefulSet", "prod", "db"), [drift(("spec", "replicas"), 0, 3)],
     "driftguard suggest -- scale statefulset/db -n prod --replicas=0"),
    (DEPLOY, [drift(("metadata", "labels", "tier"), "gold"), drift(("metadata", "labels", "team"), "true")],
     "driftguard suggest -- label deployment/web -n prod tier=gold team=true"),
    (CM, [drift(("metadata", "annotations", "a.io/note"), "on call: bob")],
     "driftguard suggest -- annotate configmap/settings -n prod 'a.io/note=on call: bob'"),
    (DEPLOY, [drift((*WEB, "image"), "nginx:1.27")],
     "driftguard suggest --set 'spec.template.spec.containers[name=web].image=nginx:1.27' deployment/web -n prod"),
    (DEPLOY, [drift(("spec", "replicas"), 9, 3), drift((*WEB, "env", ListKey((("name", "MODE"),)), "value"), "9")],
     "driftguard suggest --set spec.replicas=9 --set "
     """'spec.template.spec.containers[name=web].env[name=MODE].value="9"' deployment/web -n prod"""),
    (DEPLOY, [drift(("spec", "template", "spec", "containers", ListKey((("name", "web"),)), "ports",
                     ListKey((("containerPort", 80), ("protocol", "TCP"))), "name"), "http")],
     "driftguard suggest --set 'spec.template.spec.containers[name=web].ports[containerPort=80,protocol=TCP].name"
     "=http' deployment/web -n prod"),
    (CM, [drift(("data", "mode"), "$(rm -rf ~); `id`")],
     """driftguard suggest --set 'data.mode=$(rm -rf ~); `id`' configmap/settings -n prod"""),
    (CM, [drift(("data", "flag"), "true"), drift(("data", "app.properties"), "x=1")],
     """driftguard suggest --set 'data.flag="true"' --set 'data["app.properties"]="x=1"' configmap/settings -n prod"""),
    (DEPLOY, [drift(("spec", "replicas"), True)], "driftguard suggest --set spec.replicas=true deployment/web -n prod"),
    (DEPLOY, [drift(("spec", "paused"), None)], "driftguard suggest --set spec.paused=null deployment/web -n prod"),
])
def test_the_line_for_a_change_suggest_can_make(ref: ObjectRef, changes: list[FieldDrift], expected: str) -> None:
    line = command(ref, stamp(), changes)
    assert line == expected + COMMENT
    words = shlex.split(line, comments=True)  # what a shell makes of the pasted line
    assert shlex.join(words) == expected
    sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    if sets:
        assert [parse_set(s) for s in sets] == [(c.path, c.actual) for c in changes]


@pytest.mark.parametrize(("ref", "stamped", "changes"), [
    pytest.param(ObjectRef("", "Secret", "prod", "db"), stamp(sensitive=True), [drift(("data", "pw"), "aHVudGVy")],
                 id="a Secret"),
    pytest.param(DEPLOY, stamp(sensitive=True), [drift(("spec", "replicas"), 9)], id="sensitive"),
    pytest.param(DEPLOY, stamp("kustomize build overlays/prod"), [drift(("spec", "replicas"), 9)], id="kustomize"),
    pytest.param(DEPLOY, stamp("helm template charts/web"), [drift(("spec", "replicas"), 9)], id="helm"),
    pytest.param(DEPLOY, stamp("apps/web/main.jsonnet"), [drift(("spec", "replicas"), 9)], id="jsonnet"),
    pytest.param(DEPLOY, stamp("apps/web/deployment.json"), [drift(("spec", "replicas"), 9)], id="json file"),
    pytest.param(DEPLOY, stamp(), [drift(("spec", "replicas"), MISSING, 3)], id="a removal"),
    pytest.param(DEPLOY, stamp(), [drift((*WEB, "args"), ["--fast"])], id="a list value"),
    pytest.param(DEPLOY, stamp(), [drift(("spec", "strategy"), {"type": "Recreate"})], id="a map value"),
    pytest.param(CM, stamp(), [drift(("data", "script"), "line one\nline two")], id="two lines"),
    pytest.param(CM, stamp(), [drift(("metadata", "annotations", "a"), "bell\a")], id="a control character"),
    pytest.param(DEPLOY, stamp(), [drift((*WEB, "image"), "registry.example/" + "x" * 240)], id="too long"),
    pytest.param(ObjectRef("networking.k8s.io", "Ingress", "prod", "web"), stamp(),
                 [drift(("spec", "ingressClassName"), "nginx")], id="a kind suggest does not edit"),
    pytest.param(ObjectRef("example.com", "Deployment", "prod", "web"), stamp(),
                 [drift(("spec", "replicas"), 9)], id="another group's Deployment"),
    pytest.param(DEPLOY, stamp(), [], id="no change"),
])
def test_no_line_when_suggest_could_not_make_it(ref: ObjectRef, stamped: Stamp, changes: list[FieldDrift]) -> None:
    assert command(ref, stamped, changes) is None


def test_a_line_is_never_longer_than_the_limit() -> None:
    changes = [drift((*WEB, "image"), "registry.example/web:" + "1" * n) for n in range(40, 120)]
    lines = [command(DEPLOY, stamp(), [c]) for c in changes]
    assert any(lines) and not all(lines)
    assert all(len(line) <= 256 for line in lines if line)


@pytest.mark.parametrize(("text", "expected"), [
    ("spec.replicas=9", (("spec", "replicas"), 9)),
    ('spec.replicas="9"', (("spec", "replicas"), "9")),
    ("data.x=a=b", (("data", "x"), "a=b")),
    ("data.x=", (("data", "x"), "")),
    ('metadata.labels["app.kubernetes.io/name"]=web', (("metadata", "labels", "app.kubernetes.io/name"), "web")),
    ('spec.x[name="a,b]"].y=1.5', (("spec", "x", ListKey((("name", "a,b]"),)), "y"), 1.5)),
    ("spec.ports[port=80,protocol=TCP].targetPort=8080",
     (("spec", "ports", ListKey((("port", 80), ("protocol", "TCP"))), "targetPort"), 8080)),
])
def test_parse_set(text: str, expected: tuple[fields.Path, object]) -> None:
    assert parse_set(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("spec.replicas", "write PATH=VALUE"),
    ("=9", "names no field"),
    (".spec=1", "is not a field path"),
    ("spec..x=1", "is not a field path"),
    ("spec.x[name]=1", "a list element is"),
    ("spec.x[name=a=1", "a list element is"),
    ('spec["x"=1', "a quoted key"),
])
def test_parse_set_errors(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_set(text)
