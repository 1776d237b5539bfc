"""driftguard's own labels and annotations: the reconciler's alone, except what the mutating webhook adds."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from support.admission import (
    LIVE_UID,
    MARK_KEY,
    MARKS,
    NOW,
    SETTINGS,
    apply_patch,
    deployment_manifest,
    edited,
    live,
    review,
)

from driftguard.core import contract
from driftguard.core.contract import Enforcement
from driftguard.core.marks import seal
from webhook import policy

MANAGED = ("metadata", "labels", contract.LABEL_MANAGED)


def _annotation(obj: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return edited(obj, "metadata", "annotations", key, value)


@pytest.mark.parametrize("enforcement", ["deny", "warn"])
@pytest.mark.parametrize(("edit", "keys"), [
    pytest.param(lambda o: edited(o, *MANAGED, ...), "label driftguard.io/managed", id="managed label removed"),
    pytest.param(lambda o: edited(o, *MANAGED, "false"), "label driftguard.io/managed", id="managed label false"),
    pytest.param(lambda o: _annotation(o, contract.ANN_ENFORCEMENT, "off"), "annotation driftguard.io/enforcement",
                 id="enforcement switched off"),
    pytest.param(lambda o: _annotation(o, contract.ANN_COMMIT, "0" * 40), "annotation driftguard.io/commit",
                 id="commit rewritten"),
    pytest.param(lambda o: _annotation(o, contract.ANN_DECLARED, "{}"), "annotation driftguard.io/declared",
                 id="declared fields emptied"),
    pytest.param(lambda o: edited(o, "metadata", "annotations", ...), "annotation driftguard.io/application",
                 id="all annotations removed (PUT of the git manifest)"),
    pytest.param(lambda o: edited(o, "metadata", "labels", "driftguard.io/extra", "x"), "label driftguard.io/extra",
                 id="new driftguard label"),
])
def test_tampering_is_denied_in_every_enforcing_mode(edit: Any, keys: str, enforcement: Enforcement) -> None:
    old = live(enforcement=enforcement)
    verdict = policy.validate(review("UPDATE", old=old, new=edit(old))["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith(
        "Deployment production/my-service: driftguard.io/ labels and annotations are written only by driftguard;"
    )
    assert keys in verdict.message


def test_tampering_and_field_changes_are_both_reported() -> None:
    old = live()
    new = edited(edited(old, "metadata", "annotations", contract.ANN_ENFORCEMENT, "off"), "spec", "replicas", 9)
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert "annotation driftguard.io/enforcement" in verdict.message
    assert "Also: spec.replicas of Deployment production/my-service is declared in git (3)" in verdict.message
    assert verdict.record is not None and [(f["field"], f["declared"], f["requested"]) for f in verdict.record.fields] \
        == [("spec.replicas", "3", "9"), ('metadata.annotations["driftguard.io/enforcement"]', "deny", "off")]


def test_a_write_that_drops_driftguard_keys_and_changes_fields_is_told_about_its_fields_only() -> None:
    """kubectl replace -f of an edited git manifest: the user never wrote driftguard's keys."""
    old = live()
    one = edited(edited(old, *MANAGED, ...), "spec", "replicas", 9)
    patched = policy.validate(review("UPDATE", old=old, new=one)["request"], SETTINGS, NOW, marks=MARKS)
    assert "label driftguard.io/managed" in patched.message  # removing one key is meant: told so
    new = edited(edited(old, *MANAGED, ...), "spec", "replicas", 9)
    new["metadata"]["annotations"] = {k: v for k, v in new["metadata"]["annotations"].items()
                                      if not k.startswith(contract.PREFIX)}
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    assert verdict.message.startswith("spec.replicas of Deployment production/my-service is declared in git (3)")
    assert "label driftguard.io/managed" not in verdict.message
    text, hint = verdict.message.rsplit("\n", 1)
    assert hint.startswith("driftguard suggest -- scale deployment/my-service -n production --replicas=9  # ")
    assert text.endswith("(the driftguard.io/ labels and annotations the request leaves out, as kubectl "
                                    "replace of a manifest does, are restored by driftguard when every declared "
                                    "field is git's)")
    assert verdict.record is not None and [f["field"] for f in verdict.record.fields] == ["spec.replicas"]


def test_off_mode_records_nothing_even_for_metadata() -> None:
    old = live(enforcement="off")
    verdict = policy.validate(review("UPDATE", old=old, new=edited(old, *MANAGED, ...))["request"], SETTINGS, NOW,
                              marks=MARKS)
    assert (verdict.outcome, verdict.record) == ("allow", None)


def test_an_unmanaged_object_cannot_be_made_managed() -> None:
    old = deployment_manifest()
    new = edited(old, "metadata", "labels", contract.LABEL_MANAGED, "true")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny" and "forged ownership" in verdict.message


def test_the_new_objects_claims_are_never_trusted() -> None:
    """Decisions come from the old object's stamp: rewriting it in the same request changes nothing."""
    old = live()
    new = _annotation(edited(old, "spec", "replicas", 9), contract.ANN_ENFORCEMENT, "off")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny" and "spec.replicas" in verdict.message


