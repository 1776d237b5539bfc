"""Every operation and every enforcement mode: CREATE, UPDATE, DELETE, scale, CONNECT, status, dry-run."""

from __future__ import annotations

from typing import Any

import pytest
from support.admission import NOW, SETTINGS, deployment_manifest, edited, live, review, scale_review

from driftguard.core.contract import Enforcement
from webhook import policy


def _replicas(obj: dict[str, Any], count: int) -> dict[str, Any]:
    return edited(obj, "spec", "replicas", count)


@pytest.mark.parametrize(("enforcement", "outcome", "recorded"), [
    ("deny", "deny", "deny"),
    ("warn", "warn", "warn"),
    ("off", "allow", None),
])
def test_enforcement_modes_on_a_declared_field(enforcement: Enforcement, outcome: str, recorded: str | None) -> None:
    old = live(enforcement=enforcement)
    verdict = policy.validate(review("UPDATE", old=old, new=_replicas(old, 9))["request"], SETTINGS, NOW)
    assert verdict.outcome == outcome
    assert verdict.allowed == (outcome != "deny")
    assert (verdict.record.decision if verdict.record else None) == recorded


def test_warn_mode_warns_with_every_field_and_the_source() -> None:
    old = live(enforcement="warn")
    new = edited(_replicas(old, 9), "spec", "template", "spec", "containers", 1, "image", "proxy:3")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW)
    assert verdict.warnings[0].startswith("driftguard warn mode: change it in git: https://github.com/org/k8s-manifests")
    assert "commit 1a2b3c4 by alice@org" in verdict.warnings[0]
    assert verdict.warnings[1] == (
        "spec.replicas of Deployment production/my-service is declared in git (3); this request sets 9"
    )
    assert verdict.warnings[2].startswith("spec.template.spec.containers[name=sidecar].image of Deployment")
    assert all(len(w) <= 256 for w in verdict.warnings)
    assert verdict.message == ""


@pytest.mark.parametrize(("enforcement", "outcome"), [("deny", "allow"), ("warn", "allow"), ("off", "allow")])
def test_undeclared_edits_pass_in_every_mode(enforcement: Enforcement, outcome: str) -> None:
    old = live(enforcement=enforcement)
    new = edited(old, "metadata", "labels", "owner", "bob")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW)
    assert (verdict.outcome, verdict.record, verdict.warnings) == (outcome, None, ())


# ---------------------------------------------------------------- CREATE

def test_create_of_an_ordinary_object_passes() -> None:
    verdict = policy.validate(review("CREATE", new=deployment_manifest())["request"], SETTINGS, NOW)
    assert verdict.outcome == "allow"


