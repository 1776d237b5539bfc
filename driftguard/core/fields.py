"""Declared fields: which parts of an object git sets, and whether an object still matches.

A *declared tree* is the git manifest minus its identity (apiVersion, kind, name,
namespace), minus anything driftguard stamps itself, and minus ``status``. Its leaves
are the declared fields. An object matches git when every declared leaf has git's
value in it; fields git does not declare (defaults, other controllers' fields) are
never compared.

The comparison is the one place both components agree on drift: the webhook asks it
"would this request change a declared field", the reconciler asks it "has the live
object drifted". It understands Kubernetes' merge semantics where they matter for
correctness: lists of containers, env vars, ports, volumes... are matched by key;
every other list is atomic (compared whole, in order) — the safe choice, because an
extra RBAC subject must be drift. Quantities compare by value (``1000m`` == ``1``);
otherwise types are strict (``"1"`` != ``1``) exactly as the API server is.

Large or sensitive leaves (Secret data) are kept as a SHA-256 digest, never rendered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core.quantity import parse_quantity

DIGEST_KEY: Final = "$sha256"
DIGEST_THRESHOLD: Final = 512  # canonical JSON characters above which a leaf is stored as a digest

# List fields that Kubernetes merges by key (x-kubernetes-list-map-keys / patchMergeKey).
# Each entry lists candidate key tuples; the first whose first key the element carries wins.
KEYED_LISTS: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    "containers": (("name",),),
    "initContainers": (("name",),),
    "ephemeralContainers": (("name",),),
    "env": (("name",),),
    "volumes": (("name",),),
    "volumeMounts": (("mountPath",),),
    "volumeDevices": (("devicePath",),),
    "ports": (("containerPort", "protocol"), ("port", "protocol")),
    "imagePullSecrets": (("name",),),
    "hostAliases": (("ip",),),
    "topologySpreadConstraints": (("topologyKey", "whenUnsatisfiable"),),
    "resourceClaims": (("name",),),
}
KEY_DEFAULTS: Final[Mapping[str, object]] = {"protocol": "TCP"}

# A leaf is a quantity when its parent map is one of these, or its own key is one of these.
QUANTITY_PARENTS: Final = frozenset({"limits", "requests", "capacity", "allocatable", "hard", "used", "overhead"})
QUANTITY_KEYS: Final = frozenset({"sizeLimit", "storage"})

IDENTITY_FIELDS: Final = frozenset({"apiVersion", "kind", "status"})
IDENTITY_METADATA: Final = frozenset({"name", "namespace", "generateName"})
SERVER_METADATA: Final = frozenset({
    "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences", "finalizers",
})


class _Missing:
    """The absence of a field (distinct from an explicit null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class ListKey:
    """A path segment selecting the element of a keyed list whose key fields have these values."""

    fields: tuple[tuple[str, object], ...]

    def matches(self, element: object) -> bool:
        if not isinstance(element, Mapping):
            return False
        return all(element.get(k, KEY_DEFAULTS.get(k)) == v for k, v in self.fields)

    def __str__(self) -> str:
        return "[" + ",".join(f"{k}={_scalar_text(v)}" for k, v in self.fields) + "]"


Segment = str | ListKey
Path = tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """A declared value kept only as its SHA-256 (large values, Secret data)."""

    hexdigest: str

    def matches(self, value: object) -> bool:
        return value is not MISSING and digest_of(value) == self.hexdigest


@dataclass(frozen=True, slots=True)
class FieldDrift:
    """One declared field whose value differs from git's."""

    path: Path
    declared: object
    actual: object

    @property
    def path_text(self) -> str:
        return render_path(self.path)

    def to_dict(self, *, sensitive: bool = False) -> dict[str, str]:
        return {
            "field": self.path_text,
            "declared": render_value(self.declared, sensitive=sensitive),
            "requested": render_value(self.actual, sensitive=sensitive),
        }


# ---------------------------------------------------------------- declared trees

def declared_tree(manifest: Mapping[str, Any], *, own_prefix: str = "driftguard.io/") -> dict[str, Any]:
    """The fields a git manifest declares, without identity, status or driftguard's own stamps."""
    tree = {k: v for k, v in manifest.items() if k not in IDENTITY_FIELDS and k != "metadata"}
    metadata = manifest.get("metadata") or {}
    kept: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in IDENTITY_METADATA or key in SERVER_METADATA:
            continue
        if key in ("labels", "annotations") and isinstance(value, Mapping):
            theirs = {k: v for k, v in value.items() if not k.startswith(own_prefix)}
            if theirs:
                kept[key] = theirs
            continue
        kept[key] = value
    if kept:
        tree["metadata"] = kept
    return tree


def compact(tree: Mapping[str, Any], *, sensitive_roots: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Replace large leaves, and every leaf under a sensitive root (e.g. Secret ``data``), by digests."""
    return {k: _compact(v, sensitive=k in sensitive_roots) for k, v in tree.items()}


def _compact(value: object, *, sensitive: bool) -> object:
    if isinstance(value, Mapping):
        if DIGEST_KEY in value:
            return value
        return {k: _compact(v, sensitive=sensitive) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v, sensitive=sensitive) for v in value]
    if value is not None and (sensitive or len(canonical_json(value)) > DIGEST_THRESHOLD):
        return {DIGEST_KEY: digest_of(value)}
    return value


def digest_of(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- walking

def leaves(tree: object, prefix: Path = ()) -> Iterator[tuple[Path, object]]:
    """Yield (path, declared value) for every declared leaf of a declared tree."""
    if isinstance(tree, Mapping):
        if DIGEST_KEY in tree and len(tree) == 1:
            yield prefix, Digest(str(tree[DIGEST_KEY]))
            return
        if not tree:
            yield prefix, {}
            return
        for key, value in tree.items():
            yield from _child_leaves(str(key), value, prefix)
        return
    yield prefix, tree


def _child_leaves(key: str, value: object, prefix: Path) -> Iterator[tuple[Path, object]]:
    path = (*prefix, key)
    keys = list_keys_for(key, value)
    if keys is None:
        yield from leaves(value, path)
        return
    assert isinstance(value, list)
    if not value:
        yield path, []
        return
    for element in value:
        selector = ListKey(tuple((k, element.get(k, KEY_DEFAULTS.get(k))) for k in keys))
        yield from leaves(element, (*path, selector))


def list_keys_for(field: str, value: object) -> tuple[str, ...] | None:
    """The merge keys for a keyed list, or None when the list is atomic (or not a list)."""
    if not isinstance(value, list) or field not in KEYED_LISTS:
        return None
    if not all(isinstance(e, Mapping) for e in value):
        return None
    for candidate in KEYED_LISTS[field]:
        if all(candidate[0] in e for e in value):
            return tuple(k for k in candidate if k == candidate[0] or any(k in e for e in value))
    return None


def lookup(obj: object, path: Path) -> object:
    """The value at ``path`` in a live object, or MISSING."""
    current = obj
    for segment in path:
        if isinstance(segment, ListKey):
            if not isinstance(current, list):
                return MISSING
            found = [e for e in current if segment.matches(e)]
            if len(found) != 1:
                return MISSING
            current = found[0]
        else:
            if not isinstance(current, (dict, Mapping)) or segment not in current:  # dict first: no ABC check
                return MISSING
            current = current[segment]
    return current


# ---------------------------------------------------------------- comparing

def diff(declared: Mapping[str, Any], obj: Mapping[str, Any]) -> list[FieldDrift]:
    """Every declared leaf whose value in ``obj`` differs from git's, in declaration order.

    Walks the declared tree and the object together, so each keyed list is searched once per declared
    element rather than once per leaf — the same answer as looking every leaf of ``leaves`` up with
    ``lookup``, at a fraction of the cost (this runs for every webhook request and every live object).
    """
    drifts: list[FieldDrift] = []
    _diff_node(declared, obj, (), drifts)
    return drifts


def _diff_node(want: object, have: object, path: Path, out: list[FieldDrift]) -> None:
    # Declared trees and objects are decoded JSON, so ``dict`` (not the slower Mapping ABC) is exact here.
    if isinstance(want, dict) and want and not (DIGEST_KEY in want and len(want) == 1):
        children = have if isinstance(have, dict) else {}
        for key, value in want.items():
            _diff_child(str(key), value, children.get(key, MISSING), (*path, key), out)
        return
    leaf = Digest(str(want[DIGEST_KEY])) if isinstance(want, dict) and want else want
    if not leaf_equal(path, leaf, have):
        out.append(FieldDrift(path, leaf, have))


def _diff_child(key: str, want: object, have: object, path: Path, out: list[FieldDrift]) -> None:
    keys = list_keys_for(key, want)
    if keys is None or not want:
        _diff_node(want, have, path, out)
        return
    assert isinstance(want, list)
    index = _index(have if isinstance(have, list) else [], keys)
    for element in want:
        selector = ListKey(tuple((k, element.get(k, KEY_DEFAULTS.get(k))) for k in keys))
        found = _find(index, selector, have)
        _diff_node(element, found, (*path, selector), out)


def _index(elements: list[Any], keys: tuple[str, ...]) -> dict[tuple[object, ...], list[Any]] | None:
    """Live list elements by their key values (None when a key value is unhashable: scan instead)."""
    index: dict[tuple[object, ...], list[Any]] = {}
    try:
        for element in elements:
            if isinstance(element, dict):
                index.setdefault(tuple(element.get(k, KEY_DEFAULTS.get(k)) for k in keys), []).append(element)
    except TypeError:
        return None
    return index


def _find(index: dict[tuple[object, ...], list[Any]] | None, selector: ListKey, have: object) -> object:
    """The one live element the selector picks, or MISSING (none, or ambiguous)."""
    try:
        found = index.get(tuple(v for _, v in selector.fields), []) if index is not None else None
    except TypeError:
        found = None
    if found is None:
        found = [e for e in (have if isinstance(have, list) else []) if selector.matches(e)]
    return found[0] if len(found) == 1 else MISSING


def leaf_equal(path: Path, declared: object, actual: object) -> bool:
    """Whether ``actual`` keeps the declared leaf at git's value."""
    if isinstance(declared, Digest):
        return declared.matches(actual)
    if _is_quantity_path(path):
        left, right = parse_quantity(declared), parse_quantity(actual)
        if left is not None and right is not None:
            return left == right
    return subset_equal(declared, actual)


def subset_equal(declared: object, actual: object) -> bool:
    """Whether ``actual`` holds everything ``declared`` says, allowing fields git left out.

    Maps may carry extra keys (server defaults); lists are atomic: same length, same
    order, each element compared the same way. ``None`` declares absence.
    """
    if declared is None:
        return actual is MISSING or actual is None
    if declared in ([], {}):
        return _empty_matches(declared, actual)
    if actual is MISSING:
        return False
    if isinstance(declared, Mapping):
        if DIGEST_KEY in declared and len(declared) == 1:
            return Digest(str(declared[DIGEST_KEY])).matches(actual)
        if not isinstance(actual, Mapping):
            return False
        return all(subset_equal(v, actual.get(k, MISSING)) for k, v in declared.items())
    if isinstance(declared, list):
        if not isinstance(actual, list) or len(actual) != len(declared):
            return False
        return all(subset_equal(d, a) for d, a in zip(declared, actual, strict=True))
    return scalar_equal(declared, actual)


def _empty_matches(declared: object, actual: object) -> bool:
    """The API server drops empty collections, so declaring one declares "nothing here"."""
    if actual is MISSING or actual is None:
        return True
    if isinstance(declared, dict):
        return isinstance(actual, Mapping)
    return actual == []


def scalar_equal(a: object, b: object) -> bool:
    """Strict scalar equality: ``"1"`` != ``1`` and ``True`` != ``1``, but ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _is_quantity_path(path: Path) -> bool:
    names = [s for s in path[-4:] if isinstance(s, str)]  # the last two names are within four segments
    if not names:
        return False
    return names[-1] in QUANTITY_KEYS or (len(names) >= 2 and names[-2] in QUANTITY_PARENTS)


# ---------------------------------------------------------------- rendering

def render_path(path: Sequence[Segment]) -> str:
    """``spec.template.spec.containers[name=web].image``; odd keys quoted: ``labels["app.kubernetes.io/name"]``."""
    out = ""
    for segment in path:
        if isinstance(segment, ListKey):
            out += str(segment)
        elif segment.replace("_", "").replace("-", "").isalnum():
            out += ("." if out else "") + segment
        else:
            out += f"[{json.dumps(segment)}]"
    return out


def parse_path(text: str) -> tuple[Path, str]:
    """``render_path``'s text back into a path, and what follows it (``=`` and a value, for ``--set``); ValueError
    naming the position when ``text`` is not a path."""
    path: list[Segment] = []
    i = 0
    decoder = json.JSONDecoder()
    while i < len(text) and text[i] != "=":
        if text[i] == "[" and text[i + 1:i + 2] == '"':
            key, end = decoder.raw_decode(text, i + 1)
            if not isinstance(key, str) or text[end:end + 1] != "]":
                raise ValueError(f"{text!r}: a quoted key is [\"…\"] (at {i})")
            path.append(key)
            i = end + 1
        elif text[i] == "[":
            selector, i = _parse_list_key(text, i + 1, decoder)
            path.append(selector)
        elif text[i] == "." and path and i + 1 < len(text) and text[i + 1] not in ".[=":
            i += 1
        else:
            end = i
            while end < len(text) and text[end] not in ".[]=,":
                end += 1
            if end == i or (path and text[i - 1] not in "."):
                raise ValueError(f"{text!r} is not a field path like spec.template.spec.containers[name=web].image "
                                 f"(at {i})")
            path.append(text[i:end])
            i = end
    if not path:
        raise ValueError(f"{text!r} names no field")
    return tuple(path), text[i:]


def _parse_list_key(text: str, i: int, decoder: json.JSONDecoder) -> tuple[ListKey, int]:
    pairs: list[tuple[str, object]] = []
    while True:
        equals = text.find("=", i)
        if equals <= i or any(c in text[i:equals] for c in "[],\""):
            raise ValueError(f"{text!r}: a list element is [key=value,…] (at {i})")
        key = text[i:equals]
        if text[equals + 1:equals + 2] == '"':
            value, i = decoder.raw_decode(text, equals + 1)
        else:
            end = equals + 1
            while end < len(text) and text[end] not in ",]":
                end += 1
            value, i = parse_scalar(text[equals + 1:end]), end
        pairs.append((key, value))
        if text[i:i + 1] == "]":
            return ListKey(tuple(pairs)), i + 1
        if text[i:i + 1] != ",":
            raise ValueError(f"{text!r}: a list element is [key=value,…] (at {i})")
        i += 1


def parse_scalar(text: str) -> object:
    """A value as ``render_value`` writes a scalar: JSON (a number, true, a quoted string…), else the bare string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def scalar_text(value: object) -> str | None:
    """A one-line scalar as ``parse_scalar`` reads it back, or None (a list, a map, a control character)."""
    if isinstance(value, Mapping | list | Digest) or value is MISSING:
        return None
    if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return _scalar_text(value)


def render_value(value: object, *, sensitive: bool = False, limit: int = 80) -> str:
    if value is MISSING:
        return "<absent>"
    if sensitive:
        return "<redacted>"
    if isinstance(value, Digest):
        return f"<sha256:{value.hexdigest[:12]}>"
    text = _scalar_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if _needs_quotes(value) else value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _needs_quotes(value: str) -> bool:
    if value == "" or value != value.strip():
        return True
    try:
        json.loads(value)
    except ValueError:
        return any(c in value for c in ",[]{}\"=")
    return True
