"""First sync of N objects, then a no-op resync of them, and the reconciler's memory.

    .venv/bin/python bench/bench_reconciler_sync.py --objects 1000      # first sync target ≤ 20 s
    .venv/bin/python bench/bench_reconciler_sync.py --objects 10000     # no-op resync ≤ 10 s, RSS ≤ 250 MiB

1. *First sync*: N ConfigMaps (100 per file) committed; the clock starts when the Application is
   created and stops when its status says Synced with N objects in the inventory (all N exist).
2. *No-op resync*: POST /refresh forces a full sync of the unchanged revision (render from cache,
   compare every object); the clock stops when the reconciler reports the cycle done. Writes are
   counted two ways: every object's resourceVersion before and after (must be identical), and the
   reconciler's own request counters (apply, dry-run apply, patch, delete, create).
   During the first sync three things are read before and after: the reconciler's request counters,
   the API server's own (its /metrics: apiserver_request_total by verb and resource,
   apiserver_request_duration_seconds by verb) and the CPU the reconciler, etcd, kube-apiserver and this
   benchmark used (/proc), with the load average: what the sync asked of the API server per object, how
   long it took to answer, and whether the 2 cores were the limit (this benchmark's own reads of the
   Application and its watch are among the requests, by resource).
3. *Memory*: the reconciler process's RSS (and peak) from /proc, with N objects managed.
"""

from __future__ import annotations

import os
import time

from reconciler_bench import (
    PLANE_PIDS,
    ApiServerCounts,
    Repo,
    Watcher,
    app_status,
    bulk,
    cpu_seconds,
    create_namespace,
    environment,
    make_app,
    parser,
    reconciler,
    wait,
    warm_up,
)

WRITES = ("apply", "apply-dry-run", "patch", "delete", "create", "update")


def versions(admin: object, ns: str) -> dict[str, str]:
    out: dict[str, str] = {}
    query = {"limit": "1000", "labelSelector": "driftguard.io/managed=true"}
    while True:
        body = admin.request("GET", f"/api/v1/namespaces/{ns}/configmaps", query=query)  # type: ignore[attr-defined]
        out.update({i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in body["items"]})
        token = body["metadata"].get("continue")
        if not token:
            return out
        query = {**query, "continue": token}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--objects", type=int, default=1000)
    p.add_argument("--resyncs", type=int, default=3, help="forced no-op resyncs to time")
    args = p.parse_args()
    n = args.objects
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, f"bench-sync-{n}")
        repo = Repo.create(scratch / "repo")
        bulk(repo, n)
        sha = repo.commit(f"{n} ConfigMaps")
        watcher = Watcher(kubeconfig, ns).start()
        with reconciler(kubeconfig, ns, scratch) as rec:
            warm_up(admin, ns, scratch)
            idle_rss, _ = rec.rss_mib()
            served_before, own_before = ApiServerCounts.read(admin), rec.requests()
            pids = {"reconciler": rec.process.pid, **PLANE_PIDS, "this benchmark": os.getpid()}
            cpu_before = cpu_seconds(pids)
            started = time.monotonic()
            make_app(admin, ns, "bulk", repo, ns, refreshInterval="1h")

            def synced() -> dict[str, object] | None:
                status = app_status(admin, ns, "bulk")
                ok = status.get("sync", {}).get("revision") == sha and status.get("sync", {}).get("status") == "Synced"
                return status if ok and status.get("inventoryCount") == n else None

            # Watch (cheaply, locally) until every object exists; only then read the Application, whose
            # status holds the n-entry inventory: polling it meanwhile would load the 2 cores we measure.
            wait(lambda: watcher.count(lambda data: "index" in data) >= n, max(120.0, n / 20), "all objects",
                 interval=0.05)
            status = wait(synced, 60, "the first sync", interval=0.05)
            first = time.monotonic() - started
            cpu = {name: used - cpu_before[name] for name, used in cpu_seconds(pids).items()}
            served = ApiServerCounts.read(admin).since(served_before)
            own = {verb: count - own_before.get(verb, 0) for verb, count in rec.requests().items()
                   if count > own_before.get(verb, 0)}
            existing = watcher.count(lambda data: "index" in data)
            rss_after_first = rec.rss_mib()

            before = versions(admin, ns)
            counts_before = rec.requests()
            resyncs = []
            for _ in range(args.resyncs):
                done_before = app_status(admin, ns, "bulk").get("lastSyncTime")
                cycles = rec.synced_cycles()
                started = time.monotonic()
                rec.refresh(ns, "bulk")
                wait(rec.cycled_past(cycles), 120, "the resync", interval=0.02)
                resyncs.append((time.monotonic() - started, app_status(admin, ns, "bulk")["lastSyncDuration"]))
                time.sleep(1.0)
                assert done_before is not None
            counts_after = rec.requests()
            after = versions(admin, ns)
            time.sleep(2.0)
            rss_now, rss_peak = rec.rss_mib()

        changed = sum(1 for k, v in before.items() if after.get(k) != v)
        delta = {verb: counts_after.get(verb, 0) - counts_before.get(verb, 0) for verb in sorted(counts_after)}
        writes = {verb: delta.get(verb, 0) for verb in WRITES}
        print(f"first sync of {n} ConfigMaps: {first:.2f} s (Application created → status Synced; "
              f"{existing} seen by the watch; reconciler's own cycle {status['lastSyncDuration']})")
        print(f"  the reconciler's own requests during it: {own} ({sum(own.values()) / n:.2f} per object)")
        print("\n".join(served.lines(n)))
        print(f"  CPU used meanwhile: {sum(cpu.values()):.2f} s in all, {sum(cpu.values()) / first:.2f} cores busy "
              f"of {os.cpu_count()} ({'; '.join(f'{name} {s:.2f} s' for name, s in cpu.items())}); "
              f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for wall, own in resyncs:
            print(f"no-op resync of {n}: {wall:.2f} s (POST /refresh → cycle done; reconciler's own cycle {own})")
        print(f"  objects whose resourceVersion changed: {changed} of {len(before)}")
        print(f"  writes to objects during {len(resyncs)} resyncs: {writes}")
        print(f"  all API requests during the resyncs: {delta}")
        print(f"reconciler RSS: idle {idle_rss:.0f} MiB; after first sync {rss_after_first[0]:.0f} MiB; "
              f"now {rss_now:.0f} MiB; peak {rss_peak:.0f} MiB  (target ≤ 250 MiB at 10,000 objects)")


if __name__ == "__main__":
    main()
