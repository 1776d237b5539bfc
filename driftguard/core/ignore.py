"""``spec.ignoreDifferences``: which declared fields neither the reconciler nor the webhook holds to git. Pure.

Argo CD's shape and meaning: each rule names objects (``group``, ``kind`` — both may be ``*`` globs —
and optionally ``name`` and ``namespace``) and the parts of them to ignore:

* ``jsonPointers`` — RFC 6901 pointers (``/spec/replicas``); a pointer that does not resolve ignores
  nothing;
* ``jqPathExpressions`` — jq expressions whose ``path(...)`` selects what to ignore
  (``.spec.template.spec.initContainers[] | select(.name == "istio-init")``), evaluated by libjq itself
  (the ``jq`` binding), never by an approximation;
* ``managedFieldsManagers`` — every field the live object's ``managedFields`` say one of these managers
  owns (leaves only, as Argo CD's structured-merge normaliser takes them).

As in Argo CD, what is ignored is removed from *both* sides before comparing: pointers and jq expressions
are evaluated on git's side and on the live object separately; managers' fields come from the live
object and are removed from both. Then the ordinary ``fields.diff`` compares what is left, so an ignored
field is never drift: not reverted, not counted, not OutOfSync, and — the webhook compares the same way —
not enforced.

The rules that apply to one object travel with it: the reconciler writes them (``Ignore.encode``) into
the ``driftguard.io/ignore-differences`` annotation next to the declared tree, and the webhook reads them
from the *old* object only — like every ``driftguard.io/`` key, only the reconciler may change it, so no
one widens the ignore set by editing an annotation.

An expression that cannot be evaluated is never read as "ignore nothing" or "ignore everything" silently:
``problems`` names it, and the caller turns it into a condition (reconciler) or a warning (webhook).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from driftguard.core import fields, jsontext
from driftguard.core.fields import ListKey

try:  # the C binding of libjq; without it a jq expression is a problem, never a guess
    import jq as _jq
except ImportError:  # pragma: no cover - the dependency is declared; this names its absence
    _jq = None

RULE_KEYS: Final = ("group", "kind", "name", "namespace", "jsonPointers", "jqPathExpressions",
                    "managedFieldsManagers")


@dataclass(frozen=True, slots=True)
class ValueKey:
    """A path segment selecting the element of a set-like list equal to a value (managedFields ``v:``),
    kept as canonical JSON so the segment is hashable."""

    text: str

    @property
    def value(self) -> object:
        return json.loads(self.text)

    def __str__(self) -> str:
        return f"[={self.text}]"


Segment = str | int | ListKey | ValueKey
RawPath = tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Ignore:
    """What to ignore on one object: the union of every rule that names it."""

    json_pointers: tuple[str, ...] = ()
    jq_path_expressions: tuple[str, ...] = ()
    managed_fields_managers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.json_pointers or self.jq_path_expressions or self.managed_fields_managers)

    def encode(self) -> str:
        """The annotation value: canonical JSON, Argo CD's key names, only non-empty lists."""
        data = {"jsonPointers": list(self.json_pointers), "jqPathExpressions": list(self.jq_path_expressions),
                "managedFieldsManagers": list(self.managed_fields_managers)}
        return fields.canonical_json({k: v for k, v in data.items() if v})

    @classmethod
    def decode(cls, text: str) -> Ignore:
        """The annotation's rules; ValueError naming what is wrong."""
        try:
            data = jsontext.loads(text)
        except ValueError as e:
            raise ValueError(f"not JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        lists = []
        for key in ("jsonPointers", "jqPathExpressions", "managedFieldsManagers"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} is not a list of strings")
            lists.append(tuple(value))
        return cls(*lists)

    def describe(self) -> str:
        parts = [*self.json_pointers, *(f"jq {e}" for e in self.jq_path_expressions),
                 *(f"fields of manager {m}" for m in self.managed_fields_managers)]
        return ", ".join(parts)


NOTHING: Final = Ignore()


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``spec.ignoreDifferences`` entry."""

    group: str
    kind: str
    name: str = ""
    namespace: str = ""
    ignore: Ignore = field(default_factory=Ignore)

    def applies(self, group: str, kind: str, name: str, namespace: str) -> bool:
        return (fnmatch.fnmatchcase(group, self.group or "") and fnmatch.fnmatchcase(kind, self.kind)
                and self.name in ("", name) and self.namespace in ("", namespace))


def parse_rules(wire: object, where: str = "spec.ignoreDifferences") -> tuple[tuple[Rule, ...], tuple[str, ...]]:
    """The rules of ``spec.ignoreDifferences`` and the problems that make some unusable (each named)."""
    if wire is None:
        return (), ()
    if not isinstance(wire, list):
        return (), (f"{where} must be a list of rules",)
    rules: list[Rule] = []
    problems: list[str] = []
    for i, entry in enumerate(wire):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{at} must be an object")
            continue
        unknown = sorted(set(entry) - set(RULE_KEYS))
        if unknown:
            problems.append(f"{at}: unknown field(s) {', '.join(unknown)} (known: {', '.join(RULE_KEYS)})")
        texts = {k: entry.get(k, "") for k in ("group", "kind", "name", "namespace")}
        bad = [k for k, v in texts.items() if not isinstance(v, str)]
        lists = {k: entry.get(k) or [] for k in ("jsonPointers", "jqPathExpressions", "managedFieldsManagers")}
        bad += [k for k, v in lists.items() if not isinstance(v, list) or not all(isinstance(s, str) for s in v)]
        if bad:
            problems.append(f"{at}: {', '.join(bad)} must be {'strings' if len(bad) > 1 else 'a string'} "
                            "(lists of strings for jsonPointers, jqPathExpressions, managedFieldsManagers)")
            continue
        if not texts["kind"]:
            problems.append(f"{at}: kind is required (use \"*\" for every kind)")
            continue
        if not any(lists.values()):
            problems.append(f"{at}: names no jsonPointers, jqPathExpressions or managedFieldsManagers, "
                            "so it ignores nothing")
            continue
        rule_problems = [f"{at}.jsonPointers[{j}]: {p}" for j, ptr in enumerate(lists["jsonPointers"])
                         if (p := pointer_problem(ptr))]
        rule_problems += [f"{at}.jqPathExpressions[{j}]: {p}" for j, expr in enumerate(lists["jqPathExpressions"])
                          if (p := jq_problem(expr))]
        if rule_problems:
            problems += rule_problems
            continue
        rules.append(Rule(texts["group"], texts["kind"], texts["name"], texts["namespace"],
                          Ignore(tuple(lists["jsonPointers"]), tuple(lists["jqPathExpressions"]),
                                 tuple(lists["managedFieldsManagers"]))))
    return tuple(rules), tuple(problems)


def for_object(rules: Iterable[Rule], group: str, kind: str, name: str, namespace: str) -> Ignore:
    """The union of every rule naming this object (in rule order, each entry once)."""
    pointers: dict[str, None] = {}
    expressions: dict[str, None] = {}
    managers: dict[str, None] = {}
    for rule in rules:
        if rule.applies(group, kind, name, namespace):
            pointers.update(dict.fromkeys(rule.ignore.json_pointers))
            expressions.update(dict.fromkeys(rule.ignore.jq_path_expressions))
            managers.update(dict.fromkeys(rule.ignore.managed_fields_managers))
    return Ignore(tuple(pointers), tuple(expressions), tuple(managers))


# ---------------------------------------------------------------- checking expressions

def pointer_problem(pointer: str) -> str:
    """Why ``pointer`` is not an RFC 6901 JSON pointer naming a field ("" when it is)."""
    if not pointer.startswith("/"):
        return f"{pointer!r} is not a JSON pointer (it starts with /, e.g. /spec/replicas)"
    if pointer == "/":
        return "'/' names the empty key, not the whole object; name the field to ignore"
    try:
        split_pointer(pointer)
    except ValueError as e:
        return str(e)
    return ""


def split_pointer(pointer: str) -> tuple[str, ...]:
    tokens = []
    for token in pointer.split("/")[1:]:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise ValueError(f"{pointer!r}: '~' must be followed by 0 or 1 (RFC 6901)")
        tokens.append(token.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def jq_problem(expression: str) -> str:
    """Why ``expression`` cannot be evaluated ("" when libjq compiles it)."""
    try:
        _compiled(expression)
    except ValueError as e:
        return str(e)
    return ""


@functools.lru_cache(maxsize=256)
def _compiled(expression: str) -> Any:
    if _jq is None:
        raise ValueError(f"jq expression {expression!r} cannot be evaluated: the jq package (libjq) is not "
                         "installed; install driftguard's dependencies, or use jsonPointers")
    try:
        _jq.compile(expression)  # alone first, so an error speaks of the user's text, not our wrapper
        return _jq.compile(f"[path({expression})]")
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "syntax error"
        first = re.sub(r"^jq: error: |\s*at <top-level>.*$", "", first)
        raise ValueError(f"jq expression {expression!r} does not compile: {first}") from None


# ---------------------------------------------------------------- what one side ignores

@dataclass(frozen=True, slots=True)
class Found:
    paths: tuple[RawPath, ...]
    problems: tuple[str, ...] = ()


def paths_on(ignore: Ignore, obj: Mapping[str, Any]) -> Found:
    """The concrete paths ``ignore``'s pointers and jq expressions select in ``obj``."""
    out: list[RawPath] = []
    problems: list[str] = []
    for pointer in ignore.json_pointers:
        try:
            found = _resolve_pointer(obj, split_pointer(pointer))
        except ValueError as e:
            problems.append(str(e))
            continue
        if found is not None:
            out.append(found)
    for expression in ignore.jq_path_expressions:
        try:
            selected = _compiled(expression).input_value(obj).first()
        except ValueError as e:
            problems.append(str(e) if "jq expression" in str(e) else
                            f"jq expression {expression!r} failed on this object: {str(e).strip()}")
            continue
        for path in selected or []:
            if isinstance(path, list) and path and all(isinstance(s, str | int) for s in path):
                out.append(tuple(path))
    return Found(tuple(out), tuple(problems))


def _resolve_pointer(obj: object, tokens: Sequence[str]) -> RawPath | None:
    path: list[Segment] = []
    current = obj
    for token in tokens:
        if isinstance(current, Mapping) and token in current:
            path.append(token)
            current = current[token]
        elif isinstance(current, list) and 0 <= _index_token(token) < len(current):
            path.append(int(token))
            current = current[int(token)]
        else:
            return None
    return tuple(path)


def _index_token(part: str) -> int:
    """The array index an RFC 6901 reference token names (-1: none — not digits, or a leading zero)."""
    return int(part) if part.isdigit() and (part == "0" or not part.startswith("0")) else -1


def manager_paths(ignore: Ignore, live: Mapping[str, Any] | None) -> tuple[RawPath, ...]:
    """The leaf fields the named managers own in ``live`` (its ``metadata.managedFields``, FieldsV1)."""
    if not ignore.managed_fields_managers or not live:
        return ()
    wanted = set(ignore.managed_fields_managers)
    out: list[RawPath] = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping) or entry.get("manager") not in wanted:
            continue
        if entry.get("fieldsType", "FieldsV1") != "FieldsV1" or not isinstance(entry.get("fieldsV1"), Mapping):
            continue
        out.extend(_fieldset_leaves(entry["fieldsV1"], ()))
    return tuple(out)


