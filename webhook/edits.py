"""One request on one managed object: which declared fields it changes, which own annotations it may set.

``Edit`` computes, once and lazily, what the rules in ``policy`` look at.

Declared fields a request changes: the new object no longer has git's value *and* the old object had
a different value — drift that was already there is not held against an unrelated edit. Most requests
leave most of a large object untouched, and ``fields.diff`` looks every declared leaf up from the
root, so the declared tree is first pruned to the map branches under which old and new differ.
Pruning only removes leaves whose old and new values are identical, which the "had a different value"
test would discard anyway, so the result is exactly the unpruned one. Identity is strict (``1``,
``1.0`` and ``true`` differ): ``jsontext.identical`` — Python ``==`` finds branches that certainly
differ, then the two JSON encodings confirm the rest. Keyed lists, digests and empty maps are never pruned into.

driftguard's own annotations a request may carry (``permitted``): exactly what the mutating webhook
writes when the request qualifies — the drift mark (warn mode, this user, every drifted field) or
the break-glass grant (a member who gave a reason; this user, reason and commit) — or, for a member,
the removal of both to end break-glass. A grant on the old object keeps covering its grantee's scale
and DELETE requests until it expires or git moves on (``standing_grant``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from driftguard.core import contract, fields, guards, ignore, jsontext
from driftguard.core.clock import format_time, time_or_none
from driftguard.core.contract import BreakGlass, DriftMark, Stamp
from driftguard.core.guards import Guarded
from driftguard.core.marks import Marks, uid_of, unseal
from driftguard.core.objects import ObjectRef
from webhook.reviews import Request
from webhook.settings import Settings

CLOCK_SKEW: Final = dt.timedelta(minutes=5)
# Every stamp the webhook reads, decoded once per worker process (the old object's, a scale's parent's).
STAMPS: Final = contract.StampCache()
DRIFT_KEY: Final = "annotation:" + contract.ANN_DRIFT
REASON_KEY: Final = "annotation:" + contract.ANN_BREAK_GLASS
GRANT_KEY: Final = "annotation:" + contract.ANN_BREAK_GLASS_GRANTED


@dataclass(frozen=True)
class Edit:
    """One request on one managed object, with everything the rules look at computed once."""

    request: Request
    ref: ObjectRef
    stamp: Stamp
    old: Mapping[str, Any]
    new: Mapping[str, Any] | None
    now: dt.datetime
    member: bool  # the user is in a break-glass group
    marks: Marks  # the key that seals and verifies grants and drift marks

    @classmethod
    def of(cls, request: Request, settings: Settings, *, ref: ObjectRef, stamp: Stamp, old: Mapping[str, Any],
           new: Mapping[str, Any] | None, now: dt.datetime, marks: Marks) -> Edit:
        groups = request["userInfo"].get("groups", [])
        member = any(group in settings.break_glass_groups for group in groups)
        return cls(request, ref, stamp, old, new, now, member, marks)

    @property
    def user(self) -> str:
        return self.request["userInfo"].get("username", "")

    @cached_property
    def masked(self) -> ignore.Masked:
        """The declared tree, new and old object without what the stamp's ``spec.ignoreDifferences`` names
        (managers' fields as the new object's managedFields say): ignored fields are not enforced."""
        return ignore.mask(self.stamp.ignore, self.stamp.declared, self.new, self.old)

    @property
    def ignore_problems(self) -> tuple[str, ...]:
        return self.masked.problems

    @cached_property
    def changes(self) -> list[fields.FieldDrift]:
        """Declared fields this request moves away from git (unchanged drift is not its doing)."""
        if self.new is None:
            return []
        if not self.stamp.ignore:
            return changed_fields(self.stamp, self.old, self.new)
        declared, (new, old) = self.masked.declared, self.masked.objects
        return changed_fields(dataclasses.replace(self.stamp, declared=declared, ignore=ignore.NOTHING), old, new)

    @cached_property
    def drifted(self) -> tuple[str, ...]:
        """Every declared field not at git's value after this request (what the drift mark lists)."""
        if not self.stamp.ignore:
            return tuple(d.path_text for d in self.stamp.drift(self.new or {}))
        return tuple(d.path_text for d in fields.diff(self.masked.declared, self.masked.obj or {}))

    @cached_property
    def reason(self) -> str:
        return contract.annotations_of(self.new).get(contract.ANN_BREAK_GLASS, "").strip()

    @cached_property
    def own_changes(self) -> list[str]:
        return contract.changed_own_metadata(self.old, self.new)

    @cached_property
    def guarded(self) -> list[Guarded]:
        """What this request changes that git owns without declaring it (``driftguard.core.guards``)."""
        if self.new is None:
            return []
        if not self.stamp.ignore:
            return guards.violations(self.ref.kind, self.stamp.declared, self.old, self.new)
        new, old = self.masked.objects
        return guards.violations(self.ref.kind, self.masked.declared, old, new)

    @cached_property
    def grant_due(self) -> bool:
        """A break-glass member set a reason and this request uses it."""
        if not (self.member and self.reason):  # most requests: nothing below is computed for them
            return False
        return bool(self.changes) or bool(self.guarded) or REASON_KEY in self.own_changes


