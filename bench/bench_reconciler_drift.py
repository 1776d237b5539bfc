"""Drift → reverted: an out-of-band edit of a declared field, until git's value is back.

    .venv/bin/python bench/bench_reconciler_drift.py [--samples 200] [--background 1000]

Each sample merge-patches a declared field of a managed ConfigMap as another field manager
(``kubectl-edit``, like ``kubectl edit`` with no webhook in the way) and measures from the moment the
API server accepted the edit until a watch sees git's value again. ``--background`` managed objects of
the same kind share the watch (the realistic case: the reconciler watches every ConfigMap it owns).
Samples rotate over ``samples / 4`` target objects so no object is reverted more than 5 times a minute
(which the reconciler would rightly call a fight and back off from). Targets: p50 ≤ 0.5 s, p99 ≤ 2 s.
"""

from __future__ import annotations

import time

from reconciler_bench import (
    Repo,
    Watcher,
    app_status,
    bulk,
    configmap,
    create_namespace,
    environment,
    field_is,
    make_app,
    parser,
    reconciler,
    summary,
    wait,
)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--background", type=int, default=1000, help="other managed ConfigMaps")
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, "bench-drift")
        repo = Repo.create(scratch / "repo")
        bulk(repo, args.background)
        targets = [f"target-{i:02d}" for i in range(max(1, args.samples // 4))]  # ≤ 4 reverts each: no fight
        repo.write("app/target.yaml", [configmap(t, {"color": "blue"}) for t in targets])
        repo.commit("objects")
        watcher = Watcher(kubeconfig, ns).start()
        with reconciler(kubeconfig, ns, scratch) as rec:
            make_app(admin, ns, "drift", repo, ns)
            wait(lambda: app_status(admin, ns, "drift").get("sync", {}).get("status") == "Synced", 120, "sync")
            samples = []
            for i in range(args.samples):
                target = targets[i % len(targets)]
                admin.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/{target}",
                              body={"data": {"color": f"red-{i}"}}, content_type="application/merge-patch+json",
                              query={"fieldManager": "kubectl-edit"})
                accepted = time.monotonic()
                watcher.wait(target, field_is("color", f"red-{i}"), timeout=10)
                reverted = watcher.wait(target, field_is("color", "blue"), timeout=10)
                samples.append(reverted - accepted)
                time.sleep(0.05)
            metrics = rec.metrics()
        reverted_total = sum(v for k, v in metrics.items() if k.startswith("driftguard_drift_reverted_total"))
        fights = sum(v for k, v in metrics.items() if k.startswith("driftguard_fights_total"))
        print(f"drift → reverted ({args.background} other managed ConfigMaps watched alongside)")
        print(f"  {summary(samples)}   targets p50 ≤ 500 ms, p99 ≤ 2000 ms")
        print(f"  reverts counted by the reconciler: {reverted_total:.0f}; fights: {fights:.0f}")


if __name__ == "__main__":
    main()