def _fieldset_leaves(node: Mapping[str, Any], prefix: RawPath) -> Iterator[RawPath]:
    children = [(k, v) for k, v in node.items() if k != "."]
    if not children:
        if prefix:
            yield prefix
        return
    for key, value in children:
        segment = _fieldset_segment(key)
        if segment is None:
            continue
        yield from _fieldset_leaves(value if isinstance(value, Mapping) else {}, (*prefix, segment))


def _fieldset_segment(key: str) -> Segment | None:
    kind, _, rest = key.partition(":")
    try:
        if kind == "f":
            return rest
        if kind == "k":
            keys = json.loads(rest)
            return ListKey(tuple(sorted(keys.items()))) if isinstance(keys, dict) else None
        if kind == "v":
            return ValueKey(fields.canonical_json(json.loads(rest)))
        if kind == "i":
            return int(rest)
    except ValueError:
        return None
    return None


# ---------------------------------------------------------------- removing, comparing

def strip(obj: object, paths: Iterable[RawPath]) -> Any:
    """A copy of ``obj`` without the values at ``paths`` (unchanged parts shared, not copied)."""
    trie: dict[Any, Any] = {}
    for path in paths:
        if not path:
            continue
        node = trie
        for segment in path[:-1]:
            child = node.get(segment)
            if child is _GONE:
                break
            if child is None:
                child = node[segment] = {}
            node = child
        else:
            node[path[-1]] = _GONE
    return _strip(obj, trie) if trie else obj


