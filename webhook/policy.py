"""The admission decision: an AdmissionReview request and settings in, a ``Verdict`` out. No I/O.

Rules, in the order they apply:

1. The reconciler (a token bound to one of its Pods) passes everything, allow-listed controllers
   their DELETEs (``identity.trusted``); ``CONNECT`` and subresources other than ``scale``,
   ``pods/eviction``, ``pods/ephemeralcontainers`` and ``pods/resize`` are not intercepted. A
   request that only *names* a trusted identity is judged like anyone's, and its denial or record
   says why the name was not enough (``identity.posing``).
2. Trust only the *old* object's stamp. A CREATE, or an edit of an unmanaged object, that carries any
   ``driftguard.io/`` key is forged ownership. A managed object whose stamp is unreadable is frozen.
3. Enforcement ``off`` admits everything and records nothing.
4. Changing driftguard's own labels/annotations is tampering, denied in every mode — except exactly
   the annotations the mutating webhook writes when the request qualifies for them: the drift mark
   (warn mode) and the break-glass grant (a break-glass group member who set a reason).
5. A request that changes a declared field away from git's value is denied (``deny``) or admitted
   with warnings (``warn``); a break-glass member's is admitted and recorded as break-glass. Fields
   the request does not change are never held against it, even when the object has already drifted.
6. DELETE of a managed object is a change of every declared field, unless deletion already began.
7. A Namespace or CRD marked ``driftguard.io/holds-managed`` by the reconciler may not be deleted
   (that would delete managed objects around their own DELETE), and only the reconciler sets or
   removes the mark. ``pods/eviction`` of a managed Pod is its DELETE; ``pods/ephemeralcontainers``
   and ``pods/resize`` are UPDATEs of it. Beyond declared fields, ``guards`` judges what git owns
   undeclared: owner references, finalizers, and the strict pod profile.
8. Applications are driftguard's own objects: one from git (an app-of-apps) is a managed object like
   any other; any other changes only by the reconciler or a member of ``--admin-groups``, whose risky
   changes (``applications.risky_changes``) are admitted and recorded (``audit``); its status is the
   reconciler's. Creating one, or changing its project, repoURL or destination, must also satisfy its
   Project (``applications.project_denial``; the HTTP layer reads the Project and passes it in).

``validate`` decides; ``mutate`` only computes the annotation patch, so both see the same rules.
A scale request is judged as an UPDATE of its parent's ``spec.replicas``; the HTTP layer reads the
parent (``needs_parent``) and passes it in as ``Parent``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from driftguard.core import contract, fields, suggestion
from driftguard.core.clock import format_time
from driftguard.core.contract import ContractError, DriftMark, Stamp
from driftguard.core.marks import Marks
from driftguard.core.objects import ObjectRef
from webhook import applications, autoscalers, identity, messages
from webhook.edits import REASON_KEY, STAMPS, Edit, new_grant, permitted, standing_grant
from webhook.records import AuditRecord, Decision
from webhook.reviews import KubeObject, PatchOp, Request, object_problem
from webhook.settings import Settings

Outcome = Literal["allow", "deny", "warn", "break-glass"]


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    message: str = ""
    warnings: tuple[str, ...] = ()
    patch: tuple[PatchOp, ...] = ()
    record: AuditRecord | None = field(default=None, repr=False)
    hint: str = ""  # the ``driftguard suggest`` line the message (or the warnings) end with; "" for none

    @property
    def allowed(self) -> bool:
        return self.outcome != "deny"


ALLOW: Final = Verdict("allow")
UNKEYED: Final = Marks.unkeyed()
HOLDER_KINDS: Final = frozenset({("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")})
# Subresources whose request carries the whole Pod (old and new): judged as an UPDATE of it.
POD_SUBRESOURCES: Final = frozenset({"", "ephemeralcontainers", "resize"})


@dataclass(frozen=True, slots=True)
class Parent:
    """The object behind a scale request: ``obj`` None when it does not exist, ``error`` when unread."""

    obj: KubeObject | None
    error: str = ""


PARENT_READS: Final = {"scale": "UPDATE", "eviction": "CREATE"}  # subresource: the operation that reads the parent


# ---------------------------------------------------------------- entry points

def needs_parent(request: Request, settings: Settings) -> bool:
    """Whether ``validate`` needs the parent object read (scale and eviction requests from untrusted users), or
    an HPA's target (``autoscalers.needs_target``; ``kubeio.parent_path`` knows which)."""
    if autoscalers.is_autoscaler(request):
        needed = autoscalers.needs_target(request)
    else:
        needed = PARENT_READS.get(request.get("subResource", "")) == request["operation"]
    return needed and not identity.trusted(request, settings)  # most requests: no identity check here


