"""The inventory: the set of objects an Application applied, for safe pruning.

Pruning deletes ``stale = previous - current``, and only entries from the
Application's own inventory — never anything found by label (labels can be forged).
Entries whose deletion failed stay in the inventory for the next cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from driftguard.core.objects import ObjectRef


@dataclass(frozen=True, slots=True, order=True)
class Entry:
    ref: ObjectRef
    api_version: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.ref.key(), "v": self.api_version}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Entry:
        return cls(ObjectRef.from_key(data["id"]), data["v"])


@dataclass(frozen=True, slots=True)
class Inventory:
    entries: frozenset[Entry] = frozenset()

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Inventory:
        return cls(frozenset(entries))

    def refs(self) -> frozenset[ObjectRef]:
        return frozenset(e.ref for e in self.entries)

    def stale(self, current: Inventory) -> list[Entry]:
        """Entries here whose object ``current`` no longer declares (any API version)."""
        keep = current.refs()
        return sorted(e for e in self.entries if e.ref not in keep)

    def merge(self, failed: Iterable[Entry]) -> Inventory:
        """This inventory plus entries that must be retried (e.g. failed deletes)."""
        return Inventory(self.entries | frozenset(failed))

    def to_list(self) -> list[dict[str, str]]:
        return [e.to_dict() for e in sorted(self.entries)]

    @classmethod
    def from_list(cls, data: Iterable[Mapping[str, str]] | None) -> Inventory:
        return cls(frozenset(Entry.from_dict(d) for d in data or ()))

    def __len__(self) -> int:
        return len(self.entries)
