"""Who wrote a drifted field: the field managers that own it now, from the live object's ``managedFields``.

The last writer of the *object* is not the author of a drift: a controller that touched another field a
moment later (``managedFields`` times are second-granular) would be blamed. So a drift is attributed to
the managers whose ``fieldsV1`` own one of the drifted fields (``f:<name>`` for a field, ``k:<json>`` for a
keyed-list element) — and to nobody when none does. driftguard's own apply is never a writer of drift.
Pure: reads the object it is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from driftguard.core.contract import FIELD_MANAGER
from driftguard.core.fields import ListKey, Path


def field_owners(live: Mapping[str, Any] | None, paths: Iterable[Path]) -> str:
    """The managers (``name`` or ``name (subresource)``) owning any of ``paths`` in ``live``, newest first,
    comma-separated; ``""`` when no manager but driftguard's apply owns them (unknown)."""
    wanted = list(paths)
    owners: list[tuple[str, str]] = []
    for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping) or (entry.get("manager"), entry.get("operation")) == (FIELD_MANAGER, "Apply"):
            continue
        tree = entry.get("fieldsV1")
        if isinstance(tree, Mapping) and any(_owns(tree, path) for path in wanted):
            sub = entry.get("subresource")
            name = str(entry.get("manager") or "") + (f" ({sub})" if sub else "")
            if name and name not in (n for _, n in owners):
                owners.append((str(entry.get("time") or ""), name))
    return ", ".join(name for _, name in sorted(owners, key=lambda o: o[0], reverse=True))


def _owns(tree: Mapping[str, Any], path: Path) -> bool:
    node: Any = tree
    for segment in path:
        if not isinstance(node, Mapping):
            return False
        if isinstance(segment, ListKey):
            node = next((v for k, v in node.items() if k.startswith("k:") and _key_matches(k[2:], segment)), None)
        else:
            node = node.get(f"f:{segment}")
        if node is None:
            return False
    return True


def _key_matches(text: str, segment: ListKey) -> bool:
    try:
        key = json.loads(text)
    except ValueError:
        return False
    if not isinstance(key, dict):
        return False
    selector = dict(segment.fields)
    common = key.keys() & selector.keys()
    return bool(common) and all(key[k] == selector[k] for k in common)