def validate(request: Request, settings: Settings, now: dt.datetime, parent: Parent | None = None, *,
             marks: Marks = UNKEYED, project: applications.ProjectRead | None = None) -> Verdict:
    """The decision on one request. ``marks`` holds the key that verifies break-glass grants and drift marks
    (unkeyed: none is believed, and break-glass is refused with a message saying why); ``project`` is the
    Project an Application names, read when ``applications.needs_project`` (None then: a denial)."""
    if identity.trusted(request, settings, marks.key, now) or request["operation"] == "CONNECT":
        return ALLOW
    verdict = _validate(request, settings, now, parent, marks)
    if verdict.allowed and parent is not None and autoscalers.needs_target(request):
        extra = autoscalers.warnings(request, parent.obj, parent.error)
        if extra:
            verdict = dataclasses.replace(verdict, warnings=(*verdict.warnings, *extra))
    if verdict.allowed and applications.needs_project(request):
        new = request.get("object") or {}
        denial = applications.project_denial(new, project, project_namespace=settings.project_namespace)
        if denial:
            verdict = _deny(request, _ref(request, new), request.get("oldObject") or {}, None, denial, now)
    if verdict.record is not None and (posing := identity.posing(request, settings, marks.key, now)):
        note, before = f"driftguard identity: {posing}", verdict.record
        if verdict.allowed:
            record = dataclasses.replace(before, reason=f"{before.reason} ({note})")
            verdict = dataclasses.replace(verdict, warnings=(*verdict.warnings, messages.cut(note)), record=record)
        else:
            message = f"{verdict.message} ({note})"
            verdict = dataclasses.replace(verdict, message=message, record=dataclasses.replace(before, reason=message))
    return _hinted(verdict)


def _hinted(verdict: Verdict) -> Verdict:
    """``verdict`` ending with its ``driftguard suggest`` line: the denial's last line, or the last warning."""
    if not verdict.hint or verdict.record is None:
        return verdict
    if verdict.allowed:
        record = dataclasses.replace(verdict.record, reason=f"{verdict.record.reason} {verdict.hint}")
        return dataclasses.replace(verdict, warnings=(*verdict.warnings, verdict.hint), record=record)
    message = f"{verdict.message}\n{verdict.hint}"
    return dataclasses.replace(verdict, message=message, record=dataclasses.replace(verdict.record, reason=message))


def _validate(request: Request, settings: Settings, now: dt.datetime, parent: Parent | None,
              marks: Marks) -> Verdict:
    if applications.is_application(request):
        verdict = _validate_application(request, settings, now)
        if verdict is not None:
            return verdict
    if (request["kind"]["group"], request["kind"]["kind"]) in HOLDER_KINDS and not request.get("subResource"):
        held = _validate_holder(request, now)
        if held is not None:
            return held
    subresource = request.get("subResource", "")
    if subresource == "scale":
        return _validate_scale(request, settings, now, parent, marks)
    if subresource == "eviction":
        return _validate_eviction(request, settings, now, parent, marks)
    if subresource not in POD_SUBRESOURCES:
        return ALLOW
    if request["operation"] == "CREATE":
        return _validate_unmanaged(request, None, request.get("object"), now)
    old = request.get("oldObject") or {}
    try:
        stamp = STAMPS.read(old)
    except ContractError as e:
        ref = _ref(request, old)
        return _deny(request, ref, old, None, messages.unreadable_stamp(ref, e), now)
    if stamp is None:
        return _validate_unmanaged(request, old, request.get("object"), now)
    if stamp.enforcement == "off":
        return ALLOW
    edit = Edit.of(request, settings, ref=_ref(request, old), stamp=stamp, old=old, new=request.get("object"), now=now,
                   marks=marks)
    if request["operation"] == "DELETE":
        return _validate_delete(edit)
    return _noted(_validate_update(edit, settings), edit)


