"""Commit → applied latency, by push (POST /refresh) and by polling (refreshInterval, default 3 s).

    .venv/bin/python bench/bench_reconciler_latency.py [--push 40] [--poll 20] [--interval 3s]

Each sample commits a new value for one ConfigMap and measures from the commit to the moment a watch
sees the API server report the new value. Push samples POST /refresh/<ns>/<app> right after the
commit, as a git host's webhook would. Polling samples commit at a random moment of the poll cycle.
Targets: p50 ≤ 0.5 s push, ≤ 2 s polling.
"""

from __future__ import annotations

import random
import time

from reconciler_bench import (
    Repo,
    Watcher,
    configmap,
    create_namespace,
    environment,
    field_is,
    make_app,
    parser,
    reconciler,
    summary,
    synced,
    wait,
)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--push", type=int, default=40, help="push samples")
    p.add_argument("--poll", type=int, default=20, help="polling samples")
    p.add_argument("--interval", default="3s", help="the polling Application's refreshInterval")
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, "bench-latency")
        repos = {}
        for mode in ("push", "poll"):
            repo = repos[mode] = Repo.create(scratch / f"repo-{mode}")
            repo.write("app/cm.yaml", [configmap(mode, {"n": "0"}), configmap(f"{mode}-other", {"k": "v"})])
            repo.commit("initial")
        watcher = Watcher(kubeconfig, ns).start()
        with reconciler(kubeconfig, ns, scratch) as rec:
            make_app(admin, ns, "push", repos["push"], ns, refreshInterval="1h")
            make_app(admin, ns, "poll", repos["poll"], ns, refreshInterval=args.interval)
            for name in ("push", "poll"):
                wait(synced(admin, ns, name), 30, name)
            results = {}
            for mode, count in (("push", args.push), ("poll", args.poll)):
                repo, samples = repos[mode], []
                for i in range(1, count + 1):
                    if mode == "poll":
                        time.sleep(random.uniform(0, 3.0))
                    repo.write("app/cm.yaml", [configmap(mode, {"n": str(i)}), configmap(f"{mode}-other", {"k": "v"})])
                    repo.commit(f"n={i}")
                    started = time.monotonic()
                    if mode == "push":
                        rec.refresh(ns, "push")
                    seen = watcher.wait(mode, field_is("n", str(i)), timeout=30)
                    samples.append(seen - started)
                    time.sleep(0.05)
                results[mode] = samples
        print("commit → applied (from the commit to the API server reporting the new value)")
        print(f"  push (POST /refresh):           {summary(results['push'])}   target p50 ≤ 500 ms")
        print(f"  polling (refreshInterval {args.interval}):  {summary(results['poll'])}   target p50 ≤ 2000 ms")


if __name__ == "__main__":
    main()
