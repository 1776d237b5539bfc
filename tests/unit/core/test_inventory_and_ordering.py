"""Inventory set algebra and apply/prune order."""

from __future__ import annotations

from driftguard.core import ordering
from driftguard.core.changes import Action, Change, ChangeSet
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.objects import ObjectRef

CM = Entry(ObjectRef("", "ConfigMap", "prod", "cfg"), "v1")
DEPLOY = Entry(ObjectRef("apps", "Deployment", "prod", "web"), "apps/v1")
NS = Entry(ObjectRef("", "Namespace", "", "prod"), "v1")
CRD = Entry(ObjectRef("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"),
            "apiextensions.k8s.io/v1")
HOOK = Entry(ObjectRef("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "", "h"),
             "admissionregistration.k8s.io/v1")


def test_stale_is_old_minus_new_ignoring_version() -> None:
    old = Inventory.of([CM, DEPLOY])
    new = Inventory.of([Entry(DEPLOY.ref, "apps/v2")])
    assert old.stale(new) == [CM]
    assert new.stale(old) == []


def test_failed_deletes_are_kept() -> None:
    assert Inventory.of([DEPLOY]).merge([CM]) == Inventory.of([CM, DEPLOY])


def test_round_trip_through_status() -> None:
    inv = Inventory.of([CM, DEPLOY, NS, CRD])
    assert Inventory.from_list(inv.to_list()) == inv
    assert {"id": "prod_web_apps_Deployment", "v": "apps/v1"} in inv.to_list()
    assert Inventory.from_list(None) == Inventory()


def test_apply_order_crds_and_namespaces_first_webhooks_last_prune_reversed() -> None:
    items = [HOOK, DEPLOY, CM, NS, CRD]
    applied = ordering.for_apply(items, lambda e: e.ref)
    assert applied == [CRD, NS, CM, DEPLOY, HOOK]
    assert ordering.for_prune(items, lambda e: e.ref) == list(reversed(applied))


def test_changeset_summary() -> None:
    cs = ChangeSet()
    for action in (Action.CREATED, Action.CREATED, Action.UNCHANGED, Action.FAILED):
        cs.add(Change(CM.ref, action))
    assert cs.summary() == "2 created, 1 unchanged, 1 failed"
    assert len(cs.writes()) == 2 and len(cs.failed()) == 1
    assert ChangeSet().summary() == "nothing to do"
