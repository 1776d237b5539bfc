"""What spec.ignoreDifferences costs the two compares: the webhook's decision and the reconciler's plan, in-process.

    .venv/bin/python bench/bench_ignore.py [--rounds 2000]

For one Deployment (two containers, the admission tests' object) stamped with no rules, a JSON pointer, a jq
expression and a managedFields manager, times ``webhook.policy.validate`` of an UPDATE that changes only an
ignored field (``spec.replicas``) and ``reconciler.plan.plan`` of a live object with that field drifted, and
prints the median of five runs of ``--rounds`` calls each, per call. No API server: this is the decision
alone (a jq rule evaluates libjq once per side — git's, new, old — which is its extra cost).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.admission import MARKS, NOW, SETTINGS, SOURCE, deployment_manifest, edited, live, review

from driftguard.core import contract
from driftguard.core.ignore import Ignore
from driftguard.core.objects import ObjectRef
from reconciler.desired import Desired
from reconciler.plan import plan
from webhook import policy

RULES = {
    "none": Ignore(),
    "jsonPointers": Ignore(("/spec/replicas",)),
    "jqPathExpressions": Ignore((), ('.spec | select(has("replicas")) | .replicas',)),
    "managedFieldsManagers": Ignore((), (), ("hpa-controller",)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'rules':24s} {'webhook validate':>18s} {'reconciler plan':>18s}")
    for name, rules in RULES.items():
        stamped = contract.stamp(deployment_manifest(), application="driftguard-system/my-service", source=SOURCE,
                                 enforcement="deny", ignore=rules)
        old = live()
        old["metadata"]["annotations"] = stamped["metadata"]["annotations"]
        new = edited(old, "spec", "replicas", 9)
        new["metadata"]["managedFields"] = [{"manager": "hpa-controller", "operation": "Update",
                                             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        request = review("UPDATE", old=old, new=new)["request"]
        expected = "deny" if name == "none" else "allow"
        assert policy.validate(request, SETTINGS, NOW, marks=MARKS).outcome == expected, name
        desired = Desired(ref=ObjectRef.of(stamped), api_version="apps/v1", obj=stamped,
                          declared=contract.decode_declared(stamped["metadata"]["annotations"][contract.ANN_DECLARED]),
                          line=1, ignore=rules)
        webhook = _per_call(functools.partial(policy.validate, request, SETTINGS, NOW, marks=MARKS), args.rounds)
        reconciler = _per_call(functools.partial(plan, desired, new, now=NOW, marks=MARKS), args.rounds)
        print(f"{name:24s} {webhook:15.1f} µs {reconciler:15.1f} µs")


def _per_call(call: Callable[[], object], rounds: int) -> float:
    runs = [timeit.timeit(call, number=rounds) / rounds * 1e6 for _ in range(5)]
    return statistics.median(runs)


if __name__ == "__main__":
    main()
