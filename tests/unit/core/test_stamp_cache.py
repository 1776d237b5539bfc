"""``contract.StampCache`` answers what ``read_stamp`` answers, once per distinct stamp, with a read-only tree."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from driftguard.core import contract, frozen
from driftguard.core.contract import ContractError, StampCache
from tests.support.admission import deployment_manifest as manifest
from tests.support.admission import live


def _with(obj: dict[str, Any], key: str, value: str | None) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    annotations = out["metadata"]["annotations"]
    if value is None:
        annotations.pop(key, None)
    else:
        annotations[key] = value
    return out


def test_a_hit_is_the_same_stamp_read_stamp_gives() -> None:
    cache = StampCache()
    obj = live()
    first = cache.read(obj)
    again = cache.read(copy.deepcopy(obj))  # another request: equal text, other string objects
    assert again is first and len(cache) == 1
    assert first == contract.read_stamp(obj)


@pytest.mark.parametrize(("key", "value"), [
    (contract.ANN_COMMIT, "f" * 40), (contract.ANN_ENFORCEMENT, "warn"), (contract.ANN_VERIFIED_BY, "alice (SSH)"),
    (contract.ANN_IGNORE, json.dumps({"jsonPointers": ["/spec/replicas"]})), (contract.ANN_PATH, "other.yaml"),
])
def test_every_annotation_read_stamp_reads_is_part_of_the_key(key: str, value: str) -> None:
    cache = StampCache()
    obj = live()
    cache.read(obj)
    changed = _with(obj, key, value)
    assert cache.read(changed) == contract.read_stamp(changed) != contract.read_stamp(obj)


def test_a_secret_and_a_configmap_with_the_same_stamp_differ() -> None:
    cache = StampCache()
    secret = live({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "data": {}})
    config = copy.deepcopy(secret)
    config["kind"] = "ConfigMap"
    assert cache.read(secret).sensitive and not cache.read(config).sensitive  # type: ignore[union-attr]


def test_unmanaged_and_unreadable_stamps_are_not_kept() -> None:
    cache = StampCache()
    assert cache.read(manifest()) is None and cache.read(None) is None
    broken = _with(live(), contract.ANN_DECLARED, "{not json")
    for _ in range(2):
        with pytest.raises(ContractError, match="declared"):
            cache.read(broken)
    assert len(cache) == 0


def test_a_non_string_annotation_gets_read_stamps_answer() -> None:
    obj = live()
    obj["metadata"]["annotations"][contract.ANN_IGNORE] = ["not", "a", "string"]
    with pytest.raises((ContractError, TypeError, AttributeError)) as from_cache:
        StampCache().read(obj)
    with pytest.raises(type(from_cache.value)):
        contract.read_stamp(obj)


def test_the_declared_tree_is_read_only_and_copies_are_plain() -> None:
    stamp = StampCache().read(live())
    assert stamp is not None
    declared = stamp.declared
    with pytest.raises(TypeError, match="shared between requests"):
        declared["spec"]["replicas"] = 9
    with pytest.raises(TypeError):
        declared["spec"]["template"]["spec"]["containers"].append({})
    mine = copy.deepcopy(declared)
    mine["spec"]["template"]["spec"]["containers"].append({})
    assert type(mine) is dict and type(frozen.thaw(declared)["spec"]) is dict
    assert declared == contract.read_stamp(live()).declared  # type: ignore[union-attr]


def test_the_oldest_stamps_go_beyond_the_budget() -> None:
    objects = [_with(live(), contract.ANN_COMMIT, f"{i:040x}") for i in range(6)]
    size = sum(len(v) for k, v in objects[0]["metadata"]["annotations"].items() if k in contract.STAMP_ANNOTATIONS)
    cache = StampCache(budget=3 * size + 100)  # room for three
    first = [cache.read(o) for o in objects]
    assert len(cache) == 3
    assert cache.read(objects[-1]) is first[-1]  # kept
    assert cache.read(objects[0]) is not first[0]  # went, read again
    assert StampCache(budget=10).read(objects[0]) is not None  # too big to keep is still read
    assert len(StampCache(budget=10)) == 0


@pytest.mark.parametrize("value", [
    {"a": [1, {"b": [True, None]}], "c": {}}, [], {}, "text", 3, None,
])
def test_freeze_keeps_the_value(value: Any) -> None:
    held = frozen.freeze(value)
    assert held == value and json.dumps(held) == json.dumps(value) and frozen.thaw(held) == value
    assert copy.copy(held) == value
