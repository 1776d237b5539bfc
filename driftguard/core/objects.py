"""Object identity: what makes two manifests "the same object".

Identity is (group, kind, namespace, name) — the API version is carried along for
requests but is not part of identity, so ``apps/v1`` and a later version of the same
Deployment are one object. Messages name objects the way kubectl users read them:
``Deployment production/my-service``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any], *, default_namespace: str = "") -> ObjectRef:
        """The identity of a manifest or live object (``default_namespace`` fills a missing one)."""
        group, _ = split_api_version(str(obj.get("apiVersion", "")))
        metadata = obj.get("metadata") or {}
        return cls(
            group=group,
            kind=str(obj.get("kind", "")),
            namespace=str(metadata.get("namespace") or default_namespace),
            name=str(metadata.get("name", "")),
        )

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def key(self) -> str:
        """A stable one-line id (``group_kind_namespace_name``), as stored in inventories."""
        return "_".join((self.namespace, self.name, self.group, self.kind))

    @classmethod
    def from_key(cls, key: str) -> ObjectRef:
        namespace, name, group, kind = _split_key(key)
        return cls(group=group, kind=kind, namespace=namespace, name=name)


def _split_key(key: str) -> tuple[str, str, str, str]:
    # Names and namespaces never contain "_" (DNS-1123), groups never do, kinds never do.
    parts = key.split("_")
    if len(parts) != 4:
        raise ValueError(f"inventory entry {key!r}: expected namespace_name_group_kind")
    return parts[0], parts[1], parts[2], parts[3]


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version