def mutate(request: Request, settings: Settings, now: dt.datetime, *, marks: Marks = UNKEYED) -> Verdict:
    """The annotations the validating webhook will accept: the break-glass grant or the drift mark, each
    sealed with ``marks``' key for this object (without a key, none is written)."""
    if (identity.trusted(request, settings, marks.key, now) or request["operation"] != "UPDATE"
            or request.get("subResource")):
        return ALLOW
    old, new = request.get("oldObject") or {}, request.get("object")
    try:
        stamp = STAMPS.read(old)
    except ContractError:
        return ALLOW  # validate denies it
    if stamp is None or stamp.enforcement == "off" or new is None:
        return ALLOW
    edit = Edit.of(request, settings, ref=_ref(request, old), stamp=stamp, old=old, new=new, now=now, marks=marks)
    restore = _restore_dropped(edit)
    if restore:
        return Verdict("allow", patch=restore)
    if edit.grant_due:
        key, text = contract.ANN_BREAK_GLASS_GRANTED, new_grant(edit, settings).encode()
    elif stamp.enforcement == "warn" and edit.changes:
        key, text = contract.ANN_DRIFT, DriftMark(edit.user, format_time(now), edit.drifted).encode()
    else:
        return ALLOW
    sealed = marks.seal(old, text)
    return ALLOW if sealed is None else Verdict("allow", patch=(_annotate(new, key, sealed),))


