"""What to do with one object: compare git's desired object with the live one, decide, explain.

Pure: the same decision serves the periodic sync and the watch-driven self-heal. A live object is
*unchanged* when its stamp equals the desired stamp and ``fields.diff`` finds no declared field off
git's value — no API call needed. Otherwise the verdict says why:

* ``UPDATE`` — git's declaration changed since the object was applied (the stamp differs);
* ``DRIFTED`` — the stamp is current but someone changed a declared field or driftguard's label;
* ``BREAK_GLASS`` — the webhook granted an emergency change at this very commit, and it has not
  expired: leave the object alone, and say so;
* ``FOREIGN`` — another Application's stamp: never take an object over silently;
* ``UNADOPTED`` — an object driftguard did not create, whose owner has not opted in with
  ``driftguard.io/adopt: "<app namespace>/<app name>"`` on it: never applied over, so never in the
  inventory, so never pruned. (Someone who may declare an object in git is not thereby its owner:
  another team's Secret created with kubectl stays theirs.) The opt-in is removed when the object is
  adopted. A stamp naming this Application counts as the opt-in too (an object it created whose managed
  label was removed): only someone who may write the object could have put either there.

Which of the live object's ``driftguard.io/`` metadata to believe is decided once, by ``trust``. The
webhook only sees objects that carry the managed label, so marks (break-glass grant, drift mark) are
trustworthy only on an object that is managed *by this Application*. On any other object the reconciler
is adopting, every ``driftguard.io/`` key was written by someone who never passed the webhook: no grant
or drift mark is honoured, the commit stamp is not reused, and every key the reconciler does not write
itself is listed in ``Plan.untrusted`` for removal.

The stamped commit is the revision at which the object's *declared content* last changed: when the
live stamp already names the same declaration (declared tree, path, repo, Application, enforcement)
its commit, author and time are kept, so a commit that does not touch an object does not rewrite it.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from driftguard.core import fields, guards, ignore
from driftguard.core.clock import format_time
from driftguard.core.contract import (
    ANN_ADOPT,
    ANN_APPLICATION,
    ANN_AUTHOR,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_COMMIT,
    ANN_COMMITTED_AT,
    ANN_DECLARED,
    ANN_DRIFT,
    ANN_ENFORCEMENT,
    ANN_IGNORE,
    ANN_PATH,
    ANN_REPO,
    LABEL_MANAGED,
    PREFIX,
    STAMP_ANNOTATIONS,
    BreakGlass,
    DriftMark,
    annotations_of,
    is_managed,
    labels_of,
    own_metadata,
)
from driftguard.core.marks import Marks
from reconciler.desired import Desired

log = logging.getLogger(__name__)

COMMIT_KEYS: Final = (ANN_COMMIT, ANN_AUTHOR, ANN_COMMITTED_AT)
DECLARATION_KEYS: Final = (ANN_APPLICATION, ANN_REPO, ANN_PATH, ANN_ENFORCEMENT, ANN_DECLARED)
MARK_KEYS: Final = (ANN_BREAK_GLASS, ANN_BREAK_GLASS_GRANTED, ANN_DRIFT)
VOLATILE_METADATA: Final = ("managedFields", "resourceVersion", "generation", "creationTimestamp")


class Verdict(enum.StrEnum):
    CREATE = "create"
    UNCHANGED = "unchanged"
    UPDATE = "update"
    DRIFTED = "drifted"
    BREAK_GLASS = "break-glass"
    FOREIGN = "foreign"
    UNADOPTED = "unadopted"
    TERMINATING = "terminating"
    INVALID = "invalid"


class Ownership(enum.StrEnum):
    MINE = "mine"  # managed label and a stamp naming this Application: its marks came through the webhook
    UNMANAGED = "unmanaged"  # to be adopted: nothing driftguard.io/ on it passed the webhook
    FOREIGN = "foreign"  # stamped as another Application's


@dataclass(frozen=True, slots=True)
class Trust:
    """What of a live object's ``driftguard.io/`` metadata the reconciler may believe."""

    ownership: Ownership
    drift_mark: DriftMark | None = None  # the webhook's drift mark (only on an object that is MINE)
    grant: BreakGlass | None = None  # a readable break-glass grant (only on an object that is MINE)
    holds_until: dt.datetime | None = None  # set iff the grant is honoured: at the stamped commit, not expired
    untrusted: tuple[str, ...] = ()  # own_metadata keys ("annotation:…"/"label:…") to remove when adopting

    @property
    def honoured(self) -> bool:
        return self.holds_until is not None


