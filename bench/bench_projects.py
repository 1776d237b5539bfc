"""What Projects cost the reconciler, and how fast a Project change takes effect.

    .venv/bin/python bench/bench_projects.py [--reads 500] [--samples 20]

1. The read a full sync makes: ``ProjectSource.get`` (one GET of the Application's Project; a no-op poll
   makes none), timed ``--reads`` times against a fresh API server.
2. A Project change → effective: one Application (one ConfigMap) synced under Project ``bench``; each
   sample, as an admin, blacklists ConfigMaps in the Project (or lifts the blacklist) and times until the
   Application's ``ProjectPermitted`` condition says so. Nothing else triggers a sync (refreshInterval 1h,
   no refresh): the reconciler hears the change through its watch of Projects. Target: p99 ≤ 2 s.
"""

from __future__ import annotations

import time

from reconciler_bench import (
    Repo,
    app_status,
    becomes,
    configmap,
    create_namespace,
    environment,
    make_app,
    parser,
    reconciler,
    summary,
    wait,
)

from driftguard.kube.resources import Cluster
from reconciler.projects import ProjectSource

MERGE = "application/merge-patch+json"


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--reads", type=int, default=500)
    p.add_argument("--samples", type=int, default=20)
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, "bench-projects")
        projects = f"/apis/driftguard.io/v1alpha1/namespaces/{ns}/projects"
        admin.request("POST", projects, body={
            "apiVersion": "driftguard.io/v1alpha1", "kind": "Project", "metadata": {"name": "bench"},
            "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": ns}]}})

        source = ProjectSource(Cluster(admin), ns, "driftguard-system")
        source.get("bench")  # connection set up
        reads = []
        for _ in range(args.reads):
            started = time.perf_counter()
            source.get("bench")
            reads.append(time.perf_counter() - started)
        print(f"  Project read (one GET per full sync): {summary(reads)}")

        repo = Repo.create(scratch / "repo")
        repo.write("app/cm.yaml", [configmap("settings", {"k": "v"})])
        repo.commit("one ConfigMap")
        make_app(admin, ns, "svc", repo, ns, project="bench", refreshInterval="1h")
        effective = []
        with reconciler(kubeconfig, ns, scratch):
            def permitted() -> str:
                found = [c for c in app_status(admin, ns, "svc").get("conditions") or []
                         if c["type"] == "ProjectPermitted"]
                return str(found[0]["status"]) if found else ""
            wait(lambda: permitted() == "True", 60, "first sync permitted")
            for i in range(args.samples):
                narrow = i % 2 == 0
                blacklist = [{"group": "", "kind": "ConfigMap"}] if narrow else []
                admin.request("PATCH", f"{projects}/bench", content_type=MERGE,
                              body={"spec": {"namespaceResourceBlacklist": blacklist}})
                changed = time.monotonic()
                want = "False" if narrow else "True"
                wait(becomes(permitted, want), 30, f"ProjectPermitted={want}", interval=0.005)
                effective.append(time.monotonic() - changed)
        print(f"  Project changed → effective (watch, no refresh): {summary(effective)}")


if __name__ == "__main__":
    main()