def dropped_all(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """The new object carries none of driftguard's keys while the old one did: what a write of a manifest from
    git (``kubectl replace -f``) sends. A write that removes some of them (``kubectl label … driftguard.io/
    managed-``) meant to, and is judged as tampering. (Admission cannot tell a PUT from a PATCH: the API
    server hands both to webhooks as an UPDATE with UpdateOptions.)"""
    return not contract.has_own_metadata(new) and contract.has_own_metadata(old)


def dropped_keys(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """driftguard's labels/annotations on ``old`` that ``new`` leaves out (``label:…``/``annotation:…``)."""
    after = contract.own_metadata(new)
    return sorted(k for k in contract.own_metadata(old) if k not in after)


def _restore_dropped(edit: Edit) -> tuple[PatchOp, ...]:
    """``kubectl replace -f`` of git's own manifest (a write that leaves every driftguard key out): the ops
    putting back, from the old object, every driftguard key it dropped — when
    every declared field is git's and nothing git guards changes. Otherwise none."""
    if edit.new is None or not dropped_all(edit.old, edit.new):
        return ()
    dropped = dropped_keys(edit.old, edit.new)
    if not dropped or set(edit.own_changes) != set(dropped) or edit.drifted or edit.guarded:
        return ()
    before = contract.own_metadata(edit.old)
    ops: list[PatchOp] = []
    for where in ("labels", "annotations"):
        restored = {k.split(":", 1)[1]: before[k] for k in dropped if k.startswith(where[:-1] + ":")}
        if not restored:
            continue
        present = (edit.new.get("metadata") or {}).get(where)
        if not isinstance(present, Mapping):
            ops.append({"op": "add", "path": f"/metadata/{where}", "value": restored})
            continue
        ops += [{"op": "add", "path": f"/metadata/{where}/" + _pointer_token(key), "value": value}
                for key, value in restored.items()]
    if not isinstance(edit.new.get("metadata"), Mapping):
        return ()
    return tuple(ops)


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# ---------------------------------------------------------------- rules

def _validate_unmanaged(
    request: Request, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, now: dt.datetime
) -> Verdict:
    """CREATE, or UPDATE/DELETE of an object the reconciler never stamped."""
    added = contract.own_metadata(new)
    keys = [key for key in contract.changed_own_metadata(old, new) if key in added]
    if not keys:
        return ALLOW
    ref = _ref(request, new or old or {})
    return _deny(request, ref, old or {}, None, messages.forged(ref, keys), now, key_changes(old, new, keys))


def _validate_application(request: Request, settings: Settings, now: dt.datetime) -> Verdict | None:
    """driftguard's own objects (``applications``); None: an Application from git, judged as any managed object."""
    old, new = request.get("oldObject"), request.get("object")
    operation, subresource = request["operation"], request.get("subResource", "")
    user = _user(request)
    admin = any(group in settings.admin_groups for group in request["userInfo"].get("groups", []))
    ref = _ref(request, new or old or {})
    if subresource == "status":
        return ALLOW if admin else _deny(request, ref, old or {}, None, messages.application_status(ref, user), now)
    if subresource or contract.is_managed(old):
        return None
    forged = _validate_unmanaged(request, old, new, now)
    if not forged.allowed:
        return forged
    if operation == "UPDATE" and not applications.changed(old, new):
        return ALLOW
    risky = applications.risky_changes(old if operation != "CREATE" else None, new if operation != "DELETE" else None)
    if not admin:
        return _deny(request, ref, old or {}, None, messages.application_denial(ref, user, settings.admin_groups,
                                                                                  risky), now)
    unwatched = () if operation != "CREATE" or watched(ref.namespace, settings.application_namespaces) else (
        messages.cut(messages.application_unwatched(ref, settings.application_namespaces)),)
    if not risky:
        return Verdict("allow", warnings=unwatched) if unwatched else ALLOW
    text = messages.application_admin_change(ref, user, risky)
    record = _record(request, ref, old or new or {}, None, "audit", text, (), now)
    return Verdict("allow", warnings=(messages.cut(text), *unwatched), record=record)


def watched(namespace: str, patterns: Sequence[str]) -> bool:
    """Whether a reconciler watching ``patterns`` (its --namespace and --application-namespaces) sees
    Applications in ``namespace``."""
    return any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def _validate_delete(edit: Edit, how: str = "deleting it here") -> Verdict:
    if (edit.old.get("metadata") or {}).get("deletionTimestamp"):
        return ALLOW
    standing = standing_grant(edit)
    if standing is not None:
        return _break_glass(edit, [], standing.reason, standing.expires_at)
    if edit.stamp.enforcement == "warn":
        return _admit(edit, "warn", [], (messages.delete_warning(edit.ref, edit.stamp),))
    return _deny(edit.request, edit.ref, edit.old, edit.stamp, messages.delete_denial(edit.ref, edit.stamp, how),
                 edit.now)


def _validate_update(edit: Edit, settings: Settings) -> Verdict:
    changes, guarded = edit.changes, edit.guarded
    drifts = [*changes, *(g.drift for g in guarded)]
    tampered = [key for key in edit.own_changes if not permitted(key, edit)]
    if tampered and drifts and dropped_all(edit.old, edit.new):
        # a replace (or apply) of a manifest without driftguard's keys that also changes declared fields: the
        # user is told about their fields, not about keys they never wrote (they come back with git's values)
        text = f"{_drift_denial(edit)}. {messages.dropped_keys_note()}"
        return _suggesting(_deny(edit.request, edit.ref, edit.old, edit.stamp, text, edit.now, drifts), edit)
    if tampered:
        text = messages.tampering(edit.ref, tampered, edit.stamp)
        if REASON_KEY in tampered and not edit.member:
            text += ". " + messages.break_glass_refused(edit.user, settings.break_glass_groups)
        if drifts:
            text += ". Also: " + _drift_denial(edit)
        return _deny(edit.request, edit.ref, edit.old, edit.stamp, text, edit.now,
                     [*drifts, *key_changes(edit.old, edit.new, tampered)])
    if edit.grant_due:
        if edit.marks.key is None:
            return _deny(edit.request, edit.ref, edit.old, edit.stamp, messages.break_glass_unkeyed(edit.ref),
                         edit.now, drifts)
        expires = format_time(edit.now + dt.timedelta(seconds=settings.break_glass_ttl))
        return _break_glass(edit, drifts, edit.reason, expires)
    if not drifts:
        return ALLOW
    if edit.stamp.enforcement == "warn":
        warnings = [*(messages.field_warnings(edit.ref, edit.stamp, changes) if changes else []),
                    *messages.guarded_warnings(edit.ref, guarded)]
        return _suggesting(_admit(edit, "warn", drifts, warnings), edit)
    return _suggesting(_deny(edit.request, edit.ref, edit.old, edit.stamp, _drift_denial(edit), edit.now, drifts), edit)


def _suggesting(verdict: Verdict, edit: Edit) -> Verdict:
    """``verdict`` with the ``driftguard suggest`` line for its declared fields, when git's change is only theirs
    (nothing guarded changed) and suggest can make it (``suggestion.command``)."""
    if edit.guarded:
        return verdict
    return dataclasses.replace(verdict, hint=suggestion.command(edit.ref, edit.stamp, edit.changes) or "")


def _drift_denial(edit: Edit) -> str:
    """Declared fields this request moves away from git, then what it changes that git owns undeclared."""
    texts = []
    if edit.changes:
        texts.append(messages.field_denial(edit.ref, edit.stamp, edit.changes))
    if edit.guarded:
        texts.append(messages.guarded_denial(edit.ref, edit.stamp, edit.guarded))
    return ". Also: ".join(texts)


def _validate_holder(request: Request, now: dt.datetime) -> Verdict | None:
    """A Namespace or CRD marked as holding managed objects; None when the mark is not involved."""
    old, new = request.get("oldObject"), request.get("object")
    kind = request["kind"]
    ref = ObjectRef(kind["group"], kind["kind"], "", request.get("name", "") or ObjectRef.of(old or new or {}).name)
    if request["operation"] == "DELETE":
        if not contract.holds_managed(old) or ((old or {}).get("metadata") or {}).get("deletionTimestamp"):
            return None
        return _deny(request, ref, old or {}, None, messages.holder_delete(ref, contract.holders_of(old)), now)
    marks = (contract.LABEL_HOLDS_MANAGED, contract.ANN_HOLDS_MANAGED)
    before = {k: v for k, v in contract.own_metadata(old).items() if k.split(":", 1)[1] in marks}
    after = {k: v for k, v in contract.own_metadata(new).items() if k.split(":", 1)[1] in marks}
    if before == after:
        return None
    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return _deny(request, ref, old or {}, None, messages.holder_mark(ref), now, key_changes(old, new, keys))


def _validate_eviction(request: Request, settings: Settings, now: dt.datetime, parent: Parent | None,
                       marks: Marks) -> Verdict:
    """``pods/eviction`` deletes the Pod: judged as a DELETE of it (the Pod is read, as a scale's parent)."""
    judged = _managed_parent(request, parent, now, "eviction")
    if isinstance(judged, Verdict):
        return judged
    obj, stamp = judged
    edit = Edit.of(request, settings, ref=_ref(request, obj), stamp=stamp, old=obj, new=None, now=now, marks=marks)
    return _validate_delete(edit, how="evicting it (pods/eviction deletes it)")


def _managed_parent(request: Request, parent: Parent | None, now: dt.datetime,
                    subresource: str) -> Verdict | tuple[KubeObject, Stamp]:
    """The object behind a ``scale`` or ``eviction`` request and its stamp, when there is something to judge;
    otherwise the verdict: ALLOW (gone, not managed, enforcement off) or a denial (unreadable: fail closed)."""
    ref = _parent_ref(request)
    if parent is None or parent.error:
        error = parent.error if parent is not None else "parent object was not read"
        return _deny(request, ref, {}, None, messages.unreadable_parent(ref, error, subresource), now)
    if parent.obj is None:
        return ALLOW
    malformed = object_problem(parent.obj)
    if malformed:
        return _deny(request, ref, {}, None, messages.unreadable_parent(ref, f"the object {malformed}", subresource),
                     now)
    try:
        stamp = STAMPS.read(parent.obj)
    except ContractError as e:
        ref = _ref(request, parent.obj)
        return _deny(request, ref, parent.obj, None, messages.unreadable_stamp(ref, e), now)
    if stamp is None or stamp.enforcement == "off":
        return ALLOW
    return parent.obj, stamp


def _validate_scale(request: Request, settings: Settings, now: dt.datetime, parent: Parent | None,
                    marks: Marks) -> Verdict:
    if request["operation"] != "UPDATE":
        return ALLOW
    judged = _managed_parent(request, parent, now, "scale")
    if isinstance(judged, Verdict):
        return judged
    obj, stamp = judged
    scaled = copy.deepcopy(obj)
    if not isinstance(scaled.get("spec"), dict):
        scaled["spec"] = {}
    if stamp.ignore.managed_fields_managers and isinstance(scaled.get("metadata"), dict):
        # After this request its manager owns spec.replicas. The Scale a validating webhook sees carries no
        # managedFields, so the manager is known only when the request names it (``?fieldManager=``); when it
        # does not (the HPA controller does not), no manager's ownership is assumed: replicas is enforced.
        manager = str((request.get("options") or {}).get("fieldManager") or "")
        scaled["metadata"]["managedFields"] = [{
            "manager": manager, "operation": "Update", "subresource": "scale", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}] if manager else []
    spec = (request.get("object") or {}).get("spec")
    replicas = spec.get("replicas", fields.MISSING) if isinstance(spec, Mapping) else fields.MISSING
    if replicas is fields.MISSING:
        scaled["spec"].pop("replicas", None)
    else:
        scaled["spec"]["replicas"] = replicas
    edit = Edit.of(request, settings, ref=_ref(request, obj), stamp=stamp, old=obj, new=scaled, now=now, marks=marks)
    changes = edit.changes
    standing = standing_grant(edit) if changes else None
    if standing is not None:
        return _break_glass(edit, changes, standing.reason, standing.expires_at)
    if not changes:
        return _noted(ALLOW, edit)
    if stamp.enforcement == "warn":
        return _suggesting(_noted(_admit(edit, "warn", changes, messages.field_warnings(edit.ref, stamp, changes)),
                                  edit), edit)
    denial = _deny(request, edit.ref, obj, stamp, messages.field_denial(edit.ref, stamp, changes), now, changes)
    return _suggesting(_noted(denial, edit), edit)


def _noted(verdict: Verdict, edit: Edit) -> Verdict:
    """``verdict`` saying which ignoreDifferences expressions could not be evaluated (so were not ignored)."""
    if not edit.stamp.ignore or not edit.ignore_problems:
        return verdict
    notes = [messages.ignore_problem(edit.ref, p) for p in edit.ignore_problems]
    if verdict.allowed:
        split = [part for note in notes for part in messages.split(note)]
        return dataclasses.replace(verdict, warnings=(*verdict.warnings, *split))
    message = f"{verdict.message}. Also: " + "; ".join(notes)
    record = dataclasses.replace(verdict.record, reason=message) if verdict.record else None
    return dataclasses.replace(verdict, message=message, record=record)


# ---------------------------------------------------------------- verdicts

def _deny(  # noqa: PLR0917 - every argument is a different fact of the record
    request: Request,
    ref: ObjectRef,
    obj: Mapping[str, Any],
    stamp: Stamp | None,
    message: str,
    now: dt.datetime,
    changes: Sequence[fields.FieldDrift] = (),
) -> Verdict:
    return Verdict("deny", message, record=_record(request, ref, obj, stamp, "deny", message, changes, now))


def _admit(edit: Edit, decision: Decision, changes: Sequence[fields.FieldDrift], warnings: Sequence[str]) -> Verdict:
    reason = " ".join(warnings)
    record = _record(edit.request, edit.ref, edit.old, edit.stamp, decision, reason, changes, edit.now)
    return Verdict("warn" if decision == "warn" else "break-glass", warnings=tuple(warnings), record=record)


def _break_glass(edit: Edit, changes: Sequence[fields.FieldDrift], reason: str, expires_at: str) -> Verdict:
    text = messages.break_glass_granted(edit.ref, edit.user, reason, expires_at)
    return _admit(edit, "break-glass", changes, (text,))


def _record(  # noqa: PLR0917
    request: Request,
    ref: ObjectRef,
    obj: Mapping[str, Any],
    stamp: Stamp | None,
    decision: Decision,
    reason: str,
    changes: Sequence[fields.FieldDrift],
    now: dt.datetime,
) -> AuditRecord:
    user = request["userInfo"]
    metadata = obj.get("metadata") or {}
    source = stamp.source if stamp is not None else None
    return AuditRecord(
        time=format_time(now),
        uid=request["uid"],
        user=user.get("username", ""),
        groups=tuple(user.get("groups", ())),
        operation=request["operation"],
        subresource=request.get("subResource", ""),
        object=str(ref),
        api_version=str(obj.get("apiVersion") or _api_version(request)),
        kind=ref.kind,
        namespace=ref.namespace,
        name=ref.name,
        object_uid=str(metadata.get("uid") or ""),
        application=stamp.application if stamp is not None else "",
        decision=decision,
        reason=reason,
        fields=tuple(c.to_dict(sensitive=stamp.sensitive if stamp else True) for c in changes),
        dry_run=bool(request.get("dryRun", False)),
        repo=source.repo if source else "",
        commit=source.commit if source else "",
        path=source.path if source else "",
        verified_by=source.verified_by if source else "",
    )


# ---------------------------------------------------------------- helpers

def key_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                keys: Sequence[str]) -> list[fields.FieldDrift]:
    """driftguard's own ``keys`` (``label:…``/``annotation:…``) as changes: the old value, the requested one
    (``<absent>`` when removed), so an audit row says what a metadata denial was about."""
    before, after = contract.own_metadata(old), contract.own_metadata(new)
    out = []
    for key in keys:
        where, name = key.split(":", 1)
        path = ("metadata", "labels" if where == "label" else "annotations", name)
        out.append(fields.FieldDrift(path, before.get(key, fields.MISSING), after.get(key, fields.MISSING)))
    return out



def _user(request: Request) -> str:
    return request["userInfo"].get("username", "")


def _ref(request: Request, obj: Mapping[str, Any]) -> ObjectRef:
    kind = request["kind"]
    # The API server sets a Namespace request's namespace to the Namespace itself: it lives in none.
    namespace = "" if (kind["group"], kind["kind"]) == ("", "Namespace") else request.get("namespace", "")
    ref = ObjectRef.of(obj, default_namespace=namespace)
    if not ref.kind or not ref.name:
        return ObjectRef(kind["group"], kind["kind"], namespace, request.get("name", ""))
    return ref


def _parent_ref(request: Request) -> ObjectRef:
    resource = request["resource"]
    return ObjectRef(resource["group"], resource["resource"], request.get("namespace", ""), request.get("name", ""))


def _api_version(request: Request) -> str:
    kind = request["kind"]
    return f"{kind['group']}/{kind['version']}" if kind["group"] else kind["version"]


def _annotate(obj: Mapping[str, Any], key: str, value: str) -> PatchOp:
    annotations = (obj.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, Mapping):
        return {"op": "add", "path": "/metadata/annotations", "value": {key: value}}
    return {"op": "add", "path": "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1"), "value": value}