@pytest.mark.parametrize("forged", [
    pytest.param(live, id="a complete stamp"),
    pytest.param(lambda: edited(deployment_manifest(), "metadata", "labels", {"driftguard.io/managed": "true"}),
                 id="only the managed label"),
    pytest.param(lambda: edited(deployment_manifest(), "metadata", "annotations",
                                {"driftguard.io/break-glass": "fire"}), id="only a break-glass annotation"),
])
def test_create_carrying_driftguard_ownership_is_forged(forged: Any) -> None:
    verdict = policy.validate(review("CREATE", new=forged())["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("Deployment production/my-service: forged ownership:")
    assert verdict.record is not None and verdict.record.object_uid == ""


def test_create_of_a_stamped_object_in_off_mode_is_still_forged() -> None:
    verdict = policy.validate(review("CREATE", new=live(enforcement="off"))["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"


# ---------------------------------------------------------------- DELETE

@pytest.mark.parametrize(("enforcement", "deleting", "outcome"), [
    ("deny", False, "deny"),
    ("deny", True, "allow"),
    ("warn", False, "warn"),
    ("warn", True, "allow"),
    ("off", False, "allow"),
])
def test_delete_of_a_managed_object(enforcement: Enforcement, deleting: bool, outcome: str) -> None:
    old = live(enforcement=enforcement)
    if deleting:
        old = edited(old, "metadata", "deletionTimestamp", "2024-06-01T11:59:00Z")
    verdict = policy.validate(review("DELETE", old=old)["request"], SETTINGS, NOW)
    assert verdict.outcome == outcome
    if outcome == "deny":
        assert verdict.message == (
            "Deployment production/my-service is managed by driftguard (Application driftguard-system/my-service) "
            "and declared in git at services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org; "
            "deleting it here is denied. Remove it from git: https://github.com/org/k8s-manifests"
        )


def test_delete_of_an_unmanaged_object_passes() -> None:
    verdict = policy.validate(review("DELETE", old=deployment_manifest())["request"], SETTINGS, NOW)
    assert verdict.outcome == "allow"


# ---------------------------------------------------------------- subresources

@pytest.mark.parametrize(("replicas", "enforcement", "outcome"), [
    (9, "deny", "deny"),
    (3, "deny", "allow"),
    (9, "warn", "warn"),
    (9, "off", "allow"),
])
def test_scale_is_an_update_of_replicas(replicas: int, enforcement: Enforcement, outcome: str) -> None:
    parent = live(enforcement=enforcement)
    request = scale_review(replicas)["request"]
    assert policy.needs_parent(request, SETTINGS)
    verdict = policy.validate(request, SETTINGS, NOW, policy.Parent(parent))
    assert verdict.outcome == outcome
    if outcome == "deny":
        assert verdict.message.startswith(
            "spec.replicas of Deployment production/my-service is declared in git (3) at "
            "services/my-service/production/deployment.yaml, commit 1a2b3c4 by alice@org; this request sets 9."
        )
        assert verdict.record is not None and verdict.record.subresource == "scale"


def test_scale_passes_when_git_does_not_declare_replicas() -> None:
    manifest = deployment_manifest()
    del manifest["spec"]["replicas"]
    verdict = policy.validate(scale_review(9)["request"], SETTINGS, NOW, policy.Parent(live(manifest)))
    assert verdict.outcome == "allow"


@pytest.mark.parametrize(("parent", "outcome"), [
    pytest.param(policy.Parent(None), "allow", id="parent not found"),
    pytest.param(policy.Parent(deployment_manifest()), "allow", id="unmanaged parent"),
    pytest.param(policy.Parent(None, error="timed out after 1.0 s"), "deny", id="parent unreadable: fail closed"),
    pytest.param(None, "deny", id="parent never read: fail closed"),
])
def test_scale_parent_lookups(parent: policy.Parent | None, outcome: str) -> None:
    verdict = policy.validate(scale_review(9)["request"], SETTINGS, NOW, parent)
    assert verdict.outcome == outcome
    if outcome == "deny":
        assert "cannot read it to check whether git declares its replicas" in verdict.message


def test_status_and_other_subresources_are_not_intercepted() -> None:
    old = live()
    request = review("UPDATE", old=old, new=_replicas(old, 9), subresource="status")["request"]
    assert policy.validate(request, SETTINGS, NOW).outcome == "allow"


def test_connect_is_not_intercepted() -> None:
    request = review("CONNECT", new={"kind": "PodExecOptions", "apiVersion": "v1"})["request"]
    assert policy.validate(request, SETTINGS, NOW).outcome == "allow"


# ---------------------------------------------------------------- dry-run

@pytest.mark.parametrize("enforcement", ["deny", "warn"])
def test_dry_run_is_decided_identically_and_recorded_as_dry_run(enforcement: Enforcement) -> None:
    old = live(enforcement=enforcement)
    wet = policy.validate(review("UPDATE", old=old, new=_replicas(old, 9))["request"], SETTINGS, NOW)
    dry = policy.validate(review("UPDATE", old=old, new=_replicas(old, 9), dry_run=True)["request"], SETTINGS, NOW)
    assert (dry.outcome, dry.message, dry.warnings) == (wet.outcome, wet.message, wet.warnings)
    assert dry.record is not None and wet.record is not None
    assert dry.record.dry_run and not wet.record.dry_run


def test_the_record_says_who_did_what_to_which_object() -> None:
    old = live()
    verdict = policy.validate(review("UPDATE", old=old, new=_replicas(old, 9))["request"], SETTINGS, NOW)
    record = verdict.record
    assert record is not None
    assert record.to_dict() == {
        "time": "2024-06-01T12:00:00Z", "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "user": "laptop",
        "groups": ["engineers", "system:authenticated"], "operation": "UPDATE", "subresource": "",
        "object": "Deployment production/my-service", "api_version": "apps/v1", "kind": "Deployment",
        "namespace": "production", "name": "my-service", "object_uid": "0b1c2d3e-uid",
        "application": "driftguard-system/my-service", "decision": "deny", "reason": verdict.message,
        "fields": [{"field": "spec.replicas", "declared": "3", "requested": "9"}], "dry_run": False,
        "repo": "https://github.com/org/k8s-manifests", "commit": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
        "path": "services/my-service/production/deployment.yaml",
    }


def test_the_record_names_the_verified_signer_of_the_stamped_commit() -> None:
    old = live()
    old["metadata"]["annotations"]["driftguard.io/verified-by"] = "Alice <alice@org> (OpenPGP 469AE5FE)"
    verdict = policy.validate(review("UPDATE", old=old, new=_replicas(old, 9))["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny" and verdict.record is not None
    data = verdict.record.to_dict()
    assert data["verified_by"] == "Alice <alice@org> (OpenPGP 469AE5FE)"
    assert type(verdict.record).from_dict(data) == verdict.record
