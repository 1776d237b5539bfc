"""Who passes without a decision: the reconciler with a token bound to its own Pod, allow-listed controllers
for the deletes they make, nobody else; a name alone is never enough."""

from __future__ import annotations

import pytest
from support.admission import (
    CREDENTIAL,
    MARK_KEY,
    MARKS,
    NOW,
    POD_BOUND,
    RECONCILER,
    SETTINGS,
    edited,
    live,
    review,
    scale_review,
)

from driftguard.core import actors
from driftguard.core.marks import MarkKey
from webhook import policy
from webhook.settings import GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER, Settings

BOUND = POD_BOUND
ELSEWHERE = {**CREDENTIAL, "authentication.kubernetes.io/pod-name": ["attacker-pod"],
             "authentication.kubernetes.io/pod-uid": ["0f0f"]}
TWO_PODS = {**CREDENTIAL, "authentication.kubernetes.io/pod-name": ["driftguard-reconciler-a", "x"],
            "authentication.kubernetes.io/pod-uid": ["1", "2"]}
NO_UID = {"authentication.kubernetes.io/pod-name": ["driftguard-reconciler-a"]}
SA = ("system:serviceaccounts",)


@pytest.mark.parametrize(("user", "extra", "operation", "owned", "outcome"), [
    pytest.param(RECONCILER, BOUND, "UPDATE", False, "allow", id="reconciler, pod-bound token"),
    pytest.param(RECONCILER, BOUND, "DELETE", False, "allow", id="reconciler deletes, pod-bound token"),
    pytest.param(RECONCILER, {}, "UPDATE", False, "deny", id="reconciler's name by impersonation (--as)"),
    pytest.param(RECONCILER, CREDENTIAL, "UPDATE", False, "deny", id="reconciler's name, kubectl create token"),
    pytest.param(RECONCILER, CREDENTIAL, "DELETE", False, "deny", id="reconciler's name deletes, unbound token"),
    pytest.param(RECONCILER, ELSEWHERE, "UPDATE", False, "deny", id="reconciler token bound to another Pod"),
    pytest.param(RECONCILER, TWO_PODS, "UPDATE", False, "deny", id="two pod names (forged extras)"),
    pytest.param(RECONCILER, NO_UID, "UPDATE", False, "deny", id="pod name without pod uid"),
    pytest.param(GARBAGE_COLLECTOR, CREDENTIAL, "DELETE", True, "allow", id="GC deletes an owned object"),
    pytest.param(GARBAGE_COLLECTOR, CREDENTIAL, "DELETE", False, "deny", id="GC deletes an object with no owner"),
    pytest.param(GARBAGE_COLLECTOR, {}, "DELETE", True, "deny", id="GC's name by impersonation"),
    pytest.param(GARBAGE_COLLECTOR, CREDENTIAL, "UPDATE", True, "deny", id="GC changes a declared field"),
    pytest.param(NAMESPACE_CONTROLLER, CREDENTIAL, "DELETE", False, "allow", id="namespace controller deletes"),
    pytest.param(NAMESPACE_CONTROLLER, {}, "DELETE", False, "deny", id="namespace controller by impersonation"),
    pytest.param(NAMESPACE_CONTROLLER, CREDENTIAL, "UPDATE", False, "deny", id="namespace controller updates"),
    pytest.param("admin", {}, "UPDATE", False, "deny", id="system:masters"),
    pytest.param("system:serviceaccount:driftguard-system:other", BOUND, "UPDATE", False, "deny",
                 id="another ServiceAccount, pod-bound"),
    pytest.param("system:serviceaccount:kube-system:deployment-controller", CREDENTIAL, "DELETE", False, "deny",
                 id="a controller not allow-listed"),
])
def test_only_credentials_of_trusted_identities_pass(user: str, extra: dict[str, list[str]], operation: str,
                                                     owned: bool, outcome: str) -> None:
    old = live()
    if owned:
        old["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                               "uid": "1234"}]
    new = edited(old, "spec", "replicas", 9) if operation == "UPDATE" else None
    request = review(operation, old=old, new=new, user=user, groups=SA, extra=extra)["request"]
    verdict = policy.validate(request, SETTINGS, NOW)
    assert verdict.outcome == outcome


@pytest.mark.parametrize(("user", "extra", "says"), [
    (RECONCILER, {}, "trusted only with a token bound to a reconciler Pod; this request's credential is not "
                     "pod-bound (impersonation or `kubectl create token`)"),
    (RECONCILER, ELSEWHERE, "trusted only from Pods named driftguard-reconciler-*; this token is bound to Pod "
                            "attacker-pod"),
    (GARBAGE_COLLECTOR, {}, "trusted only with its own token; this request carries none (impersonation)"),
])
def test_a_denial_of_a_trusted_name_says_why_the_name_was_not_enough(user: str, extra: dict[str, list[str]],
                                                                      says: str) -> None:
    old = live()
    verdict = policy.validate(review("DELETE", old=old, user=user, groups=SA, extra=extra)["request"], SETTINGS, NOW)
    assert verdict.outcome == "deny"
    assert verdict.message.endswith(f"(driftguard identity: {user} is {says})")
    assert verdict.record is not None and verdict.record.reason == verdict.message


def test_the_reconciler_pod_prefix_is_configurable() -> None:
    settings = Settings(reconciler_pod_prefix="attacker-")
    old = live()
    for extra, outcome in [(ELSEWHERE, "allow"), (BOUND, "deny")]:
        request = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9), user=RECONCILER,
                         extra=extra)["request"]
        assert policy.validate(request, settings, NOW).outcome == outcome


