"""``fields.diff`` walks tree and object together; it must answer exactly as looking every leaf up.

The reference below is the definition: every leaf of ``leaves(declared)`` looked up in the object with
``lookup`` and compared with ``leaf_equal``. Seeded random trees and mutations cover keyed lists
(found, missing, ambiguous), atomic lists, quantities, digests, empty collections, nulls and type changes.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from driftguard.core import fields


def reference(declared: dict[str, Any], obj: dict[str, Any]) -> list[fields.FieldDrift]:
    return [fields.FieldDrift(path, want, fields.lookup(obj, path))
            for path, want in fields.leaves(declared)
            if not fields.leaf_equal(path, want, fields.lookup(obj, path))]


def scalar(rng: random.Random) -> object:
    return rng.choice(["a", "b", "1", 1, 1.0, 2, True, False, None, "500m", "0.5", "1Gi", "1024Mi", ""])


def container(rng: random.Random, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": rng.choice(["nginx:1", "nginx:2"])}
    if rng.random() < 0.7:
        out["env"] = [{"name": f"E{i}", "value": scalar(rng)} for i in range(rng.randint(0, 3))]
    if rng.random() < 0.6:
        out["ports"] = [{"containerPort": p} for p in rng.sample([80, 443, 8080], rng.randint(1, 2))]
    if rng.random() < 0.6:
        out["resources"] = {"limits": {"cpu": scalar(rng), "memory": scalar(rng)}}
    if rng.random() < 0.4:
        out["args"] = [scalar(rng) for _ in range(rng.randint(0, 3))]
    return out


def declared_tree(rng: random.Random) -> dict[str, Any]:
    names = rng.sample(["web", "side", "init"], rng.randint(1, 3))
    tree: dict[str, Any] = {
        "metadata": {"labels": {"app": scalar(rng), "app.kubernetes.io/name": "x"}},
        "spec": {"replicas": rng.choice([1, 3, None]), "template": {"spec": {
            "containers": [container(rng, n) for n in names],
            "volumes": [{"name": "v", "emptyDir": {}}] if rng.random() < 0.5 else [],
        }}},
        "data": {"k": scalar(rng), "blob": "x" * rng.choice([10, 600])},
    }
    return fields.compact(tree)


def mutate(rng: random.Random, value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            roll = rng.random()
            if roll < 0.05:
                continue  # drop a key
            out[key] = mutate(rng, child) if roll < 0.9 else scalar(rng)
        if rng.random() < 0.1:
            out["extra"] = scalar(rng)
        return out
    if isinstance(value, list):
        out_list = [mutate(rng, v) for v in value if rng.random() > 0.05]
        if rng.random() < 0.1 and out_list:
            out_list.append(copy.deepcopy(out_list[0]))  # an ambiguous keyed element
        if rng.random() < 0.2:
            rng.shuffle(out_list)
        return out_list
    return scalar(rng) if rng.random() < 0.15 else value


def live(rng: random.Random, declared: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(declared)
    obj["data"]["blob"] = rng.choice(["x" * 10, "x" * 600, "y"])
    return mutate(rng, obj)


@pytest.mark.parametrize("seed", range(40))
def test_walk_answers_exactly_as_the_leaf_by_leaf_definition(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        declared = declared_tree(rng)
        obj = live(rng, declared)
        assert fields.diff(declared, obj) == reference(declared, obj)


def test_the_corpus_really_drifts_and_really_matches() -> None:
    rng = random.Random(7)
    outcomes = set()
    for _ in range(200):
        declared = declared_tree(rng)
        outcomes.add(bool(fields.diff(declared, live(rng, declared))))
    assert outcomes == {True, False}


@pytest.mark.parametrize(("declared", "obj"), [
    ({}, {"a": 1}),
    ({}, {}),
    ({"a": {}}, {"a": "scalar"}),
    ({"a": {fields.DIGEST_KEY: fields.digest_of("v")}}, {"a": "v"}),
    ({"containers": []}, {"containers": [{"name": "x"}]}),
    ({"containers": [{"name": "x", "image": "i"}]}, {"containers": "not a list"}),
])
def test_edges(declared: dict[str, Any], obj: dict[str, Any]) -> None:
    assert fields.diff(declared, obj) == reference(declared, obj)
