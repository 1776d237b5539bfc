"""Builders shared by the reconciler's unit tests (this directory is put on sys.path by conftest)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from driftguard.core.manifests import Manifest
from driftguard.core.marks import MarkKey, Marks, seal
from reconciler.application import parse_application
from reconciler.desired import Desired, build
from reconciler.revision import Revision

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
REV1 = Revision("1" * 40, "alice@org", "2026-03-01T10:00:00Z", "first")
REV2 = Revision("2" * 40, "bob@org", "2026-03-01T11:00:00Z", "second")
APP = parse_application({
    "metadata": {"name": "svc", "namespace": "driftguard-system"},
    "spec": {"source": {"repoURL": "https://git.example/org/repo", "path": "app"},
             "destination": {"namespace": "prod"}, "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
})
MARK_KEY = MarkKey(bytes(range(32)))
MARKS = Marks(MARK_KEY, dt.timedelta(days=400))  # a TTL longer than any grant below, unless a test caps it
LIVE_UID = "u-1"  # every live_of object's uid: what a sealed mark is bound to


def sealed(text: str, uid: str = LIVE_UID) -> str:
    """A mark as the mutating webhook writes it on the object ``uid``."""
    return seal(MARK_KEY, uid, text)


SCOPES = {"ConfigMap": True, "Deployment": True, "Namespace": False, "ClusterRole": False}


def cm(name: str = "web", data: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **metadata},
            "data": data if data is not None else {"color": "blue"}}


def desired(obj: dict[str, Any] | None = None, *, revision: Revision = REV1, path: str = "app/cm.yaml",
            app: Any = APP) -> Desired:
    manifest = Manifest(obj or cm(), path, 1)
    return build([manifest], app=app, revision=revision, scope=lambda _, kind: SCOPES.get(kind))[0]


def live_of(d: Desired, **changes: Any) -> dict[str, Any]:
    """The live object the API server would hold after applying ``d`` (plus ``changes`` merged in)."""
    live = copy.deepcopy(d.obj)
    live["metadata"].update(uid=LIVE_UID, resourceVersion="42", creationTimestamp="2026-03-01T10:00:00Z")
    for key, value in changes.items():
        if key in ("annotations", "labels"):
            live["metadata"][key] = {**live["metadata"].get(key, {}), **value}
        else:
            live[key] = value
    return live