def ownership(live: Mapping[str, Any], application: str) -> Ownership:
    """Whose the live object is, as far as driftguard's stamp says (``application``: "<ns>/<name>")."""
    owner = annotations_of(live).get(ANN_APPLICATION, "")
    if owner and owner != application:
        return Ownership.FOREIGN
    if is_managed(live) and owner == application:
        return Ownership.MINE
    return Ownership.UNMANAGED


def trust(live: Mapping[str, Any], obj: Mapping[str, Any], *, now: dt.datetime, marks: Marks) -> Trust:
    """Which ``driftguard.io/`` marks on ``live`` to believe, before applying ``obj`` (stamped) over it.

    Only an object managed by ``obj``'s Application can carry marks written through the webhook; on any
    other object they are forgeries until proven otherwise (the webhook never saw them): no grant or
    drift mark, and every ``driftguard.io/`` key ``obj`` does not set is untrusted. Even on an object that
    is MINE, a mark is believed only when its MAC verifies under ``marks.key`` for this object's uid
    (``driftguard.core.marks``): a grant or mark written around the webhook is ignored and removed. A grant
    is honoured while it names ``obj``'s stamped commit and neither its expiry nor grant time + TTL passed.
    """
    want = annotations_of(obj)
    owner = ownership(live, want[ANN_APPLICATION])
    if owner is Ownership.FOREIGN:
        return Trust(owner)
    if owner is Ownership.UNMANAGED:
        writes = own_metadata(obj).keys()
        return Trust(owner, untrusted=tuple(sorted(k for k in own_metadata(live) if k not in writes)))
    check = marks.grant(live, commit=want[ANN_COMMIT], now=now)
    return Trust(owner, marks.drift_mark(live), check.grant, check.expires_at if check.holds else None)


@dataclass(frozen=True, slots=True)
class Plan:
    verdict: Verdict
    obj: dict[str, Any]  # the object to apply (desired, commit stamp reused where it should be)
    drifts: tuple[fields.FieldDrift, ...] = ()
    clear: tuple[str, ...] = ()  # driftguard marks to remove from the live object once applied
    untrusted: tuple[str, ...] = ()  # keys found on an object being adopted: removed *before* applying
    drift_mark: DriftMark | None = None
    break_glass: BreakGlass | None = None
    expires_at: dt.datetime | None = None
    message: str = ""
    extras: tuple[fields.FieldDrift, ...] = ()  # pod-template elements git does not list: removed as drift

    @property
    def drift_fields(self) -> list[str]:
        return [d.path_text for d in self.drifts]


def plan(desired: Desired, live: Mapping[str, Any] | None, *, now: dt.datetime, marks: Marks) -> Plan:
    """The verdict for one object (``live`` None: it does not exist)."""
    if desired.error:
        return Plan(Verdict.INVALID, desired.obj, message=desired.error)
    if live is None:
        return Plan(Verdict.CREATE, desired.obj)
    if (live.get("metadata") or {}).get("deletionTimestamp"):
        return Plan(Verdict.TERMINATING, desired.obj, message="being deleted; will be re-created when gone")
    have = annotations_of(live)
    owner = ownership(live, annotations_of(desired.obj)[ANN_APPLICATION])
    if owner is Ownership.FOREIGN:
        return Plan(Verdict.FOREIGN, desired.obj,
                    message=f"already managed by Application {have[ANN_APPLICATION]}; not taking it over")
    adopting = owner is Ownership.UNMANAGED  # its commit stamp and marks are not ours: neither reused nor kept
    application = annotations_of(desired.obj)[ANN_APPLICATION]
    if adopting and application not in (have.get(ANN_ADOPT), have.get(ANN_APPLICATION)):
        return Plan(Verdict.UNADOPTED, desired.obj,
                    message=unadopted_message(desired, application, have.get(ANN_ADOPT)))
    obj = desired.obj if adopting else reuse_commit(desired.obj, live)
    if desired.respect_ignore and desired.ignore:
        obj = respect_ignored(desired, obj, live)
    want = annotations_of(obj)
    masked = ignore.mask(desired.ignore, desired.declared, live)  # ignored fields: neither drift nor extras
    extras = () if adopting else tuple(g.drift for g in guards.undeclared(desired.ref.kind, masked.declared,
                                                                          masked.obj))
    drifts = (*drift_of(desired, live), *extras)
    t = trust(live, obj, now=now, marks=marks)
    mark, grant = t.drift_mark, t.grant
    if grant and t.holds_until:
        message = (f"break-glass by {grant.user} until {format_time(t.holds_until)}: {grant.reason}"
                   " (left alone until then or until git changes it)")
        return Plan(Verdict.BREAK_GLASS, obj, drifts, (), (), mark, grant, t.holds_until, message)
    clear = () if adopting else tuple(k for k in MARK_KEYS if k in have)
    if any(have.get(k) != want.get(k) for k in (*STAMP_ANNOTATIONS, ANN_IGNORE)):
        return Plan(Verdict.UPDATE, obj, drifts, clear, t.untrusted, mark, grant, extras=extras)
    if drifts:
        return Plan(Verdict.DRIFTED, obj, drifts, clear, t.untrusted, mark, grant, extras=extras)
    return Plan(Verdict.UNCHANGED, obj, (), clear, t.untrusted, mark, grant)


