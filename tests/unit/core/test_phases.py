"""Sync phases, waves, hooks and sync options (driftguard.core.phases): Argo CD's annotations, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core import phases
from driftguard.core.phases import DeletePolicy as D
from driftguard.core.phases import Phase, PhaseError, Traits, plan, traits


def obj(**annotations: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "annotations": annotations}}


BHC = frozenset({D.BEFORE_HOOK_CREATION})


@pytest.mark.parametrize(("annotations", "hook", "phases_", "skip", "policies", "wave"), [
    ({}, False, (), False, frozenset(), 0),
    ({phases.SYNC_WAVE: "5"}, False, (), False, frozenset(), 5),
    ({phases.SYNC_WAVE: " -2 "}, False, (), False, frozenset(), -2),
    ({phases.HOOK: "PreSync"}, True, (Phase.PRE_SYNC,), False, BHC, 0),  # Argo CD's default policy
    ({phases.HOOK: "PreSync,PostSync"}, True, (Phase.PRE_SYNC, Phase.POST_SYNC), False, BHC, 0),
    ({phases.HOOK: "SyncFail", phases.HOOK_DELETE_POLICY: "HookSucceeded,HookFailed"}, True, (Phase.SYNC_FAIL,),
     False, frozenset({D.HOOK_SUCCEEDED, D.HOOK_FAILED}), 0),
    ({phases.HOOK: "PostDelete"}, True, (Phase.POST_DELETE,), False, BHC, 0),
    ({phases.HOOK: "Skip"}, False, (), True, frozenset(), 0),  # Skip: a plain object, not applied
    # Helm's annotations, mapped as Argo CD maps them
    ({phases.HELM_HOOK: "pre-install,pre-upgrade"}, True, (Phase.PRE_SYNC,), False, BHC, 0),
    ({phases.HELM_HOOK: "post-install", phases.HELM_HOOK_WEIGHT: "-5",
      phases.HELM_HOOK_DELETE_POLICY: "hook-succeeded"}, True, (Phase.POST_SYNC,), False,
     frozenset({D.HOOK_SUCCEEDED}), -5),
    ({phases.HELM_HOOK: "post-delete", phases.HELM_HOOK_DELETE_POLICY: "before-hook-creation,hook-failed"},
     True, (Phase.POST_DELETE,), False, frozenset({D.BEFORE_HOOK_CREATION, D.HOOK_FAILED}), 0),
    ({phases.HELM_HOOK: "test"}, True, (), False, BHC, 0),  # a hook Argo CD never runs
    # Argo CD's annotations win over Helm's
    ({phases.HOOK: "Sync", phases.HELM_HOOK: "pre-install", phases.SYNC_WAVE: "2", phases.HELM_HOOK_WEIGHT: "9",
      phases.HOOK_DELETE_POLICY: "HookFailed", phases.HELM_HOOK_DELETE_POLICY: "hook-succeeded"},
     True, (Phase.SYNC,), False, frozenset({D.HOOK_FAILED}), 2),
])
def test_traits(annotations: dict[str, str], hook: bool, phases_: tuple[Phase, ...], skip: bool,
                policies: frozenset[D], wave: int) -> None:
    t = traits(obj(**annotations))
    assert (t.hook, t.phases, t.skip, t.delete_policies, t.wave) == (hook, phases_, skip, policies, wave)
    assert t.applied is not (hook or skip)


@pytest.mark.parametrize(("text", "prune", "delete", "replace", "force", "validate", "prune_last"), [
    ("", True, True, False, False, True, False),
    ("Prune=false", False, True, False, False, True, False),
    ("Delete=false, Replace=true", True, False, True, False, True, False),
    ("Force=true,Replace=true,Validate=false", True, True, True, True, False, False),
    ("PruneLast=true,SkipDryRunOnMissingResource=true,ServerSideApply=true", True, True, False, False, True, True),
])
def test_sync_options(text: str, prune: bool, delete: bool, replace: bool, force: bool, validate: bool,
                      prune_last: bool) -> None:
    t = traits(obj(**{phases.SYNC_OPTIONS: text}))
    assert (t.prune, t.delete, t.replace, t.force, t.validate, t.prune_last) == (
        prune, delete, replace, force, validate, prune_last)


def test_ignore_extraneous() -> None:
    assert traits(obj(**{phases.COMPARE_OPTIONS: "IgnoreExtraneous"})).ignore_extraneous
    assert not traits(obj()).ignore_extraneous


@pytest.mark.parametrize(("annotations", "says"), [
    ({phases.SYNC_WAVE: "one"}, "sync-wave: 'one' is not an integer"),
    ({phases.SYNC_WAVE: "1.5"}, "is not an integer"),
    ({phases.HELM_HOOK_WEIGHT: "x"}, "hook-weight: 'x' is not an integer"),
    ({phases.HOOK: "PreSynk"}, "'PreSynk' is not a hook type (one of PreSync, Sync, PostSync"),
    ({phases.HOOK: ""}, "annotation argocd.argoproj.io/hook is empty"),
    ({phases.HOOK: "PreSync", phases.HOOK_DELETE_POLICY: "Always"}, "'Always' is not a delete policy"),
    ({phases.HELM_HOOK: "pre-instal"}, "'pre-instal' is not a Helm hook"),
    ({phases.HELM_HOOK: "pre-install", phases.HELM_HOOK_DELETE_POLICY: "never"}, "'never' is not a Helm delete"),
    ({phases.SYNC_OPTIONS: "Prune=no"}, "'Prune=no' is not a sync option driftguard supports (Prune=true"),
    ({phases.SYNC_OPTIONS: "Prune=confirm"}, "'Prune=confirm' is not a sync option"),
    ({phases.SYNC_OPTIONS: "Replace"}, "'Replace' is not a sync option"),
    ({phases.COMPARE_OPTIONS: "IgnoreEverything"}, "'IgnoreEverything' is not a compare option"),
])
def test_unreadable_annotations_say_which_and_why(annotations: dict[str, str], says: str) -> None:
    with pytest.raises(PhaseError, match=None) as e:
        traits(obj(**annotations))
    assert says in str(e.value)


def test_is_hook() -> None:
    assert phases.is_hook(obj(**{phases.HOOK: "PreSync"}))
    assert phases.is_hook(obj(**{phases.HELM_HOOK: "test"}))
    assert not phases.is_hook(obj(**{phases.SYNC_WAVE: "1"}))
    assert not phases.is_hook({"metadata": {"annotations": None}})


def t(wave: int = 0, *hook: Phase, **options: str) -> Traits:
    return Traits(hook=bool(hook), phases=hook, wave=wave, options=options)


def steps(resources: list[tuple[str, Traits]], hooks: list[tuple[str, Traits]] = [],  # noqa: B006
          prunes: list[tuple[str, Traits]] = [], prune_last: bool = False) -> list[tuple[str, list[str], list[str],  # noqa: B006
                                                                                      list[str]]]:
    return [(s.label, list(s.prune), list(s.apply), list(s.hooks))
            for s in plan(resources, hooks, prunes, prune_last=prune_last)]


@pytest.mark.parametrize(("resources", "hooks", "prunes", "prune_last", "want"), [
    # one wave, no hooks: one step (what a plain Application always was)
    ([("a", t()), ("b", t())], [], [("x", t())], False, [("Sync wave 0", ["x"], ["a", "b"], [])]),
    # waves ascending; skipped objects and hooks that never run are left out
    ([("c", t(5)), ("a", t(-1)), ("b", t()), ("s", Traits(skip=True))], [("never", Traits(hook=True))], [], False,
     [("Sync wave -1", [], ["a"], []), ("Sync wave 0", [], ["b"], []), ("Sync wave 5", [], ["c"], [])]),
    # phases in order, waves within each; a hook in two phases runs in both
    ([("app", t())], [("migrate", t(0, Phase.PRE_SYNC)), ("schema", t(-1, Phase.PRE_SYNC)),
                      ("smoke", t(0, Phase.POST_SYNC)), ("both", t(3, Phase.PRE_SYNC, Phase.POST_SYNC)),
                      ("during", t(0, Phase.SYNC)), ("fail", t(0, Phase.SYNC_FAIL)),
                      ("gone", t(0, Phase.POST_DELETE))], [], False,
     [("PreSync wave -1", [], [], ["schema"]), ("PreSync wave 0", [], [], ["migrate"]),
      ("PreSync wave 3", [], [], ["both"]), ("Sync wave 0", [], ["app"], ["during"]),
      ("PostSync wave 0", [], [], ["smoke"]), ("PostSync wave 3", [], [], ["both"])]),
    # prune in reverse wave order: the prune waves are mirrored (what came last goes first)
    ([("a", t(0)), ("b", t(2))], [], [("p0", t(0)), ("p2", t(2)), ("p5", t(5))], False,
     [("Sync wave 0", ["p5"], ["a"], []), ("Sync wave 2", ["p2"], ["b"], []), ("Sync wave 5", ["p0"], [], [])]),
    # PruneLast (the Application's): every prune after the last wave
    ([("a", t(0)), ("b", t(2))], [], [("p0", t(0)), ("p2", t(2))], True,
     [("Sync wave 0", [], ["a"], []), ("Sync wave 2", [], ["b"], []), ("Sync wave 3", ["p0", "p2"], [], [])]),
    # PruneLast=true on one object only
    ([("a", t(0))], [], [("p0", t(0)), ("last", t(0, PruneLast="true"))], False,
     [("Sync wave 0", ["p0"], ["a"], []), ("Sync wave 1", ["last"], [], [])]),
    # nothing declared, only prunes
    ([], [], [("p", t(1))], False, [("Sync wave 1", ["p"], [], [])]),
])
def test_plan(resources: list[tuple[str, Traits]], hooks: list[tuple[str, Traits]], prunes: list[tuple[str, Traits]],
              prune_last: bool, want: list[tuple[str, list[str], list[str], list[str]]]) -> None:
    assert steps(resources, hooks, prunes, prune_last) == want


def test_hooks_of_a_phase_by_wave() -> None:
    hooks = [("b", t(1, Phase.SYNC_FAIL)), ("a", t(-1, Phase.SYNC_FAIL)), ("c", t(1, Phase.SYNC_FAIL)),
             ("d", t(0, Phase.POST_DELETE)), ("e", t(0, Phase.PRE_SYNC))]
    assert phases.hooks_of(hooks, Phase.SYNC_FAIL) == [["a"], ["b", "c"]]
    assert phases.hooks_of(hooks, Phase.POST_DELETE) == [["d"]]


def test_phased() -> None:
    assert not phases.phased(plan([("a", t()), ("b", t())], [], [("x", t())]))
    assert phases.phased(plan([("a", t()), ("b", t(1))], [], []))
    assert phases.phased(plan([("a", t())], [("h", t(0, Phase.SYNC))], []))
