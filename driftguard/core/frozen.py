"""Read-only JSON trees, for decoded values shared between requests (``contract.StampCache``).

``FrozenDict`` and ``FrozenList`` are ``dict`` and ``list`` (every reader, comparison and encoder treats
them as such) whose every changing method raises TypeError: a caller that would change a shared tree
fails loudly — in the webhook, a denial that names the failure — instead of changing the answer for
the next request. ``copy.copy`` gives a plain (shallow) dict or list, ``copy.deepcopy`` and ``thaw`` a
plain deep copy.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"this {type(self).__name__} is shared between requests and must not change: "
                    "copy it first (copy.deepcopy or driftguard.core.frozen.thaw)")


class FrozenDict(dict[str, Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (thaw(self),)


class FrozenList(list[Any]):
    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = clear = extend = insert = pop = remove = _refuse
    reverse = sort = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return list, (thaw(self),)


def freeze(value: Any) -> Any:
    """``value`` (a decoded JSON value) with every dict and list in it made read-only."""
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, changeable deep copy of a (possibly frozen) JSON value."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value
