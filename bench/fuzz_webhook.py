"""Fuzz the webhook's parser and decision: random AdmissionReviews, no crashes, no declared field let through.

    .venv/bin/python bench/fuzz_webhook.py                  # 100,000 inputs, seed 1
    .venv/bin/python bench/fuzz_webhook.py -n 20000 --seed 7

Each input starts from a stamped managed object (Deployment, Secret, a custom resource; every
enforcement mode), then randomly: drifts or corrupts the old object, mutates the new one (values of
every type, removed and added keys, reordered/duplicated/dropped list elements, driftguard's own
labels and annotations, break-glass reasons, drift marks), picks an operation, subresource, user and
groups, and sometimes breaks the envelope or the bytes. Then it runs exactly what the HTTP edge runs:
``parse_review`` (a ``BadReview`` is a correct answer), ``policy.validate`` and ``policy.mutate``.

Three properties are checked on every input:

* no exception escapes the parser or the policy (a crash would be a fail-closed 500 in production,
  but here it is a bug);
* an untrusted UPDATE/scale/DELETE of an object whose old stamp says ``deny`` is never allowed when an
  *oracle* — the unpruned definition: every declared leaf the new object no longer has at git's
  value and whose value the old object did not already have, or a DELETE that has not begun — says
  it changes git's state, unless the user is an authorised break-glass member;
* a denial's (or warning's) ``driftguard suggest`` line is its last, fits in one warning, is never given for
  a Secret, and reads back — split as a shell splits it, parsed as suggest parses it — to exactly what the
  request sets.

Standard library only (seeded ``random``), so it runs anywhere the webhook runs.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import random
import shlex
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftguard.core import contract, fields, suggestion
from driftguard.core.names import RECONCILER_USER
from webhook import identity, messages, policy, reviews
from webhook.settings import Settings

NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings(break_glass_groups=("sre",))
SOURCE = contract.Source("https://github.com/org/k8s-manifests", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
                         "alice@org", "2024-05-01T10:00:00Z", "apps/web.yaml")
USERS = [
    ("laptop", ["engineers", "system:authenticated"]),
    ("oncall", ["sre", "system:authenticated"]),
    ("admin", ["system:masters"]),
    (RECONCILER_USER, ["system:serviceaccounts"]),
    ("system:serviceaccount:kube-system:generic-garbage-collector", ["system:serviceaccounts"]),
    ("system:serviceaccount:other:app", ["system:serviceaccounts"]),
]
OWN_KEYS = [contract.LABEL_MANAGED, contract.ANN_ENFORCEMENT, contract.ANN_COMMIT, contract.ANN_DECLARED,
            contract.ANN_DRIFT, contract.ANN_BREAK_GLASS, contract.ANN_BREAK_GLASS_GRANTED, "driftguard.io/x"]


def manifests() -> list[dict[str, Any]]:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}, "annotations": {"team": "a"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "web", "image": "web:1",
                 "ports": [{"containerPort": 80}, {"containerPort": 9090, "name": "m"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x"}],
                 "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "proxy", "image": "proxy:2"}],
                "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": None}}},
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "prod"},
              "type": "Opaque", "data": {"password": "czNjcjN0", "user": "YWRtaW4="}}
    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 1, "enabled": True, "ratio": 0.5, "tags": ["a", "b"], "nested": {"deep": {"x": "1"}},
                       "big": "y" * 600, "empty": {}, "none": []}}
    return [deployment, secret, custom]


def live(manifest: dict[str, Any], enforcement: contract.Enforcement) -> dict[str, Any]:
    obj = contract.stamp(manifest, application="ops/app", source=SOURCE, enforcement=enforcement)
    obj["metadata"].update({"uid": "u-1", "resourceVersion": "7", "generation": 2})
    return obj


# ---------------------------------------------------------------- random values and mutations

def random_value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        rng.randint(-3, 12), str(rng.randint(0, 12)), rng.choice([0.0, 1.0, 2.5, 1e3]), rng.random() < 0.5, None,
        rng.choice(["1000m", "1", "500m", "0.5", "1Gi", "1024Mi", "", " ", "web:1", "web:2", "TCP", "x" * 600]),
        "drift-" + str(rng.randint(0, 99)),
    ]
    if depth < 2:
        choices += [{}, [], {"name": rng.choice(["web", "proxy", "debug", "A", "B"]), "value": random_value(rng, 2)},
                    {"k": random_value(rng, depth + 1)}, [random_value(rng, depth + 1)]]
    return rng.choice(choices)


def containers(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        out.append(path)
        for key, value in obj.items():
            out += containers(value, (*path, key))
    elif isinstance(obj, list):
        out.append(path)
        for index, value in enumerate(obj):
            out += containers(value, (*path, index))
    return out


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def mutate(obj: dict[str, Any], rng: random.Random) -> None:
    """One random edit somewhere in ``obj`` (in place)."""
    if rng.random() < 0.25:
        _mutate_own_metadata(obj, rng)
        return
    target = at(obj, rng.choice(containers(obj)))
    if isinstance(target, dict):
        action = rng.random()
        if target and action < 0.45:
            target[rng.choice(list(target))] = random_value(rng)
        elif target and action < 0.7:
            del target[rng.choice(list(target))]
        else:
            key = rng.choice(["replicas", "image", "name", "value", "extra", "cpu", "app", "size"])
            target[key] = random_value(rng)
    elif isinstance(target, list):
        action = rng.random()
        if target and action < 0.3:
            del target[rng.randrange(len(target))]
        elif target and action < 0.5:
            target.append(copy.deepcopy(rng.choice(target)))
        elif action < 0.7:
            target.reverse()
        elif target:
            target[rng.randrange(len(target))] = random_value(rng)
        else:
            target.append(random_value(rng))


def _mutate_own_metadata(obj: dict[str, Any], rng: random.Random) -> None:
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        return
    where = "labels" if rng.random() < 0.3 else "annotations"
    bag = metadata.setdefault(where, {})
    if not isinstance(bag, dict):
        return
    key = rng.choice(OWN_KEYS)
    roll = rng.random()
    if roll < 0.3:
        bag.pop(key, None)
    elif key == contract.ANN_BREAK_GLASS:
        bag[key] = rng.choice(["INC-1", "", "  ", "reason"])
    elif key == contract.ANN_DRIFT:
        bag[key] = contract.DriftMark(rng.choice(["laptop", "oncall"]), "2024-06-01T12:00:00Z",
                                      tuple(rng.sample(["spec.replicas", "data.password", "spec.size"], 1))).encode()
    elif key == contract.ANN_BREAK_GLASS_GRANTED:
        bag[key] = contract.BreakGlass(rng.choice(["laptop", "oncall"]), "2024-06-01T12:00:00Z", "INC-1",
                                       SOURCE.commit, "2024-06-01T13:00:00Z").encode()
    else:
        bag[key] = rng.choice(["true", "false", "deny", "warn", "off", "{}", "{", SOURCE.commit])


def envelope(rng: random.Random, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    operation = rng.choice(["UPDATE"] * 6 + ["CREATE", "DELETE", "DELETE", "CONNECT"])
    subresource = rng.choice([""] * 8 + ["scale", "status"])
    user, groups = rng.choice(USERS)
    group, _, version = str(old.get("apiVersion", "v1")).rpartition("/")
    request: dict[str, Any] = {
        "uid": f"uid-{rng.randrange(10**9)}",
        "kind": {"group": group, "version": version, "kind": old.get("kind", "")},
        "resource": {"group": group, "version": version, "resource": str(old.get("kind", "")).lower() + "s"},
        "name": "web", "namespace": "prod", "operation": operation,
        "userInfo": {"username": user, "groups": list(groups)},
        "object": None if operation == "DELETE" else new,
        "oldObject": None if operation == "CREATE" else old,
        "dryRun": rng.random() < 0.2,
    }
    if subresource:
        request["subResource"] = subresource
        if subresource == "scale":
            request["object"] = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                 "spec": {"replicas": rng.choice([3, 9, "9", None])}}
    if rng.random() < 0.05:  # a broken envelope
        key = rng.choice(list(request))
        request[key] = random_value(rng) if rng.random() < 0.5 else request.pop(key)
    return {"apiVersion": rng.choice(["admission.k8s.io/v1"] * 30 + ["admission.k8s.io/v1beta1"]),
            "kind": "AdmissionReview", "request": request}


def body_of(review: dict[str, Any], rng: random.Random) -> bytes:
    data = json.dumps(review).encode()
    roll = rng.random()
    if roll < 0.01:
        return data[: rng.randrange(len(data))]
    if roll < 0.02:
        position = rng.randrange(len(data))
        return data[:position] + bytes([rng.randrange(256)]) + data[position + 1:]
    return data


# ---------------------------------------------------------------- the oracle

def must_deny(request: reviews.Request, parent: policy.Parent | None) -> str:
    """Why the policy has to deny this request ("" when the oracle does not require a denial)."""
    groups = request["userInfo"].get("groups", [])
    member = "sre" in groups
    if identity.trusted(request, SETTINGS) or request.get("subResource") not in (None, "", "scale"):
        return ""
    operation = request["operation"]
    if request.get("subResource") == "scale":
        if operation != "UPDATE" or parent is None or parent.obj is None:
            return ""
        old: Any = parent.obj
        new: Any = copy.deepcopy(old)
        if not isinstance(new.get("spec"), dict):
            new["spec"] = {}
        spec = (request.get("object") or {}).get("spec")
        replicas = spec.get("replicas", fields.MISSING) if isinstance(spec, dict) else fields.MISSING
        if replicas is fields.MISSING:
            new["spec"].pop("replicas", None)
        else:
            new["spec"]["replicas"] = replicas
    elif operation in ("UPDATE", "DELETE"):
        old, new = request.get("oldObject") or {}, request.get("object")
    else:
        return ""
    try:
        stamp = contract.read_stamp(old)
    except contract.ContractError:
        return "unreadable stamp"
    if stamp is None or stamp.enforcement != "deny":
        return ""
    grant = contract.annotations_of(old).get(contract.ANN_BREAK_GLASS_GRANTED)
    if member and grant is not None and (operation == "DELETE" or request.get("subResource") == "scale"):
        return ""  # a standing grant may cover it; the unit tables pin that down
    if operation == "DELETE":
        return "" if (old.get("metadata") or {}).get("deletionTimestamp") else "delete"
    if member and contract.annotations_of(new).get(contract.ANN_BREAK_GLASS, "").strip():
        return ""
    changed = [d.path_text for d in fields.diff(stamp.declared, new)
               if fields.canonical_json(_plain(fields.lookup(old, d.path))) != fields.canonical_json(_plain(d.actual))]
    return f"changes {', '.join(changed)}" if changed else ""


def _plain(value: object) -> object:
    return "<absent>" if value is fields.MISSING else value


# ---------------------------------------------------------------- main

def run(count: int, seed: int, *, verbose: bool = True) -> Counter[str]:
    rng = random.Random(seed)
    bases = manifests()
    tally: Counter[str] = Counter()
    for _ in range(count):
        enforcement: contract.Enforcement = rng.choice(["deny", "deny", "warn", "off"])
        old = live(copy.deepcopy(rng.choice(bases)), enforcement)
        if rng.random() < 0.2:
            mutate(old, rng)  # already drifted, or a damaged stamp
        new = copy.deepcopy(old)
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
            mutate(new, rng)
        body = body_of(envelope(rng, old, new), rng)
        parent = policy.Parent(old if rng.random() < 0.9 else None,
                               error="" if rng.random() < 0.95 else "timed out")
        try:
            review = reviews.parse_review(body)
        except reviews.BadReview:
            tally["bad request (400)"] += 1
            continue
        except Exception:
            tally["CRASH in parse_review"] += 1
            if verbose:
                traceback.print_exc()
            continue
        request = review["request"]
        try:
            verdict = policy.validate(request, SETTINGS, NOW, parent)
            policy.mutate(request, SETTINGS, NOW)
        except Exception:
            tally["CRASH in policy"] += 1
            if verbose:
                traceback.print_exc()
                print(json.dumps(review)[:2000], file=sys.stderr)
            continue
        tally[f"decided: {verdict.outcome}"] += 1
        why = must_deny(request, parent if request.get("subResource") == "scale" else None)
        if why and verdict.allowed and not parent.error:
            tally["ALLOWED A CHANGE TO A DECLARED FIELD"] += 1
            if verbose:
                print(f"allowed although the oracle says: {why}\n{json.dumps(review)[:2000]}", file=sys.stderr)
        elif why:
            tally["oracle-required denials, denied"] += 1
        if verdict.hint:
            wrong = suggest_line_problem(request, verdict, parent)
            tally["SUGGEST LINE WRONG" if wrong else "suggest lines read back to the request"] += 1
            if wrong and verbose:
                print(f"{wrong}\n{verdict.hint}\n{json.dumps(review)[:2000]}", file=sys.stderr)
    return tally


def suggest_line_problem(request: reviews.Request, verdict: policy.Verdict, parent: policy.Parent) -> str:
    """What is wrong with a verdict's ``driftguard suggest`` line ("" when nothing): it must be the message's last
    line (or the last warning), fit in a warning, never be given for a Secret, and read back — as a shell splits
    it, as suggest parses it — to exactly the values the request sets."""
    line = verdict.hint
    if (verdict.message.splitlines() or [""])[-1] != line and (verdict.warnings or ("",))[-1] != line:
        return "the line is not the message's last"
    if len(line) > messages.WARNING_LIMIT or "\n" in line:
        return "the line does not fit in one warning"
    old = (parent.obj if request.get("subResource") == "scale" else request.get("oldObject")) or {}
    stamp = contract.read_stamp(old)
    if old.get("kind") == "Secret" or stamp is None or stamp.sensitive:
        return "a line for a Secret or an unmanaged object"
    words = shlex.split(line, comments=True)
    new = request.get("object") or {}
    if words[:4] == ["driftguard", "suggest", "--", "scale"]:
        return "" if words[-1] == f"--replicas={(new.get('spec') or {}).get('replicas')}" else "the wrong replicas"
    if words[:3] == ["driftguard", "suggest", "--"]:
        section = {"label": "labels", "annotate": "annotations"}[words[3]]
        pairs = [w.split("=", 1) for w in words[7:]]
        given = ((new.get("metadata") or {}).get(section) or {})
        return "" if all(given.get(k) == v for k, v in pairs) else f"the wrong {section}"
    for i, word in enumerate(words):
        if word == "--set":
            path, value = suggestion.parse_set(words[i + 1])
            actual = fields.lookup(new, path)
            if not fields.scalar_equal(actual, value):
                return f"--set {words[i + 1]} reads back as {value!r}, the request sets {actual!r}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    tally = run(args.count, args.seed)
    elapsed = time.perf_counter() - started
    print(f"{args.count} inputs, seed {args.seed}, {elapsed:.0f}s ({args.count / elapsed:.0f}/s)")
    for key, value in sorted(tally.items()):
        print(f"  {key:<40} {value:>8}")
    crashes = sum(v for k, v in tally.items() if k.startswith("CRASH"))
    escapes = tally["ALLOWED A CHANGE TO A DECLARED FIELD"]
    wrong = tally["SUGGEST LINE WRONG"]
    print(f"crashes: {crashes}; declared-field changes allowed: {escapes}; wrong suggest lines: {wrong}")
    return 1 if crashes or escapes or wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
