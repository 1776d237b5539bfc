"""Sync phases, waves, hooks and per-object sync options — Argo CD's annotations, read and planned (pure).

Each rendered object is classified once (``traits``):

* a **hook** carries ``argocd.argoproj.io/hook`` (comma separated: ``PreSync``, ``Sync``, ``PostSync``,
  ``SyncFail``, ``PostDelete``, ``Skip``) or Helm's ``helm.sh/hook``, mapped as Argo CD maps it
  (``pre-install``/``pre-upgrade`` → PreSync, ``post-install``/``post-upgrade`` → PostSync,
  ``post-delete`` → PostDelete; Helm hook types Argo CD does not run — ``test``, ``pre-delete``,
  ``pre-rollback``, ``post-rollback``, ``crd-install`` — leave a hook that never runs). Argo CD's annotation
  wins over Helm's. ``Skip`` means the object is not applied at all;
* its **delete policy** is ``argocd.argoproj.io/hook-delete-policy`` (``HookSucceeded``, ``HookFailed``,
  ``BeforeHookCreation``), else Helm's ``helm.sh/hook-delete-policy`` (``hook-succeeded``, ``hook-failed``,
  ``before-hook-creation``), else ``BeforeHookCreation`` (Argo CD's default);
* its **wave** is ``argocd.argoproj.io/sync-wave``, else Helm's ``helm.sh/hook-weight``, else 0;
* its **sync options** are ``argocd.argoproj.io/sync-options`` (``Prune=false``, ``Delete=false``,
  ``Replace=true``, ``Force=true``, ``SkipDryRunOnMissingResource=true``, ``Validate=false``,
  ``PruneLast=true``, ``ServerSideApply=true``), and ``argocd.argoproj.io/compare-options:
  IgnoreExtraneous``.

A value that cannot be read (a wave that is not an integer, an unknown hook type, policy or option) is a
``PhaseError`` naming the annotation, the value and what it may be: the caller names the object and
file and applies nothing of that revision.

``plan`` orders one sync as Argo CD's gitops-engine does: phases PreSync → Sync → PostSync (PreSync and
PostSync hold only hooks), waves ascending within a phase; prunes belong to the Sync phase at their own
wave, *mirrored* (the highest prune wave is pruned in the lowest, so objects go in the reverse of the order
they came), and ``PruneLast`` (the Application's sync option, or the object's own) prunes after the last
wave. Within one step, prunes run first, then applies (kinds in ``ordering``'s order).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

HOOK: Final = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY: Final = "argocd.argoproj.io/hook-delete-policy"
SYNC_WAVE: Final = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS: Final = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS: Final = "argocd.argoproj.io/compare-options"
HELM_HOOK: Final = "helm.sh/hook"
HELM_HOOK_WEIGHT: Final = "helm.sh/hook-weight"
HELM_HOOK_DELETE_POLICY: Final = "helm.sh/hook-delete-policy"


class PhaseError(ValueError):
    """An annotation of the object that cannot be read; ``str()`` says which, its value and the fix."""


class Phase(enum.StrEnum):
    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"
    POST_DELETE = "PostDelete"


SKIP: Final = "Skip"
SYNC_ORDER: Final = (Phase.PRE_SYNC, Phase.SYNC, Phase.POST_SYNC)


class DeletePolicy(enum.StrEnum):
    HOOK_SUCCEEDED = "HookSucceeded"
    HOOK_FAILED = "HookFailed"
    BEFORE_HOOK_CREATION = "BeforeHookCreation"


HELM_PHASES: Final[Mapping[str, Phase | None]] = {
    "pre-install": Phase.PRE_SYNC, "pre-upgrade": Phase.PRE_SYNC,
    "post-install": Phase.POST_SYNC, "post-upgrade": Phase.POST_SYNC,
    "post-delete": Phase.POST_DELETE,
    # Helm hook types Argo CD does not run: the object is a hook that never runs.
    "pre-delete": None, "pre-rollback": None, "post-rollback": None, "test": None, "test-success": None,
    "test-failure": None, "crd-install": None,
}
HELM_POLICIES: Final[Mapping[str, DeletePolicy]] = {
    "hook-succeeded": DeletePolicy.HOOK_SUCCEEDED, "hook-failed": DeletePolicy.HOOK_FAILED,
    "before-hook-creation": DeletePolicy.BEFORE_HOOK_CREATION,
}
# Per-object sync options and the values each may take (the first is the default).
SYNC_OPTION_VALUES: Final[Mapping[str, tuple[str, ...]]] = {
    "Prune": ("true", "false"), "Delete": ("true", "false"), "Replace": ("false", "true"),
    "Force": ("false", "true"), "SkipDryRunOnMissingResource": ("false", "true"), "Validate": ("true", "false"),
    "PruneLast": ("false", "true"), "ServerSideApply": ("true",),
}
COMPARE_OPTION_VALUES: Final = ("IgnoreExtraneous",)


@dataclass(frozen=True, slots=True)
class Traits:
    """What an object's annotations say about when and how it is synced."""

    hook: bool = False  # a hook: run in its phases, never stamped, protected, inventoried or pruned
    phases: tuple[Phase, ...] = ()  # the phases a hook runs in (empty for a hook that never runs)
    skip: bool = False  # Skip: not applied at all
    delete_policies: frozenset[DeletePolicy] = frozenset()
    wave: int = 0
    options: Mapping[str, str] = field(default_factory=dict)  # sync options set explicitly
    ignore_extraneous: bool = False

    def option(self, name: str) -> str:
        return self.options.get(name, SYNC_OPTION_VALUES[name][0])

    @property
    def prune(self) -> bool:
        return self.option("Prune") == "true"

    @property
    def delete(self) -> bool:
        return self.option("Delete") == "true"

    @property
    def replace(self) -> bool:
        return self.option("Replace") == "true"

    @property
    def force(self) -> bool:
        return self.option("Force") == "true"

    @property
    def validate(self) -> bool:
        return self.option("Validate") == "true"

    @property
    def prune_last(self) -> bool:
        return self.option("PruneLast") == "true"

    @property
    def applied(self) -> bool:
        """Whether the object is applied as a managed object (not a hook, not skipped)."""
        return not (self.hook or self.skip)