def unadopted_message(desired: Desired, application: str, opt_in: str | None) -> str:
    ref = desired.ref
    where = f" -n {ref.namespace}" if ref.namespace else ""
    named = f" ({ANN_ADOPT} names {opt_in!r}, not this Application)" if opt_in is not None else ""
    return (f"exists and driftguard did not create it{named}: not taken over, not pruned. If Application "
            f"{application} should own it, its owner opts in: kubectl annotate {ref.kind.lower()} {ref.name}{where} "
            f"{ANN_ADOPT}={application}")


def drift_of(desired: Desired, live: Mapping[str, Any]) -> list[fields.FieldDrift]:
    """Declared fields off git's value (those ``spec.ignoreDifferences`` names left out), plus a missing managed
    label (driftguard's own field)."""
    drifts, problems = ignore.diff(desired.ignore, desired.declared, live)
    for problem in problems:  # not ignored, so compared and reverted: the safe reading, said in the log
        log.warning("%s: spec.ignoreDifferences: %s; compared as if not ignored", desired.ref, problem)
    label = labels_of(live).get(LABEL_MANAGED, fields.MISSING)
    if label != "true":
        drifts.append(fields.FieldDrift(("metadata", "labels", LABEL_MANAGED), "true", label))
    return drifts


def respect_ignored(desired: Desired, obj: dict[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """RespectIgnoreDifferences: ``obj`` with the live value wherever ``desired.ignore`` points, driftguard's own
    labels and annotations kept as ``obj`` has them (an ignore rule never reaches the stamp)."""
    out = ignore.restore_live(desired.ignore, obj, live)
    metadata = dict(out.get("metadata") or {})
    for where in ("labels", "annotations"):
        theirs = {k: v for k, v in (metadata.get(where) or {}).items() if not k.startswith(PREFIX)}
        mine = {k: v for k, v in ((obj.get("metadata") or {}).get(where) or {}).items() if k.startswith(PREFIX)}
        metadata[where] = {**theirs, **mine}
    return {**out, "metadata": metadata}


def reuse_commit(desired_obj: dict[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """``desired_obj`` carrying the live commit stamp when the declaration itself is unchanged."""
    want, have = annotations_of(desired_obj), annotations_of(live)
    if any(have.get(k) != want.get(k) for k in DECLARATION_KEYS):
        return desired_obj
    if not all(have.get(k) for k in COMMIT_KEYS) or all(have[k] == want.get(k) for k in COMMIT_KEYS):
        return desired_obj
    metadata = dict(desired_obj["metadata"])
    metadata["annotations"] = {**want, **{k: have[k] for k in COMMIT_KEYS}}
    return {**desired_obj, "metadata": metadata}


def same_object(after: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether a dry-run result equals the live object, ignoring bookkeeping the server rewrites."""
    return _comparable(after) == _comparable(live)


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in VOLATILE_METADATA}
    return {**obj, "metadata": metadata}


def clear_operations(
    live: Mapping[str, Any], keys: Iterable[str], *, resource_version: str = ""
) -> list[dict[str, Any]]:
    """A JSON patch removing ``keys`` from the live object, each guarded by its current value.

    A key is an annotation key, or ``annotation:<key>`` / ``label:<key>`` as in ``contract.own_metadata``.
    With ``resource_version`` the patch applies only to that version of the object.
    """
    ops: list[dict[str, Any]] = []
    if resource_version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})
    for key in keys:
        where, name = _metadata_key(key)
        have = cast(Mapping[str, str], (live.get("metadata") or {}).get(where) or {})
        if name in have:
            pointer = f"/metadata/{where}/" + name.replace("~", "~0").replace("/", "~1")
            ops += [{"op": "test", "path": pointer, "value": have[name]}, {"op": "remove", "path": pointer}]
    return ops


def describe_keys(keys: Iterable[str]) -> str:
    """``annotation:a, label:b`` → ``a, label b`` (for messages)."""
    return ", ".join(name if where == "annotations" else f"label {name}"
                     for where, name in map(_metadata_key, keys))


def _metadata_key(key: str) -> tuple[str, str]:
    if key.startswith("label:"):
        return "labels", key.removeprefix("label:")
    return "annotations", key.removeprefix("annotation:")

