"""Through a real kube-apiserver and the real TLS webhook, with the real kubectl where a user would type it:
ignoreDifferences (an ignored field is not enforced), the HPA warning, ``kubectl replace -f`` of git's own
manifest, warn-mode warnings with the fix and repository first, and audit rows that list what changed.

The stamps are written as the reconciler writes them (``Guarded.from_git``, with the rules its Application
has for the object); that the reconciler does write them is ``tests/integration/reconciler/test_reconciler_ignore``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.guarded import MERGE, STRATEGIC, Guarded, deployment, story, suggest_line

from driftguard.core import contract
from driftguard.core.ignore import Ignore
from driftguard.kube import KubeError
from webhook import messages

pytestmark = pytest.mark.integration
REPLICAS = Ignore(("/spec/replicas",))


def kubectl(guarded: Guarded, *args: str) -> Any:
    if guarded.kubectl is None or guarded.laptop_kubeconfig is None:
        pytest.fail("no kubectl built next to the control plane (make controlplane)")
    return guarded.kubectl_as(guarded.laptop_kubeconfig, *args)


def warnings_of(stderr: str) -> list[str]:
    return [line.removeprefix("Warning: ") for line in stderr.splitlines() if line.startswith("Warning: ")]


# ---------------------------------------------------------------- ignoreDifferences

def test_kubectl_scale_of_ignored_replicas_is_admitted_and_the_rest_still_enforced(guarded: Guarded) -> None:
    guarded.from_git("ignored", ignore=REPLICAS)
    result = kubectl(guarded, "scale", "deployment/ignored", "--replicas=9")
    assert result.returncode == 0, result.stderr
    assert guarded.laptop.request("GET", guarded.path("ignored"))["spec"]["replicas"] == 9
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("ignored"), content_type=STRATEGIC,
                               body={"spec": {"replicas": 4, "template": {"spec": {"containers": [
                                   {"name": "web", "image": "nginx"}]}}}})
    assert guarded.denied_by_us(denied.value) == story(
        guarded, "ignored", "spec.template.spec.containers[name=web].image", "registry.example/my-service:1.4.2",
        "nginx")


def test_nobody_widens_the_ignore_set_by_annotating(guarded: Guarded) -> None:
    guarded.from_git("widen", ignore=REPLICAS)
    wider = Ignore(("/spec",)).encode()
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("widen"), content_type=MERGE,
                               body={"metadata": {"annotations": {contract.ANN_IGNORE: wider}}})
    assert guarded.denied_by_us(denied.value) == (
        f"Deployment {guarded.namespace}/widen: driftguard.io/ labels and annotations are written only by driftguard; "
        "this request changes annotation driftguard.io/ignore-differences. Change the object in git: "
        "https://github.com/org/k8s-manifests")
    record = guarded.wait_record("widen", decision="deny")
    assert record.fields == ({"field": 'metadata.annotations["driftguard.io/ignore-differences"]',  # JSON: quoted
                              "declared": json.dumps(REPLICAS.encode()), "requested": json.dumps(wider)},)


def test_a_scale_by_a_named_manager_is_admitted_and_by_anyone_else_denied(guarded: Guarded) -> None:
    """After a scale its manager owns spec.replicas; the Scale a validating webhook sees has no managedFields, so
    the webhook knows the manager when the request names it (``?fieldManager=``), and enforces otherwise."""
    guarded.from_git("managed-by", ignore=Ignore((), (), ("hpa-controller",)))
    scale = guarded.path("managed-by", "scale")
    guarded.laptop.request("PATCH", scale, body={"spec": {"replicas": 6}}, content_type=MERGE,
                           query={"fieldManager": "hpa-controller"})
    assert guarded.laptop.request("GET", guarded.path("managed-by"))["spec"]["replicas"] == 6
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", scale, body={"spec": {"replicas": 8}}, content_type=MERGE,
                               query={"fieldManager": "kubectl-scale"})
    assert guarded.denied_by_us(denied.value) == story(guarded, "managed-by", sets="8")
    result = kubectl(guarded, "scale", "deployment/managed-by", "--replicas=7")  # names no field manager
    assert result.returncode != 0 and story(guarded, "managed-by", sets="7") in result.stderr


# ---------------------------------------------------------------- the HPA case

def test_kubectl_autoscale_on_declared_replicas_warns_what_will_happen_and_the_two_fixes(guarded: Guarded) -> None:
    guarded.from_git("autoscaled")
    result = kubectl(guarded, "autoscale", "deployment/autoscaled", "--min=2", "--max=5")
    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == [part for text in [
        f"driftguard: every scale HorizontalPodAutoscaler {guarded.namespace}/autoscaled makes will be denied: git "
        f"declares spec.replicas (3) of Deployment {guarded.namespace}/autoscaled at "
        "services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org",
        "Fix 1: remove spec.replicas from Deployment autoscaled in git: https://github.com/org/k8s-manifests "
        "(services/my-service/production/deployment.yaml)",
        "Fix 2: add to Application driftguard-system/app spec.ignoreDifferences: [{group: apps, kind: Deployment, "
        "name: autoscaled, jsonPointers: [/spec/replicas]}]",
    ] for part in messages.split(text)]  # a long namespace makes the first one two warnings, nothing is cut
    assert all(len(w) <= 256 for w in warnings_of(result.stderr))
    # what the warning promised: the HPA's scales (as the HPA controller makes them) are denied
    with pytest.raises(KubeError) as denied:
        guarded.laptop.request("PATCH", guarded.path("autoscaled", "scale"), body={"spec": {"replicas": 5}},
                               content_type=MERGE, query={"fieldManager": "kube-controller-manager"})
    assert guarded.denied_by_us(denied.value) == story(guarded, "autoscaled", sets="5")


def test_an_hpa_on_ignored_replicas_gets_no_warning_and_its_scales_pass(guarded: Guarded) -> None:
    guarded.from_git("autoscaled-ok", ignore=REPLICAS)
    result = kubectl(guarded, "autoscale", "deployment/autoscaled-ok", "--min=2", "--max=5")
    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == []
    guarded.laptop.request("PATCH", guarded.path("autoscaled-ok", "scale"), body={"spec": {"replicas": 5}},
                           content_type=MERGE, query={"fieldManager": "kube-controller-manager"})
    assert guarded.laptop.request("GET", guarded.path("autoscaled-ok"))["spec"]["replicas"] == 5


# ---------------------------------------------------------------- kubectl replace

def manifest_file(guarded: Guarded, tmp_path: Path, name: str, **spec: Any) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deployment(name, guarded.namespace, **spec)))
    return path


def test_kubectl_replace_of_gits_own_manifest_keeps_the_stamp(guarded: Guarded, tmp_path: Path) -> None:
    before = contract.own_metadata(guarded.from_git("replaced"))
    result = kubectl(guarded, "replace", "-f", str(manifest_file(guarded, tmp_path, "replaced")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "deployment.apps/replaced replaced"
    after = guarded.laptop.request("GET", guarded.path("replaced"))
    assert contract.own_metadata(after) == before
    assert guarded.records("replaced") == []


def test_kubectl_replace_of_a_changed_manifest_names_only_the_changed_field(guarded: Guarded,
                                                                           tmp_path: Path) -> None:
    guarded.from_git("replaced-9")
    result = kubectl(guarded, "replace", "-f", str(manifest_file(guarded, tmp_path, "replaced-9", replicas=9)))
    assert result.returncode != 0
    assert (f'admission webhook "validate.{guarded.name}.io" denied the request: '
            + story(guarded, "replaced-9", hint=False)
            + ". (the driftguard.io/ labels and annotations the request leaves out, as kubectl replace of a "
            "manifest does, are restored by driftguard when every declared field is git's)\n"
            + suggest_line(guarded, "replaced-9")) in result.stderr
    assert "driftguard.io/declared" not in result.stderr
    record = guarded.wait_record("replaced-9", decision="deny")
    assert record.fields == ({"field": "spec.replicas", "declared": "3", "requested": "9"},)


# ---------------------------------------------------------------- warn mode

def test_warn_mode_warnings_put_the_fix_and_repository_first(guarded: Guarded) -> None:
    guarded.from_git("warned-first", enforcement="warn")
    result = kubectl(guarded, "scale", "deployment/warned-first", "--replicas=9")
    assert result.returncode == 0, result.stderr
    assert warnings_of(result.stderr) == [
        "driftguard warn mode: change it in git: https://github.com/org/k8s-manifests (declared at "
        "services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org); admitted and recorded as "
        "drift, the reconciler restores git's value",
        f"spec.replicas of Deployment {guarded.namespace}/warned-first is declared in git (3); this request sets 9",
        suggest_line(guarded, "warned-first"),  # last, so the line pastes as it is
    ]
    record = guarded.wait_record("warned-first", decision="warn")
    assert json.loads(json.dumps(record.fields)) == [{"field": "spec.replicas", "declared": "3", "requested": "9"}]