def test_the_reconciler_may_create_stamped_objects_and_rewrite_stamps() -> None:
    assert policy.validate(review("CREATE", new=live(), user=RECONCILER)["request"], SETTINGS, NOW).outcome == "allow"
    old = live()
    new = edited(old, "metadata", "annotations", "driftguard.io/commit", "ffffffff")
    assert policy.validate(review("UPDATE", old=old, new=new, user=RECONCILER)["request"],
                           SETTINGS, NOW).outcome == "allow"


def test_the_reconciler_user_is_configurable_and_a_list() -> None:
    settings = Settings(reconciler_users=("system:serviceaccount:ns:a", "system:serviceaccount:ns:b"))
    old = live()
    for user, outcome in [("system:serviceaccount:ns:b", "allow"), (RECONCILER, "deny")]:
        request = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9), user=user,
                         extra=POD_BOUND)["request"]
        assert policy.validate(request, settings, NOW).outcome == outcome


def test_trusted_scale_needs_no_parent_read() -> None:
    request = scale_review(9, user=RECONCILER)["request"]
    assert not policy.needs_parent(request, SETTINGS)
    assert policy.validate(request, SETTINGS, NOW).outcome == "allow"


TENANT = "system:serviceaccount:team-a:deployer"


def _acting(user: str, value: str | None = None, key: MarkKey = MARK_KEY) -> dict[str, list[str]]:
    return {**CREDENTIAL, actors.EXTRA: [value if value is not None else actors.seal(key, user, NOW)]}


@pytest.mark.parametrize(("user", "extra", "outcome", "says"), [
    pytest.param(TENANT, _acting(TENANT), "allow", "", id="reconciler acting as the tenant, sealed"),
    pytest.param(TENANT, {}, "deny", "", id="the tenant itself"),
    pytest.param(TENANT, _acting("system:serviceaccount:team-b:deployer"), "deny", "does not verify",
                 id="a seal for another ServiceAccount"),
    pytest.param(TENANT, _acting(TENANT, key=MarkKey(b"not-the-webhook-key-32-bytes-xyz")), "deny",
                 "does not verify", id="sealed with another key"),
    pytest.param(TENANT, _acting(TENANT, "v1.9999999999.00"), "deny", "does not verify", id="forged seal"),
    pytest.param("alice", _acting("alice"), "deny", "not a ServiceAccount", id="a user, not a ServiceAccount"),
])
def test_the_reconciler_acting_as_a_tenant_is_known_by_its_seal(user: str, extra: dict[str, list[str]],
                                                               outcome: str, says: str) -> None:
    old = live()
    request = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9), user=user, groups=SA,
                     extra=extra)["request"]
    verdict = policy.validate(request, SETTINGS, NOW, marks=MARKS)
    assert verdict.outcome == outcome
    assert says in verdict.message
    if outcome == "allow":
        assert policy.mutate(request, SETTINGS, NOW, marks=MARKS).patch == ()


def test_without_a_key_no_impersonated_write_is_the_reconciler() -> None:
    old = live()
    request = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9), user=TENANT, groups=SA,
                     extra=_acting(TENANT))["request"]
    verdict = policy.validate(request, SETTINGS, NOW)
    assert verdict.outcome == "deny" and "no mark key is configured" in verdict.message
