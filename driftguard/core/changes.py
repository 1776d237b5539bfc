"""The reconciler's vocabulary: every apply or delete yields a Change; a cycle yields a ChangeSet.

Logs, Events, metrics, status and tests all speak ChangeSets rather than API calls.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from driftguard.core.objects import ObjectRef


class Action(enum.StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Change:
    ref: ObjectRef
    action: Action
    message: str = ""

    def __str__(self) -> str:
        return f"{self.ref} {self.action}" + (f": {self.message}" if self.message else "")


@dataclass(slots=True)
class ChangeSet:
    changes: list[Change] = field(default_factory=list)

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def counts(self) -> Counter[Action]:
        return Counter(c.action for c in self.changes)

    def failed(self) -> list[Change]:
        return [c for c in self.changes if c.action is Action.FAILED]

    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.action in (Action.CREATED, Action.CONFIGURED, Action.DELETED)]

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{counts[a]} {a}" for a in Action if counts[a]) or "nothing to do"
