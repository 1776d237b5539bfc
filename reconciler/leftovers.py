"""Git removes, the cluster follows: the fields git stopped declaring that an apply leaves behind.

Server-side apply removes a field the applier stops declaring only when nobody else owns it. A user who
server-side-applies git's own value (admitted: nothing changes) co-owns the field, and when git later
removes it the reconciler's apply releases only its own ownership: the field stays, and status said
Synced (issue 10). So after an apply that changes the declared tree, the fields that left it — the old
stamp's declared tree minus the new one — and are still in the object *at git's old value* are
removed with a JSON patch (each removal preceded by a ``test`` of that value, so a concurrent change is
never clobbered). A field someone set to another value is theirs, not git's leftover, and stays.

A field is matched the way the comparison matches it (``driftguard.core.fields``): keyed lists by key,
so a container git no longer lists goes as a whole element; atomic lists and scalars git still declares
are the apply's business, not this module's.

Pure: trees and objects in, JSON patch operations out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from driftguard.core import fields
from driftguard.core.fields import KEY_DEFAULTS, MISSING, ListKey, Path

Operation = dict[str, Any]


def gone(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[Path, object]]:
    """What ``old`` declares and ``new`` no longer does, with the old values: leaves, and whole elements of
    keyed lists; never a whole map (the leaves of a map that left are listed one by one)."""
    return list(_gone(old, new, ()))


def _gone(old: object, new: object, path: Path) -> Iterator[tuple[Path, object]]:
    if not isinstance(old, dict) or not old or fields.DIGEST_KEY in old:
        if new is MISSING:
            yield path, old  # a leaf git no longer declares
        return  # a leaf or atomic value still declared: the apply sets git's new value
    if new is MISSING:
        new = {}  # a map git no longer declares: its leaves, never the map (it may be metadata)
    if not isinstance(new, dict):
        return
    for key, value in old.items():
        keys = fields.list_keys_for(key, value)
        theirs = new.get(key, MISSING)
        if keys is None:
            yield from _gone(value, theirs, (*path, key))
            continue
        theirs = theirs if isinstance(theirs, list) else []
        for element in value:
            selector = _selector(element, keys)
            match = [e for e in theirs if selector.matches(e)]
            if len(match) == 1:
                yield from _gone(element, match[0], (*path, key, selector))
            else:
                yield (*path, key, selector), element  # an element git no longer lists goes whole


def removals(
    old: Mapping[str, Any], new: Mapping[str, Any], obj: Mapping[str, Any]
) -> tuple[list[Operation], list[str]]:
    """JSON patch operations removing from ``obj`` what left git (``old`` → ``new`` declared trees) and
    still holds git's old value; and those fields, rendered."""
    found: list[tuple[list[str | int], object, str]] = []
    for path, value in gone(old, new):
        live = fields.lookup(obj, path)
        if live is MISSING or not fields.leaf_equal(path, _leaf(value), live):
            continue
        pointer = _pointer(obj, path)
        if pointer is not None:
            found.append((pointer, live, fields.render_path(path)))
    return _operations(found)


def element_removals(obj: Mapping[str, Any], paths: Iterable[Path]) -> tuple[list[Operation], list[str]]:
    """JSON patch operations removing what is at ``paths`` (what git does not list under a pod template:
    ``driftguard.core.guards.undeclared``) from ``obj``, each after a ``test`` of the value as it is, higher
    list indices first; and those paths, rendered. Paths no longer there are skipped."""
    found: list[tuple[list[str | int], object, str]] = []
    for path in paths:
        pointer = _pointer(obj, path)
        if pointer is not None:
            found.append((pointer, fields.lookup(obj, path), fields.render_path(path)))
    return _operations(found)


def _operations(found: list[tuple[list[str | int], object, str]]) -> tuple[list[Operation], list[str]]:
    # Within one list, remove higher indices first so the lower ones stay valid.
    found.sort(key=lambda item: [(0, -t) if isinstance(t, int) else (1, t) for t in item[0]])
    operations: list[Operation] = []
    for pointer, live, _ in found:
        text = "/" + "/".join(_escape(t) for t in pointer)
        operations += [{"op": "test", "path": text, "value": live}, {"op": "remove", "path": text}]
    return operations, [rendered for _, _, rendered in found]


def _selector(element: object, keys: tuple[str, ...]) -> ListKey:
    assert isinstance(element, Mapping)
    return ListKey(tuple((k, element.get(k, KEY_DEFAULTS.get(k))) for k in keys))


def _leaf(value: object) -> object:
    if isinstance(value, dict) and len(value) == 1 and fields.DIGEST_KEY in value:
        return fields.Digest(str(value[fields.DIGEST_KEY]))
    return value


def _pointer(obj: object, path: Path) -> list[str | int] | None:
    """The JSON pointer tokens of ``path`` in ``obj`` (list keys resolved to indices); None if ambiguous."""
    tokens: list[str | int] = []
    current = obj
    for segment in path:
        if isinstance(segment, ListKey):
            if not isinstance(current, list):
                return None
            indices = [i for i, e in enumerate(current) if segment.matches(e)]
            if len(indices) != 1:
                return None
            tokens.append(indices[0])
            current = current[indices[0]]
        else:
            if not isinstance(current, Mapping) or segment not in current:
                return None
            tokens.append(segment)
            current = current[segment]
    return tokens


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")
