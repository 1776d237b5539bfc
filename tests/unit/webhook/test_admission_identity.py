"""Who passes without a decision: the reconciler and allow-listed cluster controllers, nobody else."""

from __future__ import annotations

import pytest
from support.admission import NOW, RECONCILER, SETTINGS, edited, live, review, scale_review

from webhook import policy
from webhook.settings import GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER, Settings


@pytest.mark.parametrize(("user", "groups", "outcome"), [
    (RECONCILER, ("system:serviceaccounts",), "allow"),
    (GARBAGE_COLLECTOR, ("system:serviceaccounts",), "allow"),
    (NAMESPACE_CONTROLLER, ("system:serviceaccounts",), "allow"),
    ("admin", ("system:masters",), "deny"),
    ("system:serviceaccount:driftguard-system:other", ("system:serviceaccounts",), "deny"),
    ("system:serviceaccount:kube-system:deployment-controller", ("system:serviceaccounts",), "deny"),
])
@pytest.mark.parametrize("operation", ["UPDATE", "DELETE"])
def test_only_trusted_identities_pass(user: str, groups: tuple[str, ...], outcome: str, operation: str) -> None:
    old = live()
    new = edited(old, "spec", "replicas", 9) if operation == "UPDATE" else None
    verdict = policy.validate(review(operation, old=old, new=new, user=user, groups=groups)["request"],
                              SETTINGS, NOW)
    assert verdict.outcome == outcome


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
        request = review("UPDATE", old=old, new=edited(old, "spec", "replicas", 9), user=user)["request"]
        assert policy.validate(request, settings, NOW).outcome == outcome


def test_trusted_scale_needs_no_parent_read() -> None:
    request = scale_review(9, user=RECONCILER)["request"]
    assert not policy.needs_parent(request, SETTINGS)
    assert policy.validate(request, SETTINGS, NOW).outcome == "allow"