_GONE: Final[dict[Any, Any]] = {}  # the trie marker: this value and everything under it is removed


def _strip(value: object, trie: Mapping[Any, Any]) -> object:
    if isinstance(value, Mapping):
        out = {}
        for key, child in value.items():
            sub = trie.get(key)
            if sub is _GONE:
                continue
            out[key] = _strip(child, sub) if sub else child
        return out
    if isinstance(value, list):
        kept = []
        for index, element in enumerate(value):
            subs = [sub for segment, sub in trie.items() if _picks(segment, index, element)]
            if any(sub is _GONE for sub in subs):
                continue
            kept_element = element
            for sub in subs:
                kept_element = _strip(kept_element, sub)
            kept.append(kept_element)
        return kept
    return value


def _picks(segment: object, index: int, element: object) -> bool:
    if isinstance(segment, bool):
        return False
    if isinstance(segment, int):
        return segment == index
    if isinstance(segment, ListKey):
        return segment.matches(element)
    if isinstance(segment, ValueKey):
        return segment.text == fields.canonical_json(element)
    return False


@dataclass(frozen=True, slots=True)
class Masked:
    """Both sides of one comparison with what ``ignore`` names removed."""

    declared: dict[str, Any]
    objects: tuple[Any, ...]
    problems: tuple[str, ...] = ()

    @property
    def obj(self) -> Any:
        return self.objects[0]


