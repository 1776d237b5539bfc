"""Parsing git manifests: YAML text in, identified objects (with file and line) out.

A revision is all or nothing, so this module never skips a bad document: every
problem becomes a ``ManifestError`` naming the file and line, and the caller applies
nothing from that revision. ``kind: List`` documents are expanded. Empty documents
(``---`` separators, comments only) are ignored.

YAML is read the way kubectl reads it (go-yaml), not the way PyYAML does by default:

- a tab that separates tokens (after a value, before a comment, inside a flow collection, on a blank
  line) is whitespace; a tab used as *indentation* is still an error, as it is for kubectl;
- a mapping that repeats a key is refused with the key's line (PyYAML keeps the last one silently;
  kubectl refuses it);
- a document may expand to at most ``Limits.max_nodes`` nodes, counting every alias at its expanded
  size (a 500-byte "billion laughs" document is refused before anything is built from it), and nest at
  most ``Limits.max_depth`` levels (deeper input is refused, never a RecursionError).

Most text is read by libyaml (PyYAML's C parser, where it is built with it), the rest by PyYAML's own
reader with the rules above; they give the same objects and errors (see ``_REFERENCE_ONLY``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from driftguard.core import phases

try:
    from yaml import CSafeLoader as _CSafeLoader
except ImportError:  # PyYAML built without libyaml: _WITH_LIBYAML is False, _CLoader never used
    from yaml import SafeLoader as _CSafeLoader  # type: ignore[assignment]
from driftguard.core.objects import ObjectRef


class ManifestError(ValueError):
    """A manifest that cannot be applied; ``str()`` starts with ``file:line``."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path, self.line, self.problem = path, line, problem


