"""The inventory a cycle keeps: what exists now, never what was never created, plus what must be retried."""

from __future__ import annotations

from driftguard.core.changes import Action, Change
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.objects import ObjectRef
from reconciler.apply import Outcome
from reconciler.reconcile import _kept


def ref(name: str) -> ObjectRef:
    return ObjectRef("", "ConfigMap", "prod", name)


def inv(*names: str) -> Inventory:
    return Inventory.of(Entry(ref(n), "v1") for n in names)


def outcome(name: str, action: Action) -> Outcome:
    return Outcome(Change(ref(name), action))


def test_failed_creates_are_not_owned_but_failed_updates_stay() -> None:
    new = inv("a", "b", "c")
    outcomes = [outcome("a", Action.CREATED), outcome("b", Action.FAILED), outcome("c", Action.FAILED)]
    assert _kept(new, outcomes, old=inv("c", "gone")) == inv("a", "c")


def test_stale_is_old_minus_new_and_failed_prunes_are_kept() -> None:
    old, new = inv("a", "b", "c"), inv("a", "d")
    stale = old.stale(new)
    assert [e.ref.name for e in stale] == ["b", "c"]
    kept = _kept(new, [outcome("a", Action.UNCHANGED), outcome("d", Action.CREATED)], old).merge(stale[:1])
    assert kept == inv("a", "b", "d")


def test_a_new_api_version_is_the_same_object() -> None:
    old = Inventory.of([Entry(ObjectRef("apps", "Deployment", "prod", "web"), "v1beta1")])
    new = Inventory.of([Entry(ObjectRef("apps", "Deployment", "prod", "web"), "v1")])
    assert old.stale(new) == []
