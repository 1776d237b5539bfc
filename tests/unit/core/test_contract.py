"""The ownership contract: what stamp() writes is exactly what read_stamp() trusts."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from driftguard.core import contract
from driftguard.core.contract import BreakGlass, ContractError, DriftMark, Source

SOURCE = Source("https://git.example/org/k8s", "1a2b3c4d5e6f", "alice@org", "2026-11-01T10:00:00+00:00",
                "services/web/deploy.yaml")
DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "driftguard.io/managed": "false"}},
    "spec": {"replicas": 3},
}


def stamped(manifest: dict[str, Any] = DEPLOY, enforcement: contract.Enforcement = "deny") -> dict[str, Any]:
    return contract.stamp(manifest, application="driftguard-system/web", source=SOURCE, enforcement=enforcement)


def test_round_trip() -> None:
    stamp = contract.read_stamp(stamped())
    assert stamp is not None
    assert stamp.application == "driftguard-system/web"
    assert stamp.source == SOURCE and stamp.source.short_commit == "1a2b3c4"
    assert stamp.enforcement == "deny"
    assert stamp.declared == {"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 3}}


def test_git_cannot_declare_driftguard_keys() -> None:
    obj = stamped()
    assert obj["metadata"]["labels"][contract.LABEL_MANAGED] == "true"


def test_stamp_does_not_mutate_the_manifest() -> None:
    before = repr(DEPLOY)
    stamped()
    assert repr(DEPLOY) == before


def test_unmanaged_object_has_no_stamp() -> None:
    assert contract.read_stamp({"metadata": {"labels": {"app": "web"}}}) is None
    assert contract.read_stamp(None) is None


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda a: a.pop(contract.ANN_DECLARED), "lacks annotation"),
        (lambda a: a.pop(contract.ANN_COMMIT), "lacks annotation"),
        (lambda a: a.__setitem__(contract.ANN_ENFORCEMENT, "maybe"), "is not one of"),
        (lambda a: a.__setitem__(contract.ANN_DECLARED, "{not json"), "not valid"),
        (lambda a: a.__setitem__(contract.ANN_DECLARED, "[1]"), "JSON object"),
        (lambda a: a.__setitem__(contract.ANN_DECLARED, "z:!!!"), "not valid"),
    ],
)
def test_managed_but_unreadable_stamp_is_an_error(mutate: Any, problem: str) -> None:
    obj = stamped()
    mutate(obj["metadata"]["annotations"])
    with pytest.raises(ContractError, match=problem):
        contract.read_stamp(obj)


def test_large_declared_trees_are_compressed() -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                "data": {f"key{i}": f"value-{i}" for i in range(500)}}
    obj = stamped(manifest)
    assert obj["metadata"]["annotations"][contract.ANN_DECLARED].startswith("z:")
    stamp = contract.read_stamp(obj)
    assert stamp is not None and stamp.drift(obj) == []


def test_secret_string_data_is_declared_as_data_and_never_in_clear() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}
    obj = stamped(secret)
    encoded = base64.b64encode(b"hunter2").decode()
    assert "stringData" not in obj and obj["data"] == {"password": encoded}
    assert "hunter2" not in obj["metadata"]["annotations"][contract.ANN_DECLARED]
    assert encoded not in obj["metadata"]["annotations"][contract.ANN_DECLARED]
    stamp = contract.read_stamp(obj)
    assert stamp is not None and stamp.sensitive
    assert stamp.drift({"data": {"password": encoded}}) == []
    assert [d.path_text for d in stamp.drift({"data": {"password": "eA=="}})] == ["data.password"]


@pytest.mark.parametrize(
    ("old_meta", "new_meta", "changed"),
    [
        ({"labels": {"a": "1"}}, {"labels": {"a": "2"}}, []),
        ({"labels": {contract.LABEL_MANAGED: "true"}}, {"labels": {}}, [f"label:{contract.LABEL_MANAGED}"]),
        ({}, {"annotations": {contract.ANN_ENFORCEMENT: "off"}}, [f"annotation:{contract.ANN_ENFORCEMENT}"]),
        ({"annotations": {contract.ANN_COMMIT: "a"}}, {"annotations": {contract.ANN_COMMIT: "a", "x": "y"}}, []),
        ({"labels": {"a": "1", contract.LABEL_MANAGED: "true"}, "annotations": {contract.ANN_COMMIT: "a"}},
         {"labels": {"a": "1", contract.LABEL_MANAGED: "true"}, "annotations": {contract.ANN_COMMIT: "a"}}, []),
        ({"labels": {contract.LABEL_MANAGED: "true"}, "annotations": {contract.ANN_COMMIT: "a", "x": "1"}},
         {"labels": {contract.LABEL_MANAGED: "false"}, "annotations": {contract.ANN_COMMIT: "b", "x": "1"}},
         [f"annotation:{contract.ANN_COMMIT}", f"label:{contract.LABEL_MANAGED}"]),  # both bags, sorted together
        ({"labels": None}, {"labels": {contract.LABEL_MANAGED: "true"}}, [f"label:{contract.LABEL_MANAGED}"]),
    ],
)
def test_changed_own_metadata(old_meta: dict[str, Any], new_meta: dict[str, Any], changed: list[str]) -> None:
    assert contract.changed_own_metadata({"metadata": old_meta}, {"metadata": new_meta}) == changed


def test_marks_round_trip_and_reject_garbage() -> None:
    mark = DriftMark("laptop", "2026-11-26T10:00:00Z", ("spec.replicas",))
    assert DriftMark.decode(mark.encode()) == mark
    grant = BreakGlass("oncall", "2026-11-26T10:00:00Z", "outage", "1a2b3c4", "2026-11-26T11:00:00Z")
    assert BreakGlass.decode(grant.encode()) == grant
    assert DriftMark.decode("nope") is None
    assert BreakGlass.decode('{"user": "x"}') is None
