"""Break-glass: a member of a configured group who gives a reason is admitted, marked and recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from support.admission import (
    LIVE_UID,
    MARKS,
    NOW,
    SETTINGS,
    SOURCE,
    SRE_GROUP,
    apply_patch,
    edited,
    live,
    review,
    scale_review,
)

from driftguard.core import contract
from driftguard.core.contract import BreakGlass, Enforcement
from driftguard.core.marks import seal
from webhook import policy
from webhook.settings import Settings

SRE = ("sre-oncall", (SRE_GROUP, "system:authenticated"))
REASON = "INC-4711: scale up for the outage"


def _break_glass(obj: dict[str, Any], reason: str = REASON) -> dict[str, Any]:
    return edited(edited(obj, "spec", "replicas", 9), "metadata", "annotations", contract.ANN_BREAK_GLASS, reason)


def _request(old: dict[str, Any], new: dict[str, Any] | None, who: tuple[str, tuple[str, ...]] = SRE,
             operation: str = "UPDATE") -> Any:
    return review(operation, old=old, new=new, user=who[0], groups=who[1])["request"]


def _granted(old: dict[str, Any], new: dict[str, Any], who: tuple[str, tuple[str, ...]] = SRE) -> dict[str, Any]:
    return apply_patch(new, policy.mutate(_request(old, new, who), SETTINGS, NOW, marks=MARKS).patch)


@pytest.mark.parametrize("enforcement", ["deny", "warn"])
def test_a_member_with_a_reason_is_admitted_and_granted(enforcement: Enforcement) -> None:
    old = live(enforcement=enforcement)
    mutated = _granted(old, _break_glass(old))
    grant = BreakGlass.decode(contract.annotations_of(mutated)[contract.ANN_BREAK_GLASS_GRANTED])
    assert grant == BreakGlass(user="sre-oncall", at="2024-06-01T12:00:00Z", reason=REASON, commit=SOURCE.commit,
                               expires_at="2024-06-01T13:00:00Z")
    assert contract.ANN_DRIFT not in contract.annotations_of(mutated)
    verdict = policy.validate(_request(old, mutated), SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "break-glass" and verdict.allowed
    assert verdict.record is not None and verdict.record.decision == "break-glass"
    assert [f["field"] for f in verdict.record.fields] == ["spec.replicas"]
    assert "INC-4711" in verdict.warnings[0] and "2024-06-01T13:00:00Z" in verdict.warnings[0]


def test_the_grant_ttl_is_configurable() -> None:
    old = live()
    settings = Settings(break_glass_groups=(SRE_GROUP,), break_glass_ttl=600)
    patch = policy.mutate(_request(old, _break_glass(old)), settings, NOW, marks=MARKS).patch
    grant = BreakGlass.decode(str(patch[0].get("value")))
    assert grant is not None and grant.expires_at == "2024-06-01T12:10:00Z"


def test_without_the_grant_annotation_a_member_is_still_admitted() -> None:
    """The mutating webhook is best-effort; the validating webhook is the authority."""
    old = live()
    assert policy.validate(_request(old, _break_glass(old)), SETTINGS, NOW, marks=MARKS).outcome == "break-glass"


@pytest.mark.parametrize(("who", "settings", "refusal"), [
    pytest.param(("laptop", ("engineers",)), SETTINGS, "break-glass requires membership in group sre; laptop is "
                 "not a member", id="not in the group"),
    pytest.param(SRE, Settings(), "break-glass is disabled on this cluster", id="no group configured"),
])
def test_a_non_member_setting_break_glass_is_denied(who: tuple[str, tuple[str, ...]], settings: Settings,
                                                    refusal: str) -> None:
    old = live()
    new = _break_glass(old)
    assert policy.mutate(_request(old, new, who), settings, NOW, marks=MARKS).patch == ()
    verdict = policy.validate(_request(old, new, who), settings, NOW, marks=MARKS)
    assert verdict.outcome == "deny"
    assert "annotation driftguard.io/break-glass" in verdict.message and refusal in verdict.message
    assert "Also: spec.replicas of Deployment production/my-service" in verdict.message


def test_an_empty_reason_is_no_break_glass() -> None:
    old = live()
    verdict = policy.validate(_request(old, _break_glass(old, reason="  ")), SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny"


def _grant(uid: str | None = LIVE_UID, **changes: str) -> str:
    """A grant sealed for the object ``uid`` (None: not sealed at all, as a hand-written one)."""
    values = {"user": "sre-oncall", "at": "2024-06-01T12:00:00Z", "reason": REASON, "commit": SOURCE.commit,
              "expires_at": "2024-06-01T13:00:00Z", **changes}
    text = BreakGlass(**values).encode()
    return text if uid is None or MARKS.key is None else seal(MARKS.key, uid, text)


@pytest.mark.parametrize(("grant", "outcome"), [
    pytest.param(_grant(), "break-glass", id="as the mutating webhook writes it"),
    pytest.param(_grant(user="someone-else"), "deny", id="granted to another user"),
    pytest.param(_grant(commit="0" * 40), "deny", id="for another commit"),
    pytest.param(_grant(reason="other"), "deny", id="for another reason"),
    pytest.param(_grant(at="2024-05-01T12:00:00Z"), "deny", id="backdated"),
    pytest.param(_grant(expires_at="never"), "deny", id="unreadable expiry"),
    pytest.param(_grant(None), "deny", id="without a MAC"),
    pytest.param(_grant("another-object-uid"), "deny", id="sealed for another object"),
])
def test_a_grant_is_accepted_only_as_the_mutating_webhook_writes_it(grant: str, outcome: str) -> None:
    old = live()
    new = edited(_break_glass(old), "metadata", "annotations", contract.ANN_BREAK_GLASS_GRANTED, grant)
    assert policy.validate(_request(old, new), SETTINGS, NOW, marks=MARKS).outcome == outcome


def test_a_member_ends_break_glass_by_removing_the_annotations() -> None:
    old = _granted(live(), _break_glass(live()))
    new = edited(edited(old, "metadata", "annotations", contract.ANN_BREAK_GLASS, ...),
                 "metadata", "annotations", contract.ANN_BREAK_GLASS_GRANTED, ...)
    assert policy.validate(_request(old, new), SETTINGS, NOW, marks=MARKS).outcome == "allow"
    assert policy.validate(_request(old, new, ("laptop", ("engineers",))), SETTINGS, NOW, marks=MARKS).outcome == "deny"


def test_others_gain_nothing_from_someone_elses_break_glass() -> None:
    old = _granted(live(), _break_glass(live()))
    new = edited(old, "spec", "replicas", 12)
    verdict = policy.validate(_request(old, new, ("laptop", ("engineers",))), SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == "deny" and "spec.replicas" in verdict.message


@pytest.mark.parametrize(("when", "who", "outcome"), [
    pytest.param(NOW, SRE, "break-glass", id="the grantee within the TTL"),
    pytest.param(NOW + dt.timedelta(hours=2), SRE, "deny", id="after the TTL"),
    pytest.param(NOW, ("laptop", ("engineers",)), "deny", id="someone else"),
    pytest.param(NOW, ("sre-other", (SRE_GROUP,)), "deny", id="another member without their own grant"),
])
def test_a_standing_grant_covers_scale_and_delete(when: dt.datetime, who: tuple[str, tuple[str, ...]],
                                                  outcome: str) -> None:
    parent = _granted(live(), _break_glass(live()))
    scale = scale_review(12, user=who[0], groups=who[1])["request"]
    assert policy.validate(scale, SETTINGS, when, policy.Parent(parent), marks=MARKS).outcome == outcome
    delete = _request(parent, None, who, operation="DELETE")
    assert policy.validate(delete, SETTINGS, when, marks=MARKS).outcome == outcome


@pytest.mark.parametrize("grant", [_grant(None), _grant("another-object-uid"),
                                   _grant(expires_at="2099-01-01T00:00:00Z").replace("sre-oncall", "sre-other")],
                         ids=["hand-written", "moved from another object", "edited after sealing"])
def test_a_standing_grant_written_around_the_webhook_covers_nothing(grant: str) -> None:
    parent = edited(_break_glass(live()), "metadata", "annotations", contract.ANN_BREAK_GLASS_GRANTED, grant)
    for who in (SRE, ("sre-other", (SRE_GROUP,))):
        scale = scale_review(12, user=who[0], groups=who[1])["request"]
        assert policy.validate(scale, SETTINGS, NOW, policy.Parent(parent), marks=MARKS).outcome == "deny"
        delete = _request(parent, None, who, operation="DELETE")
        assert policy.validate(delete, SETTINGS, NOW, marks=MARKS).outcome == "deny"


def test_a_standing_grant_lasts_no_longer_than_its_ttl_whatever_its_expiry_says() -> None:
    parent = edited(_break_glass(live()), "metadata", "annotations", contract.ANN_BREAK_GLASS_GRANTED,
                    _grant(expires_at="2099-01-01T00:00:00Z"))
    delete = _request(parent, None, SRE, operation="DELETE")
    assert policy.validate(delete, SETTINGS, NOW + dt.timedelta(minutes=59), marks=MARKS).outcome == "break-glass"
    assert policy.validate(delete, SETTINGS, NOW + dt.timedelta(minutes=61), marks=MARKS).outcome == "deny"


def test_without_a_mark_key_break_glass_is_refused_with_the_fix() -> None:
    old = live()
    new = _break_glass(old)
    assert policy.mutate(_request(old, new), SETTINGS, NOW).patch == ()
    verdict = policy.validate(_request(old, new), SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert "no mark key" in verdict.message and "driftguard certs install" in verdict.message