@dataclass(frozen=True, slots=True)
class Manifest:
    """One object declared in git."""

    obj: dict[str, Any] = field(repr=False)
    path: str  # file path relative to the repository root
    line: int  # 1-based line where the document starts

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.obj)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one YAML document (an object): expanded node count and nesting depth."""

    max_nodes: int = 1_000_000
    max_depth: int = 200


DEFAULT_LIMITS: Final = Limits()
_BREAKS: Final = "\0\r\n\x85\u2028\u2029"


class _Constructor(yaml.constructor.SafeConstructor):
    """PyYAML's safe constructor, refusing a mapping that repeats a key (as go-yaml does)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # a scalar tagged !!set, say
            raise ConstructorError(None, None, f"expected a mapping node, but found {node.id}", node.start_mark)
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise ConstructorError(
                    None, None, f"mapping key {key!r} is repeated (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep)


class _Loader(_Constructor, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader with go-yaml's treatment of separating tabs and duplicate keys."""

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\uFEFF":
            self.forward()
        leading = self.column == 0  # nothing scanned yet on this line: a tab here would indent
        while True:
            ch = self.peek()
            if ch == " " or (ch == "\t" and (self.flow_level or not leading or self._blank_rest())):
                self.forward()
                continue
            if ch == "#":
                while self.peek() not in _BREAKS:
                    self.forward()
            if not self.scan_line_break():  # type: ignore[no-untyped-call]
                return
            leading = True
            if not self.flow_level:
                self.allow_simple_key = True

    def _blank_rest(self) -> bool:
        """Whether the rest of the line is only spaces, tabs or a comment."""
        n = 0
        while self.peek(n) in " \t":
            n += 1
        return self.peek(n) in _BREAKS + "#"

    def scan_plain_spaces(self, indent: int, start_mark: Any) -> Any:
        n = 0
        while self.peek(n) in " \t":
            n += 1
        whitespace = self.prefix(n)
        if "\t" not in whitespace:
            return super().scan_plain_spaces(indent, start_mark)
        self.forward(n)
        if self.peek() in _BREAKS:  # trailing whitespace: the line break decides, as without the tab
            return super().scan_plain_spaces(indent, start_mark)
        return [whitespace]


# libyaml's parser (PyYAML's C extension) reads a manifest several times faster than PyYAML's pure-Python
# scanner, where a render of 1,000 ConfigMaps spent most of its time. The two read text alike except where
# _REFERENCE_ONLY matches: a tab (go-yaml's handling of it lives in _Loader), a byte order mark past the
# start, a "?" (libyaml takes it inside a flow plain scalar; go-yaml and PyYAML refuse it), a "!" (a tag just
# before a flow indicator) and a comment glued to a block scalar's header. Such text, and any text libyaml
# refuses (so that errors are the reference's words), is read by _Loader; tests/unit/core/test_manifests.py
# holds the two to the same results, on mutated manifests too.
_WITH_LIBYAML: Final = bool(yaml.__with_libyaml__)
_REFERENCE_ONLY: Final = re.compile(r"[\t\ufeff?!]|[|>][-+0-9]*#")


class _CLoader(_Constructor, _CSafeLoader):
    """libyaml's parser with the same constructor (duplicate keys refused) and resolver as ``_Loader``."""


def parse_documents(text: str, path: str, limits: Limits = DEFAULT_LIMITS) -> list[Manifest]:
    """Every object in one (multi-document) YAML or JSON file."""
    try:
        if _WITH_LIBYAML and not _REFERENCE_ONLY.search(text):
            try:
                return _documents(_CLoader(text), path, limits)
            except yaml.YAMLError:
                pass  # refused by libyaml: the reference reader decides, and says why in its words
        return _documents(_Loader(text), path, limits)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ManifestError(path, (mark.line + 1) if mark else 1, f"invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ManifestError(path, 1, f"invalid YAML: {e}") from e
    except RecursionError as e:
        raise ManifestError(path, 1, f"nested more than {limits.max_depth} levels deep") from e


def _documents(loader: _Loader | _CLoader, path: str, limits: Limits) -> list[Manifest]:
    out: list[Manifest] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            _check_bounds(node, limits, path, line)
            out.extend(_objects(loader.construct_document(node), path, line))
    finally:
        loader.dispose()
    return out


def _check_bounds(root: Node, limits: Limits, path: str, line: int) -> None:
    """Refuse a document whose expanded size or depth exceeds ``limits`` (iteratively, aliases once).

    Scalars (most nodes) are counted where their parent is: size 1, depth 1, never on the stack."""
    sizes: dict[int, int] = {}  # id(node) → expanded node count of its subtree (collections only)
    depths: dict[int, int] = {}
    open_: set[int] = set()  # on the current path: meeting one again is a recursive alias
    stack: list[tuple[Node, list[Node] | None]] = [(root, None)]
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is None:
            if key in sizes:
                continue
            if key in open_:
                raise ManifestError(path, node.start_mark.line + 1, "a YAML alias refers to a node that contains it")
            open_.add(key)
            children = _children(node)
            stack.append((node, children))
            stack.extend((child, None) for child in children
                         if not isinstance(child, ScalarNode) and id(child) not in sizes)
            continue
        open_.discard(key)
        size, depth = 1, 0
        for child in children:
            if isinstance(child, ScalarNode):
                size, depth = size + 1, max(depth, 1)
            else:
                size, depth = size + sizes[id(child)], max(depth, depths[id(child)])
        sizes[key], depths[key] = size, depth + 1
        if size > limits.max_nodes:
            raise ManifestError(path, node.start_mark.line + 1,
                                f"the document starting at line {line} expands to more than {limits.max_nodes:,} "
                                "nodes (YAML aliases count at their expanded size)")
        if depth + 1 > limits.max_depth:
            raise ManifestError(path, node.start_mark.line + 1, f"nested more than {limits.max_depth} levels deep")


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _objects(value: object, path: str, line: int) -> Iterator[Manifest]:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ManifestError(path, line, f"expected a Kubernetes object (a mapping), found {type(value).__name__}")
    if value.get("kind") == "List" and isinstance(value.get("items"), list):
        for item in value["items"]:
            yield from _objects(item, path, line)
        return
    yield Manifest(_validated(value, path, line), path, line)


def _validated(obj: dict[str, Any], path: str, line: int) -> dict[str, Any]:
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ManifestError(path, line, f"object has no {key}")
    metadata = obj.get("metadata")
    hook = isinstance(metadata, Mapping) and phases.is_hook(obj)
    named = isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str) and bool(metadata["name"])
    generated = isinstance(metadata, Mapping) and isinstance(metadata.get("generateName"), str) and bool(
        metadata["generateName"])
    if hook and (named or generated):
        return obj  # a hook is created afresh each sync: generateName is what Argo CD users give most of them
    if not named:
        raise ManifestError(path, line, f"{obj['kind']} has no metadata.name (only a hook, annotated "
                            f"{phases.HOOK}, may use metadata.generateName instead)")
    assert isinstance(metadata, Mapping)
    if "generateName" in metadata:
        raise ManifestError(path, line, f"{obj['kind']} {metadata['name']}: generateName cannot be managed from git "
                            f"(only a hook, annotated {phases.HOOK}, may use it)")
    return obj


def check_unique(manifests: Iterable[Manifest]) -> None:
    """Refuse two documents declaring the same object (which one would win is undefined)."""
    seen: dict[ObjectRef, Manifest] = {}
    for m in manifests:
        if not m.ref.name:  # a hook with generateName: a new object each time
            continue
        first = seen.setdefault(m.ref, m)
        if first is not m:
            raise ManifestError(m.path, m.line, f"{m.ref} is also declared at {first.path}:{first.line}")
