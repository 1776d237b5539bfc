"""The audit record: one per deny, warn or break-glass decision, and per admitted change that is always
recorded (``audit``: an admin's risky change to an Application).

A plain value with a stable JSON shape, shared by the policy (which builds it), the sinks (which
write it) and ``driftguard audit`` (which reads it back). It never holds Secret values: the policy
renders fields with the stamp's ``sensitive`` flag before a record exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, cast, get_args

from driftguard.core.clock import parse_time

Decision = Literal["deny", "warn", "break-glass", "audit"]  # audit: admitted, recorded (an admin's risky change)
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)
_TEXT_FIELDS: Final = (
    "time", "uid", "user", "operation", "subresource", "object", "api_version", "kind", "namespace",
    "name", "object_uid", "application", "reason", "repo", "commit", "path", "verified_by",
)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    time: str  # RFC 3339, UTC
    uid: str  # the admission request's uid
    user: str
    groups: tuple[str, ...]
    operation: str
    subresource: str
    object: str  # "Deployment production/my-service"
    api_version: str
    kind: str
    namespace: str
    name: str
    object_uid: str  # "" when the object does not exist yet (CREATE)
    application: str
    decision: Decision
    reason: str  # the message the client saw
    fields: tuple[Mapping[str, str], ...]  # {field, declared, requested}, already redacted
    dry_run: bool
    repo: str = ""
    commit: str = ""
    path: str = ""
    verified_by: str = ""  # the commit's verified signer, from the stamp (spec.verify); "" when none was verified

    @property
    def timestamp(self) -> dt.datetime:
        return parse_time(self.time)

    def attempted(self) -> str:
        """What the request tried, in words, for a table cell (``driftguard audit``'s FIELDS, the web UI):
        each changed field with git's value and the requested one; a DELETE or CREATE, which has no fields
        of its own, is the whole object; a subresource's write (``status``, ``scale``) names the subresource.
        ``-`` only when the record holds nothing more (an UPDATE judged as a whole, such as an Application's)."""
        if self.fields:
            return "; ".join(f"{f.get('field')}: {f.get('declared')} -> {f.get('requested')}" for f in self.fields)
        if self.operation in ("DELETE", "CREATE"):
            return f"whole object ({self.operation.lower()})"
        if self.subresource:
            return f"{self.subresource} subresource ({self.operation.lower()})"
        return "-"

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _ALL_FIELDS}  # not asdict(): it deep-copies, slowly
        data["groups"] = list(self.groups)
        data["fields"] = [dict(f) for f in self.fields]
        if not self.verified_by:  # only for Applications with spec.verify: the shape of every other record is kept
            del data["verified_by"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Read a record back; ValueError when ``data`` is not one."""
        if data.get("decision") not in DECISIONS:
            raise ValueError(f"not an audit record: decision {data.get('decision')!r}")
        texts = {key: str(data.get(key) or "") for key in _TEXT_FIELDS}
        parse_time(texts["time"])
        raw_fields = data.get("fields") or []
        if not isinstance(raw_fields, list) or not all(isinstance(f, Mapping) for f in raw_fields):
            raise ValueError("not an audit record: fields must be a list of objects")
        return cls(
            **texts,
            groups=tuple(str(g) for g in data.get("groups") or ()),
            decision=cast(Decision, data["decision"]),
            fields=tuple({str(k): str(v) for k, v in f.items()} for f in raw_fields),
            dry_run=bool(data.get("dry_run")),
        )


_ALL_FIELDS: Final = tuple(f.name for f in fields(AuditRecord))
