"""What a denied or warned user reads, in kubectl, verbatim.

Every message names the object, every offending field with git's value and the requested one, where
git declares it (file, short commit, author) and the repository to change instead. Values come from
``FieldDrift.to_dict`` so Secret data is ``<redacted>`` and long values are digests. An admission
warning holds at most 256 characters (the most the API server promises to pass on): the fix and the
repository come first, and a longer text is ``split`` into several warnings rather than cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from driftguard.core.contract import Source, Stamp
from driftguard.core.fields import MISSING, FieldDrift, render_value
from driftguard.core.guards import Guarded
from driftguard.core.objects import ObjectRef

WARNING_LIMIT: Final = 256


def where(source: Source) -> str:
    return f"at {source.path}, commit {source.short_commit} by {source.author}"


def field_denial(ref: ObjectRef, stamp: Stamp, changes: Sequence[FieldDrift]) -> str:
    """``spec.replicas of Deployment p/x is declared in git (3) at …; this request sets 9. Change it in git: …``"""
    source = stamp.source
    if len(changes) == 1:
        change = changes[0]
        shown = change.to_dict(sensitive=stamp.sensitive)
        return (
            f"{shown['field']} of {ref} is declared in git ({shown['declared']}) {where(source)}; "
            f"{_request_does(change, shown['requested'])}. Change it in git: {source.repo}"
        )
    listed = "; ".join(_field_pair(c, stamp) for c in changes)
    return (
        f"{ref} is declared in git {where(source)}; this request changes {len(changes)} declared fields: "
        f"{listed}. Change them in git: {source.repo}"
    )


def field_warnings(ref: ObjectRef, stamp: Stamp, changes: Sequence[FieldDrift]) -> list[str]:
    """The fix and the repository first (kubectl prints warnings in order), then each field; none is cut."""
    texts = [
        f"driftguard warn mode: change it in git: {stamp.source.repo} (declared {where(stamp.source)}); "
        "admitted and recorded as drift, the reconciler restores git's value"
    ]
    for change in changes:
        shown = change.to_dict(sensitive=stamp.sensitive)
        texts.append(
            f"{shown['field']} of {ref} is declared in git ({shown['declared']}); "
            f"{_request_does(change, shown['requested'])}"
        )
    return [part for text in texts for part in split(text)]


def autoscaler_warnings(hpa: ObjectRef, target: ObjectRef, stamp: Stamp, replicas: str) -> list[str]:
    """Creating an HPA whose target's replicas git declares: what will happen, then the two fixes."""
    source = stamp.source
    group = target.group or '""'
    does = "will be denied" if stamp.enforcement == "deny" else "will be reverted by the reconciler (warn mode)"
    texts = [
        f"driftguard: every scale {hpa} makes {does}: git declares spec.replicas ({replicas}) of {target} "
        f"{where(source)}",
        f"Fix 1: remove spec.replicas from {target.kind} {target.name} in git: {source.repo} ({source.path})",
        f"Fix 2: add to Application {stamp.application} spec.ignoreDifferences: [{{group: {group}, "
        f"kind: {target.kind}, name: {target.name}, jsonPointers: [/spec/replicas]}}]",
    ]
    return [part for text in texts for part in split(text)]


def ignore_problem(ref: ObjectRef, problem: str) -> str:
    return (f"{ref}: spec.ignoreDifferences: {problem}; those fields are enforced as declared until the "
            "Application's rule is fixed")


def delete_denial(ref: ObjectRef, stamp: Stamp, how: str = "deleting it here") -> str:
    return (
        f"{ref} is managed by driftguard (Application {stamp.application}) and declared in git "
        f"{where(stamp.source)}; {how} is denied. Remove it from git: {stamp.source.repo}"
    )


def delete_warning(ref: ObjectRef, stamp: Stamp) -> str:
    return _cut(
        f"driftguard warn mode: {ref} is declared in git {where(stamp.source)}; deletion recorded, "
        f"the reconciler recreates it. Remove it from git: {stamp.source.repo}"
    )


def dropped_keys_note() -> str:
    return ("(the driftguard.io/ labels and annotations the request leaves out, as kubectl replace of a manifest "
            "does, are restored by driftguard when every declared field is git's)")


def tampering(ref: ObjectRef, keys: Sequence[str], stamp: Stamp) -> str:
    return (
        f"{ref}: driftguard.io/ labels and annotations are written only by driftguard; this request "
        f"changes {_keys(keys)}. Change the object in git: {stamp.source.repo}"
    )


def forged(ref: ObjectRef, keys: Sequence[str]) -> str:
    return (
        f"{ref}: forged ownership: only driftguard's reconciler may put driftguard.io/ labels or "
        f"annotations on an object; this request sets {_keys(keys)}"
    )


def break_glass_refused(user: str, groups: Sequence[str]) -> str:
    if not groups:
        return "break-glass is disabled on this cluster (no break-glass group configured)"
    return f"break-glass requires membership in group {' or '.join(groups)}; {user} is not a member"