def mask(ignore: Ignore, declared: Mapping[str, Any], *objects: Mapping[str, Any] | None,
         identity: Mapping[str, Any] | None = None) -> Masked:
    """``declared`` (git's side) and each of ``objects`` (live sides) without the ignored fields.

    Pointers and jq expressions are evaluated on each side on its own; git's side is the declared tree
    with the object's identity (``identity``: apiVersion, kind, name, namespace; default the first
    object) put back, so an expression written against the whole object selects there too. The
    managers' fields are those the *first* object's managedFields name, removed from every side.
    """
    if not ignore:
        return Masked(dict(declared), tuple(objects))
    first = next((o for o in objects if o is not None), None)
    owned = manager_paths(ignore, first)
    problems: list[str] = []
    git = paths_on(ignore, _with_identity(declared, identity if identity is not None else first or {}))
    problems += git.problems
    masked_declared = strip(declared, (*git.paths, *owned))
    masked: list[Any] = []
    for obj in objects:
        if obj is None:
            masked.append(None)
            continue
        live = paths_on(ignore, obj)
        problems += [p for p in live.problems if p not in problems]
        masked.append(strip(obj, (*live.paths, *owned)))
    return Masked(masked_declared, tuple(masked), tuple(dict.fromkeys(problems)))


def _with_identity(declared: Mapping[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    identity = {k: metadata[k] for k in ("name", "namespace") if isinstance(metadata, Mapping) and k in metadata}
    out: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    out.update(declared)
    out["metadata"] = {**identity, **(declared.get("metadata") or {})}
    return out


def diff(ignore: Ignore, declared: Mapping[str, Any], obj: Mapping[str, Any]) -> tuple[list[fields.FieldDrift],
                                                                                       tuple[str, ...]]:
    """``fields.diff`` of what is left once ``ignore`` is applied to both sides, and the problems met."""
    if not ignore:
        return fields.diff(declared, obj), ()
    masked = mask(ignore, declared, obj)
    return fields.diff(masked.declared, masked.obj), masked.problems


def ignored_fields(ignore: Ignore, declared: Mapping[str, Any], obj: Mapping[str, Any] | None = None) -> list[str]:
    """The declared fields (``render_path``) that ``ignore`` takes out of the comparison with ``obj``."""
    if not ignore:
        return []
    masked = mask(ignore, declared, obj, identity=obj or {})
    kept = {path for path, _ in fields.leaves(masked.declared)}
    return [fields.render_path(path) for path, _ in fields.leaves(declared) if path not in kept]


def restore_live(ignore: Ignore, desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with the live value in every place ``ignore`` names (RespectIgnoreDifferences): what the
    reconciler applies so that a sync leaves ignored fields as the cluster has them. A field git sets there
    that the live object lacks is dropped from the apply; list elements by key are carried whole."""
    out = json.loads(json.dumps(desired))
    found = paths_on(ignore, live)
    for path in (*found.paths, *manager_paths(ignore, live)):
        keyed = _keyed_path(live, path)
        if keyed is None:
            continue
        value = fields.lookup(live, keyed)
        _put(out, keyed, value)
    for path in paths_on(ignore, desired).paths:
        keyed = _keyed_path(desired, path)
        if keyed is not None and fields.lookup(live, keyed) is fields.MISSING:
            _put(out, keyed, fields.MISSING)
    return cast(dict[str, Any], out)


def _keyed_path(obj: object, path: RawPath) -> fields.Path | None:
    """``path`` with each index into a keyed list (containers, env, ...) replaced by the element's key; None
    when it goes into an atomic list (no stable address to carry a value to)."""
    out: list[str | ListKey] = []
    current = obj
    for segment in path:
        if isinstance(segment, str):
            if not isinstance(current, Mapping) or segment not in current:
                return None
            out.append(segment)
            current = current[segment]
            continue
        if isinstance(segment, ListKey):
            out.append(segment)
            current = fields.lookup(current, (segment,))
            continue
        if not isinstance(segment, int) or not isinstance(current, list) or not out or \
                not isinstance(out[-1], str) or segment >= len(current):
            return None
        keys = fields.list_keys_for(out[-1], current)
        if keys is None:
            return None
        element = current[segment]
        out.append(ListKey(tuple((k, element.get(k, fields.KEY_DEFAULTS.get(k))) for k in keys)))
        current = element
    return tuple(out)


def _put(obj: dict[str, Any], path: fields.Path, value: object) -> None:
    current: Any = obj
    for segment in path[:-1]:
        if isinstance(segment, ListKey):
            found = [e for e in current if segment.matches(e)] if isinstance(current, list) else []
            if len(found) != 1:
                return
            current = found[0]
        else:
            if not isinstance(current, dict):
                return
            if segment not in current:
                if value is fields.MISSING:
                    return
                current[segment] = {}
            current = current[segment]
    last = path[-1]
    if isinstance(last, ListKey):
        if not isinstance(current, list):
            return
        index = next((i for i, e in enumerate(current) if last.matches(e)), None)
        if value is fields.MISSING:
            if index is not None:
                del current[index]
        elif index is None:
            current.append(value)
        else:
            current[index] = value
    elif isinstance(current, dict):
        if value is fields.MISSING:
            current.pop(last, None)
        else:
            current[last] = value