@pytest.mark.parametrize(("mangle", "problem"), [
    pytest.param(lambda o: _annotation(o, contract.ANN_DECLARED, "{not json"), "driftguard.io/declared is not valid",
                 id="declared annotation unreadable"),
    pytest.param(lambda o: edited(o, "metadata", "annotations", contract.ANN_COMMIT, ...), "lacks annotation",
                 id="stamp incomplete"),
    pytest.param(lambda o: _annotation(o, contract.ANN_ENFORCEMENT, "maybe"), "is not one of",
                 id="unknown enforcement"),
])
def test_an_unreadable_stamp_fails_closed(mangle: Any, problem: str) -> None:
    old = mangle(live())
    new = edited(old, "metadata", "labels", "harmless", "yes")
    verdict = policy.validate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    assert "stamp is unreadable" in verdict.message and problem in verdict.message
    assert policy.mutate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS).patch == ()


# ---------------------------------------------------------------- the drift mark (warn mode)

def _warn_edit() -> tuple[dict[str, Any], dict[str, Any]]:
    old = live(enforcement="warn")
    return old, edited(old, "spec", "replicas", 9)


def test_warn_mode_mutation_stamps_the_drift_mark_and_validation_accepts_it() -> None:
    old, new = _warn_edit()
    mutation = policy.mutate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    assert mutation.patch == ({
        "op": "add", "path": "/metadata/annotations/driftguard.io~1drift",
        "value": seal(MARK_KEY, LIVE_UID, '{"user":"laptop","at":"2024-06-01T12:00:00Z","fields":["spec.replicas"]}'),
    },)
    mutated = apply_patch(new, mutation.patch)
    verdict = policy.validate(review("UPDATE", old=old, new=mutated)["request"], SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "warn"


def test_the_drift_mark_lists_every_drifted_field_not_only_this_requests() -> None:
    old = edited(live(enforcement="warn"), "spec", "template", "spec", "containers", 1, "image", "proxy:9")
    new = edited(old, "spec", "replicas", 9)
    mutation = policy.mutate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS)
    mark = contract.DriftMark.decode(str(mutation.patch[0].get("value")))
    assert mark is not None
    assert mark.fields == ("spec.replicas", "spec.template.spec.containers[name=sidecar].image")


@pytest.mark.parametrize(("mark", "outcome"), [
    pytest.param({"user": "laptop", "at": "2024-06-01T12:00:01Z", "fields": ["spec.replicas"]}, "warn",
                 id="exactly what the mutating webhook writes"),
    pytest.param({"user": "someone-else", "at": "2024-06-01T12:00:00Z", "fields": ["spec.replicas"]}, "deny",
                 id="blames another user"),
    pytest.param({"user": "laptop", "at": "2024-06-01T12:00:00Z", "fields": []}, "deny", id="hides the fields"),
    pytest.param({"user": "laptop", "at": "2020-01-01T00:00:00Z", "fields": ["spec.replicas"]}, "deny",
                 id="backdated"),
    pytest.param("not json", "deny", id="garbage"),
    pytest.param('{"user":"laptop","at":"2024-06-01T12:00:01Z","fields":["spec.replicas"]}', "deny",
                 id="right fields, no MAC"),
])
def test_a_drift_mark_is_accepted_only_as_the_mutating_webhook_writes_it(mark: Any, outcome: str) -> None:
    old, new = _warn_edit()
    text = mark if isinstance(mark, str) else seal(MARK_KEY, LIVE_UID, json.dumps(mark))
    verdict = policy.validate(review("UPDATE", old=old, new=_annotation(new, contract.ANN_DRIFT, text))["request"],
                              SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == outcome


def test_a_drift_mark_without_drift_is_tampering() -> None:
    old = live(enforcement="warn")
    mark = contract.DriftMark("laptop", "2024-06-01T12:00:00Z", ()).encode()
    verdict = policy.validate(review("UPDATE", old=old, new=_annotation(old, contract.ANN_DRIFT, mark))["request"],
                              SETTINGS, NOW)
    assert verdict.outcome == "deny"


def test_deny_mode_mutates_nothing() -> None:
    old = live()
    mutation = policy.mutate(review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9))["request"],
                             SETTINGS, NOW)
    assert mutation.patch == ()


def test_mutation_creates_the_annotations_map_when_missing() -> None:
    old = live(enforcement="warn")
    new = edited(edited(old, "spec", "replicas", 9), "metadata", "annotations", ...)
    (op,) = policy.mutate(review("UPDATE", old=old, new=new)["request"], SETTINGS, NOW, marks=MARKS).patch
    assert op["path"] == "/metadata/annotations"
    assert list(cast(dict[str, str], op.get("value"))) == [contract.ANN_DRIFT]


@pytest.mark.parametrize("operation", ["CREATE", "DELETE"])
def test_only_updates_are_mutated(operation: str) -> None:
    old = live(enforcement="warn")
    request = review(operation, old=None if operation == "CREATE" else old,
                     new=old if operation == "CREATE" else None)["request"]
    assert policy.mutate(request, SETTINGS, NOW, marks=MARKS).patch == ()
