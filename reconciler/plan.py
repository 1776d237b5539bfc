"""What to do with one object: compare git's desired object with the live one, decide, explain.

Pure: the same decision serves the periodic sync and the watch-driven self-heal. A live object is
*unchanged* when its stamp equals the desired stamp and ``fields.diff`` finds no declared field off
git's value — no API call needed. Otherwise the verdict says why:

* ``UPDATE`` — git's declaration changed since the object was applied (the stamp differs);
* ``DRIFTED`` — the stamp is current but someone changed a declared field or driftguard's label;
* ``BREAK_GLASS`` — the webhook granted an emergency change at this very commit, and it has not
  expired: leave the object alone, and say so;
* ``FOREIGN`` — another Application's stamp: never take an object over silently.

The stamped commit is the revision at which the object's *declared content* last changed: when the
live stamp already names the same declaration (declared tree, path, repo, Application, enforcement)
its commit, author and time are kept, so a commit that does not touch an object does not rewrite it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core import fields
from driftguard.core.contract import (
    ANN_APPLICATION,
    ANN_AUTHOR,
    ANN_BREAK_GLASS,
    ANN_BREAK_GLASS_GRANTED,
    ANN_COMMIT,
    ANN_COMMITTED_AT,
    ANN_DECLARED,
    ANN_DRIFT,
    ANN_ENFORCEMENT,
    ANN_PATH,
    ANN_REPO,
    FIELD_MANAGER,
    LABEL_MANAGED,
    STAMP_ANNOTATIONS,
    BreakGlass,
    DriftMark,
    annotations_of,
    labels_of,
)
from reconciler.desired import Desired

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
    TERMINATING = "terminating"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Plan:
    verdict: Verdict
    obj: dict[str, Any]  # the object to apply (desired, commit stamp reused where it should be)
    drifts: tuple[fields.FieldDrift, ...] = ()
    clear: tuple[str, ...] = ()  # driftguard marks to remove from the live object once applied
    drift_mark: DriftMark | None = None
    break_glass: BreakGlass | None = None
    expires_at: dt.datetime | None = None
    message: str = ""

    @property
    def drift_fields(self) -> list[str]:
        return [d.path_text for d in self.drifts]


def plan(desired: Desired, live: Mapping[str, Any] | None, *, now: dt.datetime) -> Plan:
    """The verdict for one object (``live`` None: it does not exist)."""
    if desired.error:
        return Plan(Verdict.INVALID, desired.obj, message=desired.error)
    if live is None:
        return Plan(Verdict.CREATE, desired.obj)
    if (live.get("metadata") or {}).get("deletionTimestamp"):
        return Plan(Verdict.TERMINATING, desired.obj, message="being deleted; will be re-created when gone")
    have = annotations_of(live)
    owner = have.get(ANN_APPLICATION, "")
    mine = annotations_of(desired.obj)[ANN_APPLICATION]
    if owner and owner != mine:
        return Plan(Verdict.FOREIGN, desired.obj, message=f"already managed by Application {owner}; not taking it over")
    obj = reuse_commit(desired.obj, live)
    want = annotations_of(obj)
    drifts = drift_of(desired, live)
    mark = DriftMark.decode(have[ANN_DRIFT]) if ANN_DRIFT in have else None
    clear = tuple(k for k in MARK_KEYS if k in have)
    grant = BreakGlass.decode(have.get(ANN_BREAK_GLASS_GRANTED, ""))
    expires = parse_time(grant.expires_at) if grant else None
    if grant and expires and grant.commit == want[ANN_COMMIT] and expires > now:
        message = (f"break-glass by {grant.user} until {grant.expires_at}: {grant.reason}"
                   " (left alone until then or until git changes it)")
        return Plan(Verdict.BREAK_GLASS, obj, tuple(drifts), (), mark, grant, expires, message)
    if any(have.get(k) != want[k] for k in STAMP_ANNOTATIONS):
        return Plan(Verdict.UPDATE, obj, tuple(drifts), clear, mark, grant)
    if drifts:
        return Plan(Verdict.DRIFTED, obj, tuple(drifts), clear, mark, grant)
    return Plan(Verdict.UNCHANGED, obj, (), clear, mark, grant)


def drift_of(desired: Desired, live: Mapping[str, Any]) -> list[fields.FieldDrift]:
    """Declared fields off git's value, plus a missing managed label (driftguard's own field)."""
    drifts = fields.diff(desired.declared, live)
    label = labels_of(live).get(LABEL_MANAGED, fields.MISSING)
    if label != "true":
        drifts.append(fields.FieldDrift(("metadata", "labels", LABEL_MANAGED), "true", label))
    return drifts


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


def clear_operations(live: Mapping[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """A JSON patch removing ``keys`` from the live object's annotations, guarded by their values."""
    have = annotations_of(live)
    ops: list[dict[str, Any]] = []
    for key in keys:
        if key in have:
            pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
            ops += [{"op": "test", "path": pointer, "value": have[key]}, {"op": "remove", "path": pointer}]
    return ops


def last_writer(live: Mapping[str, Any] | None) -> str:
    """The field manager that most recently wrote the object, other than driftguard (``""``: unknown)."""
    entries = [
        e for e in ((live or {}).get("metadata") or {}).get("managedFields") or []
        if not (e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply")
    ]
    if not entries:
        return ""
    latest = max(entries, key=lambda e: str(e.get("time") or ""))
    sub = latest.get("subresource")
    return str(latest.get("manager") or "") + (f" ({sub})" if sub else "")


def parse_time(text: str) -> dt.datetime | None:
    """An RFC 3339 time (``Z`` or offset), as an aware datetime; None when unreadable."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