RESOURCE: Final = Traits()


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def is_hook(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` carries a hook annotation (Argo CD's or Helm's), whatever its value."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return isinstance(annotations, Mapping) and (HOOK in annotations or HELM_HOOK in annotations)


def traits(obj: Mapping[str, Any]) -> Traits:
    """The object's traits, from its annotations (``PhaseError`` when one cannot be read)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return RESOURCE
    a = {str(k): str(v) for k, v in annotations.items()}
    phases, skip, hook = _hook_types(a)
    policies = _policies(a) if hook else frozenset()
    return Traits(hook=hook, phases=phases, skip=skip, delete_policies=policies, wave=_wave(a),
                  options=_options(a), ignore_extraneous=_compare(a))


def _hook_types(a: Mapping[str, str]) -> tuple[tuple[Phase, ...], bool, bool]:
    """(phases, skip, is a hook)."""
    if HOOK in a:
        phases: list[Phase] = []
        skip = False
        for part in _csv(a[HOOK]):
            if part == SKIP:
                skip = True
            elif part in Phase.__members__.values():
                phases.append(Phase(part))
            else:
                raise PhaseError(f"annotation {HOOK}: {a[HOOK]!r}: {part!r} is not a hook type (one of "
                                 f"{', '.join([*Phase, SKIP])}, comma separated)")
        if skip and not phases:  # Skip alone: a plain object that is not applied
            return (), True, False
        if not phases:
            raise PhaseError(f"annotation {HOOK} is empty: name a hook type ({', '.join([*Phase, SKIP])})")
        return tuple(dict.fromkeys(phases)), skip, True
    if HELM_HOOK in a:
        mapped: list[Phase] = []
        for part in _csv(a[HELM_HOOK]):
            if part not in HELM_PHASES:
                raise PhaseError(f"annotation {HELM_HOOK}: {a[HELM_HOOK]!r}: {part!r} is not a Helm hook "
                                 f"({', '.join(HELM_PHASES)})")
            phase = HELM_PHASES[part]
            if phase is not None:
                mapped.append(phase)
        return tuple(dict.fromkeys(mapped)), False, True
    return (), False, False


def _policies(a: Mapping[str, str]) -> frozenset[DeletePolicy]:
    if HOOK_DELETE_POLICY in a:
        out = set()
        for part in _csv(a[HOOK_DELETE_POLICY]):
            if part not in DeletePolicy.__members__.values():
                raise PhaseError(f"annotation {HOOK_DELETE_POLICY}: {part!r} is not a delete policy (one of "
                                 f"{', '.join(DeletePolicy)}, comma separated)")
            out.add(DeletePolicy(part))
        if out:
            return frozenset(out)
    if HELM_HOOK_DELETE_POLICY in a:
        helm = set()
        for part in _csv(a[HELM_HOOK_DELETE_POLICY]):
            if part not in HELM_POLICIES:
                raise PhaseError(f"annotation {HELM_HOOK_DELETE_POLICY}: {part!r} is not a Helm delete policy "
                                 f"({', '.join(HELM_POLICIES)})")
            helm.add(HELM_POLICIES[part])
        if helm:
            return frozenset(helm)
    return frozenset({DeletePolicy.BEFORE_HOOK_CREATION})


def _wave(a: Mapping[str, str]) -> int:
    for key in (SYNC_WAVE, HELM_HOOK_WEIGHT):
        if key in a:
            text = a[key].strip()
            try:
                return int(text)
            except ValueError:
                raise PhaseError(f"annotation {key}: {a[key]!r} is not an integer (a wave such as \"-1\", \"0\" "
                                 "or \"5\", quoted)") from None
    return 0


def _options(a: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _csv(a.get(SYNC_OPTIONS, "")):
        name, sep, value = part.partition("=")
        allowed = SYNC_OPTION_VALUES.get(name.strip())
        if not sep or allowed is None or value.strip() not in allowed:
            supported = ", ".join(f"{k}={v}" for k, values in SYNC_OPTION_VALUES.items() for v in values)
            raise PhaseError(f"annotation {SYNC_OPTIONS}: {part!r} is not a sync option driftguard supports "
                             f"({supported})")
        out[name.strip()] = value.strip()
    return out


def _compare(a: Mapping[str, str]) -> bool:
    parts = _csv(a.get(COMPARE_OPTIONS, ""))
    for part in parts:
        if part not in COMPARE_OPTION_VALUES:
            raise PhaseError(f"annotation {COMPARE_OPTIONS}: {part!r} is not a compare option driftguard supports "
                             f"({', '.join(COMPARE_OPTION_VALUES)})")
    return "IgnoreExtraneous" in parts


# ---------------------------------------------------------------- the plan

A = TypeVar("A")  # what is applied (resources and hooks)
P = TypeVar("P")  # what is pruned


@dataclass(frozen=True, slots=True)
class Step(Generic[A, P]):
    """One wave of one phase: prune these, then apply these resources and run these hooks."""

    phase: Phase
    wave: int
    prune: tuple[P, ...] = ()
    apply: tuple[A, ...] = ()
    hooks: tuple[A, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.phase} wave {self.wave}"


def plan(resources: Iterable[tuple[A, Traits]], hooks: Iterable[tuple[A, Traits]],
         prunes: Iterable[tuple[P, Traits]], *, prune_last: bool = False) -> list[Step[A, P]]:
    """The steps of one sync, in order (empty steps left out)."""
    cells: dict[tuple[Phase, int], tuple[list[P], list[A], list[A]]] = {}

    def cell(phase: Phase, wave: int) -> tuple[list[P], list[A], list[A]]:
        return cells.setdefault((phase, wave), ([], [], []))

    for item, t in resources:
        if t.applied:
            cell(Phase.SYNC, t.wave)[1].append(item)
    for item, t in hooks:
        for phase in t.phases:
            if phase in SYNC_ORDER:
                cell(phase, t.wave)[2].append(item)
    pruned = list(prunes)
    ordinary = [(p, t) for p, t in pruned if not (prune_last or t.prune_last)]
    waves = sorted({t.wave for _, t in ordinary})
    mirror = dict(zip(waves, reversed(waves), strict=True))
    for gone, t in ordinary:
        cell(Phase.SYNC, mirror[t.wave])[0].append(gone)
    last = [p for p, t in pruned if prune_last or t.prune_last]
    if last:
        final = max((w for phase, w in cells if phase is Phase.SYNC), default=0) + 1
        cell(Phase.SYNC, final)[0].extend(last)
    ordered = sorted(cells, key=lambda k: (SYNC_ORDER.index(k[0]), k[1]))
    return [Step(phase, wave, tuple(cells[(phase, wave)][0]), tuple(cells[(phase, wave)][1]),
                 tuple(cells[(phase, wave)][2])) for phase, wave in ordered]


def hooks_of(hooks: Iterable[tuple[A, Traits]], phase: Phase) -> list[list[A]]:
    """The hooks that run in ``phase`` (SyncFail, PostDelete), grouped by wave, waves ascending."""
    waves: dict[int, list[A]] = {}
    for item, t in hooks:
        if phase in t.phases:
            waves.setdefault(t.wave, []).append(item)
    return [waves[w] for w in sorted(waves)]


def phased(steps: Sequence[Step[A, P]]) -> bool:
    """Whether the plan needs more than one plain pass: several steps, or any hook."""
    return len(steps) > 1 or any(s.hooks for s in steps)