def break_glass_unkeyed(ref: ObjectRef) -> str:
    return (f"{ref}: break-glass is unavailable: this webhook has no mark key to seal the grant with, so the "
            "reconciler could not trust it. Fix: create the Secret driftguard-system/driftguard-mark-key "
            "(`driftguard certs install` does) and mount it as --mark-key-file in the webhook and the reconciler")


def break_glass_granted(ref: ObjectRef, user: str, reason: str, expires_at: str) -> str:
    return _cut(
        f"driftguard break-glass: {ref} changed by {user} ({reason}); recorded; the reconciler leaves it "
        f"alone until git changes it or {expires_at}"
    )


def application_denial(ref: ObjectRef, user: str, groups: Sequence[str], risky: Sequence[str]) -> str:
    admins = f"group {' or '.join(groups)}" if groups else "an admin group (none configured: --admin-groups)"
    does = "; ".join(risky) if risky else "changes it"
    ask = f"Ask a member of {' or '.join(groups)}" if groups else "Configure --admin-groups"
    return (
        f"{ref} is driftguard's own: it changes through git (an app-of-apps Application), the reconciler, or a "
        f"member of {admins}; {user} is not a member. This request {does}. {ask}, or change it in the git "
        f"repository of its app-of-apps"
    )


def application_admin_change(ref: ObjectRef, user: str, risky: Sequence[str]) -> str:
    return f"{ref}: {user} (admin) {'; '.join(risky)}; admitted and recorded"


def application_unwatched(ref: ObjectRef, watched: Sequence[str]) -> str:
    return (f"{ref}: no driftguard reconciler watches its namespace, so nothing will sync it; create it in "
            f"{', '.join(watched) or 'a watched namespace'}, or add the namespace to --application-namespaces "
            "(the reconciler's and the webhook's)")


def application_status(ref: ObjectRef, user: str) -> str:
    return f"status of {ref} is written by driftguard's reconciler only; {user} may not write it"


def holder_delete(ref: ObjectRef, applications: Sequence[str]) -> str:
    held = f" (Application {', '.join(applications)})" if applications else ""
    return (
        f"{ref} holds objects driftguard manages{held}; deleting it would delete them without their own DELETE "
        f"ever being judged, so it is denied. Remove those objects from git first: the reconciler then lifts "
        f"the driftguard.io/holds-managed mark"
    )


def holder_mark(ref: ObjectRef) -> str:
    return (
        f"{ref}: the driftguard.io/holds-managed mark is set and removed only by driftguard's reconciler; "
        f"this request changes it. It goes when git no longer puts managed objects here"
    )


def unreadable_stamp(ref: ObjectRef, error: Exception) -> str:
    return (
        f"{ref} is labelled driftguard.io/managed=true but its driftguard stamp is unreadable ({error}); "
        f"refusing changes until the reconciler re-applies it"
    )


def unreadable_parent(ref: ObjectRef, error: str, request: str = "scale") -> str:
    checks = "whether git declares its replicas" if request == "scale" else "whether driftguard manages it"
    return (
        f"{ref}: cannot read it to check {checks} ({error}); "
        f"the {request} request is refused (fail closed), retry in a moment"
    )


def guarded_denial(ref: ObjectRef, stamp: Stamp, guarded: Sequence[Guarded]) -> str:
    listed = "; ".join(f"{g.field} ({g.why}; {_guarded_does(g)})" for g in guarded)
    return (
        f"{ref} is managed by driftguard and git declares none of these, which driftguard guards anyway: "
        f"{listed}. Change them in git: {stamp.source.repo}"
    )


def guarded_warnings(ref: ObjectRef, guarded: Sequence[Guarded]) -> list[str]:
    return [_cut(f"{g.field} of {ref} is not declared in git and driftguard guards it ({g.why}); {_guarded_does(g)}")
            for g in guarded]


def _guarded_does(guarded: Guarded) -> str:
    if guarded.added:
        return "this request adds it"
    if guarded.drift.actual is MISSING:
        return "this request removes it"
    return f"this request sets {render_value(guarded.drift.actual)}"


def _field_pair(change: FieldDrift, stamp: Stamp) -> str:
    shown = change.to_dict(sensitive=stamp.sensitive)
    return f"{shown['field']} (git: {shown['declared']}, requested: {shown['requested']})"


def _request_does(change: FieldDrift, requested: str) -> str:
    return "this request removes it" if change.actual is MISSING else f"this request sets {requested}"


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(key.replace(":", " ", 1) for key in keys)


def split(text: str, limit: int = WARNING_LIMIT) -> list[str]:
    """``text`` as warnings of at most ``limit`` characters, broken between words (a continued part ends, and
    the next begins, with "…"); a word longer than a warning is broken where it must be."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        room = limit - 1  # for the "…" that ends this part
        cut_at = rest.rfind(" ", 1 if not parts else 2, room + 1)
        if cut_at <= 0:
            cut_at = room
        parts.append(rest[:cut_at].rstrip() + "…")
        rest = "…" + rest[cut_at:].lstrip()
    parts.append(rest)
    return parts


def cut(text: str) -> str:
    """``text`` within the admission warning limit."""
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= WARNING_LIMIT else text[: WARNING_LIMIT - 3] + "..."
