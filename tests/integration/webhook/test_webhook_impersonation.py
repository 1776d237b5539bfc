"""The reconciler applying as a tenant's ServiceAccount (issue #11): the real API server carries the sealed
``driftguard.io/reconciler`` user extra to the real webhook, which admits the write only when the seal
verifies for that very user; the tenant itself, a seal for someone else or a forged one are judged like
anyone's request."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

import pytest
from support.guarded import SOURCE, Guarded, _binding, create_or_keep, deployment
from support.webhook_harness import eventually

from driftguard.core import actors, contract
from driftguard.core.marks import MarkKey
from driftguard.kube import KubeError
from driftguard.kube.resources import Cluster, ResourceError

pytestmark = pytest.mark.integration


def _key(guarded: Guarded) -> MarkKey:
    path = guarded.webhook.settings.mark_key_file
    assert path is not None
    return MarkKey.from_text(path.read_text())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tenant(guarded: Guarded) -> str:
    """ServiceAccount ``deployer`` of the guarded namespace, with RBAC to change Deployments there."""
    create_or_keep(guarded.admin, f"/api/v1/namespaces/{guarded.namespace}/serviceaccounts",
                   {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}})
    create_or_keep(guarded.admin, f"/apis/rbac.authorization.k8s.io/v1/namespaces/{guarded.namespace}/rolebindings",
                   _binding(guarded.namespace, "deployer-admin", {"kind": "ServiceAccount", "name": "deployer",
                                                                  "namespace": guarded.namespace}))
    return f"system:serviceaccount:{guarded.namespace}:deployer"


def _as(guarded: Guarded, user: str, extra: Callable[[], dict[str, str]]) -> Cluster:
    return Cluster(guarded.admin).acting_as(user, extra)  # the admin may impersonate anyone, extras included


def test_the_reconciler_acting_as_a_tenant_is_admitted_only_with_a_seal_for_that_user(guarded: Guarded) -> None:
    name = f"acting-{secrets.token_hex(3)}"
    guarded.from_git(name)
    user, key = _tenant(guarded), _key(guarded)
    git_says = contract.stamp(deployment(name, guarded.namespace, replicas=5), application="driftguard-system/app",
                              source=SOURCE, enforcement="deny")

    sealed = _as(guarded, user, lambda: {actors.EXTRA: actors.seal(key, user, _now())})
    after = sealed.apply(git_says)
    assert after["spec"]["replicas"] == 5, "the reconciler's write as the tenant is admitted"

    someone_else = f"system:serviceaccount:{guarded.namespace}:other"
    attempts = {
        "sealed for another user": {actors.EXTRA: actors.seal(key, someone_else, _now())},
        "sealed with another key": {actors.EXTRA: actors.seal(MarkKey.generate(), user, _now())},
        "expired": {actors.EXTRA: actors.seal(key, user, _now() - dt.timedelta(minutes=10))},
        "forged": {actors.EXTRA: "v1.9999999999.deadbeef"},
    }
    for why, extra in attempts.items():
        with pytest.raises(ResourceError) as denied:
            _as(guarded, user, lambda extra=extra: extra).apply(
                {**git_says, "spec": {**git_says["spec"], "replicas": 7}})
        assert denied.value.status == 403, why
        assert f"this request claims to be the reconciler acting as {user}, but" in denied.value.message, why
    eventually(lambda: len(guarded.records(name, decision="deny")) >= len(attempts), what="the four denials audited")
    reasons = [r.reason for r in guarded.records(name, decision="deny")]
    assert sum("does not verify" in r for r in reasons) == 3 and sum("seal expired" in r for r in reasons) == 1

    # The tenant itself (its own token, no extra) changing a declared field is anyone.
    with pytest.raises(KubeError) as own:
        guarded.admin.request("PATCH", guarded.path(name), body={"spec": {"replicas": 9}},
                              content_type="application/merge-patch+json", headers={"Impersonate-User": user})
    assert "spec.replicas of Deployment" in guarded.denied_by_us(own.value)
    live = guarded.admin.request("GET", guarded.path(name))
    assert live["spec"]["replicas"] == 5
