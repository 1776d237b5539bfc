"""Drift attribution: the managers owning the drifted fields, never a bystander that wrote something else."""

from __future__ import annotations

from typing import Any

import pytest

from driftguard.core.fields import ListKey, Path
from reconciler.writers import field_owners

REPLICAS: Path = ("spec", "replicas")
IMAGE: Path = ("spec", "template", "spec", "containers", ListKey((("name", "app"),)), "image")
LABEL: Path = ("metadata", "labels", "team")


def entry(manager: str, fields: dict[str, Any], time: str = "2026-03-01T11:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"manager": manager, "operation": extra.pop("operation", "Update"), "time": time,
            "fieldsType": "FieldsV1", "fieldsV1": fields, **extra}


OURS = entry("driftguard", {"f:spec": {"f:replicas": {}}}, "2026-03-01T12:00:00Z", operation="Apply")
SCALE = entry("kubectl", {"f:spec": {"f:replicas": {}}}, subresource="scale")
BYSTANDER = entry("hpa-like-controller", {"f:metadata": {"f:annotations": {"f:touched": {}}}}, "2026-03-01T11:00:00Z")
EDIT = entry("kubectl-edit", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
    'k:{"name":"app"}': {".": {}, "f:image": {}}}}}}}, "2026-03-01T10:00:00Z")
OTHER_CONTAINER = entry("sidecar-injector", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
    'k:{"name":"proxy"}': {"f:image": {}}}}}}})


@pytest.mark.parametrize(("entries", "paths", "owners"), [
    ([OURS, SCALE, BYSTANDER], [REPLICAS], "kubectl (scale)"),  # a bystander wrote last, at the same second
    ([OURS, BYSTANDER], [REPLICAS], ""),  # only driftguard owns it: unknown, not the bystander
    ([EDIT, OTHER_CONTAINER], [IMAGE], "kubectl-edit"),  # the keyed element matched by its key
    ([OTHER_CONTAINER], [IMAGE], ""),
    ([entry("a", {"f:metadata": {"f:labels": {"f:team": {}}}}, "2026-03-01T09:00:00Z"),
      entry("b", {"f:metadata": {"f:labels": {"f:team": {}}}}, "2026-03-01T10:00:00Z")], [LABEL], "b, a"),
    ([SCALE, EDIT], [REPLICAS, IMAGE], "kubectl (scale), kubectl-edit"),  # newest first
    ([entry("odd", {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:not json": {"f:image": {}}}}}}})],
     [IMAGE], ""),
    ([], [REPLICAS], ""),
])
def test_field_owners(entries: list[dict[str, Any]], paths: list[Path], owners: str) -> None:
    assert field_owners({"metadata": {"managedFields": entries}}, paths) == owners


def test_no_object_or_no_managed_fields_is_unknown() -> None:
    assert field_owners(None, [REPLICAS]) == ""
    assert field_owners({"metadata": {}}, [REPLICAS]) == ""
