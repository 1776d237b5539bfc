"""Asking for a sync through the Application itself: what a standby does with ``/refresh``.

Only the leader syncs, and a standby cannot reach it directly, so it stamps the Application with the
``driftguard.io/refresh`` annotation (the time it asked); the leader watches Applications and treats a
changed stamp as a push to its own ``/refresh``. Nothing else reads the annotation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from driftguard.core.clock import format_micro
from driftguard.core.contract import PREFIX
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.application import AppKey
from reconciler.crd import APPLICATIONS

ANN_REFRESH: Final = PREFIX + "refresh"


def ask_leader(cluster: Cluster, namespace: str, key: AppKey | None) -> list[AppKey]:
    """Stamp ``key`` (or every Application in ``namespace``); the Applications asked (gone ones skipped)."""
    if key is not None:
        targets = [key]
    else:
        items, _ = cluster.list(APPLICATIONS, namespace)
        targets = [AppKey.of(item) for item in items]
    stamp = format_micro(dt.datetime.now(dt.UTC))
    asked = []
    for k in targets:
        try:
            cluster.merge_patch(APPLICATIONS, k.namespace, k.name, {"metadata": {"annotations": {ANN_REFRESH: stamp}}})
            asked.append(k)
        except ResourceError as e:
            if not e.not_found:
                raise
    return asked


def asked(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether the Application's refresh stamp changed between two versions of it."""
    return _annotation(before, ANN_REFRESH) != _annotation(after, ANN_REFRESH)


def _annotation(obj: dict[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key, ""))
