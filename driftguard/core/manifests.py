"""Parsing git manifests: YAML text in, identified objects (with file and line) out.

A revision is all or nothing, so this module never skips a bad document: every
problem becomes a ``ManifestError`` naming the file and line, and the caller applies
nothing from that revision. ``kind: List`` documents are expanded. Empty documents
(``---`` separators, comments only) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

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


def parse_documents(text: str, path: str) -> list[Manifest]:
    """Every object in one (multi-document) YAML or JSON file."""
    out: list[Manifest] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                out.extend(_objects(loader.construct_document(node), path, node.start_mark.line + 1))
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ManifestError(path, (mark.line + 1) if mark else 1, f"invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ManifestError(path, 1, f"invalid YAML: {e}") from e
    return out


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
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise ManifestError(path, line, f"{obj['kind']} has no metadata.name")
    if "generateName" in metadata:
        raise ManifestError(path, line, f"{obj['kind']} {metadata['name']}: generateName cannot be managed from git")
    return obj


def check_unique(manifests: Iterable[Manifest]) -> None:
    """Refuse two documents declaring the same object (which one would win is undefined)."""
    seen: dict[ObjectRef, Manifest] = {}
    for m in manifests:
        first = seen.setdefault(m.ref, m)
        if first is not m:
            raise ManifestError(m.path, m.line, f"{m.ref} is also declared at {first.path}:{first.line}")