# ---------------------------------------------------------------- driftguard's own annotations

def permitted(key: str, edit: Edit) -> bool:
    """Whether this edit may change driftguard's own ``key`` (``label:…``/``annotation:…``) as it does."""
    value = contract.annotations_of(edit.new).get(key.removeprefix("annotation:"))
    if edit.grant_due:
        return key == REASON_KEY or (key == GRANT_KEY and _valid_grant(value, edit))
    if edit.member and not edit.reason and key in (REASON_KEY, GRANT_KEY):
        return value is None  # a member ends break-glass by removing the reason (and the grant)
    if key == DRIFT_KEY and edit.stamp.enforcement == "warn" and edit.changes:
        return _valid_mark(value, edit)
    return False


def _valid_grant(value: str | None, edit: Edit) -> bool:
    """The grant the mutating webhook sealed for this very request (this user, reason, commit, now)."""
    grant = BreakGlass.decode(value) if value is not None and _sealed(value, edit) else None
    if grant is None or grant.user != edit.user or grant.reason != edit.reason:
        return False
    if grant.commit != edit.stamp.source.commit:
        return False
    return _recent(grant.at, edit.now) and time_or_none(grant.expires_at) is not None


def _valid_mark(value: str | None, edit: Edit) -> bool:
    mark = DriftMark.decode(value) if value is not None and _sealed(value, edit) else None
    return mark is not None and mark.user == edit.user and mark.fields == edit.drifted and _recent(mark.at, edit.now)


def _sealed(value: str, edit: Edit) -> bool:
    return edit.marks.key is not None and unseal(edit.marks.key, uid_of(edit.old), value) is not None


def standing_grant(edit: Edit) -> BreakGlass | None:
    """A still-valid, sealed grant to this member on the old object (scale and DELETE carry no annotations),
    with its expiry capped at grant time + TTL."""
    if not edit.member:
        return None
    check = edit.marks.grant(edit.old, commit=edit.stamp.source.commit, now=edit.now)
    if not check.holds or check.grant is None or check.grant.user != edit.user or check.expires_at is None:
        return None
    return dataclasses.replace(check.grant, expires_at=format_time(check.expires_at))


def new_grant(edit: Edit, settings: Settings) -> BreakGlass:
    expires = edit.now + dt.timedelta(seconds=settings.break_glass_ttl)
    return BreakGlass(edit.user, format_time(edit.now), edit.reason, edit.stamp.source.commit, format_time(expires))


# ---------------------------------------------------------------- declared fields this request changes



def changed_fields(stamp: Stamp, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[fields.FieldDrift]:
    pruned = prune(stamp.declared, old, new)
    if not pruned:
        return []
    return [d for d in fields.diff(pruned, new) if not same(fields.lookup(old, d.path), d.actual)]


def prune(declared: Mapping[str, Any], old: object, new: object) -> dict[str, Any]:
    """The part of a declared (sub)tree under which ``old`` and ``new`` are not identical."""
    out: dict[str, Any] = {}
    for key, branch in declared.items():
        before = old.get(key, fields.MISSING) if isinstance(old, (dict, Mapping)) else fields.MISSING
        after = new.get(key, fields.MISSING) if isinstance(new, (dict, Mapping)) else fields.MISSING
        if same(before, after):
            continue
        if _descendable(branch) and isinstance(before, (dict, Mapping)) and isinstance(after, (dict, Mapping)):
            kept = prune(branch, before, after)
            if kept:
                out[key] = kept
        else:
            out[key] = branch
    return out


def same(before: object, after: object) -> bool:
    """Strict identity of two JSON values (MISSING only equals MISSING)."""
    if before is fields.MISSING or after is fields.MISSING:
        return before is after
    return jsontext.identical(before, after)


def _descendable(branch: object) -> bool:
    return isinstance(branch, dict) and bool(branch) and fields.DIGEST_KEY not in branch


def _recent(text: str, now: dt.datetime) -> bool:
    moment = time_or_none(text)
    return moment is not None and abs(moment - now) <= CLOCK_SKEW
