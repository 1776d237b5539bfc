"""Rendering: tool runs cold and warm, a no-op resync of a 10,000-object Kustomize app, memory under bombs.

    .venv/bin/python bench/bench_render.py                 # --objects 10000 by default

1. *Tool runs* (no cluster): ``reconciler.renderer`` renders a Kustomize overlay (a base of 100
   ConfigMaps, namePrefix, an image override) and a Helm chart (100 ConfigMaps from a range) six times
   each: the first run (cold: binary not in the page cache yet) and the median of the rest.
2. *Cached*: a Kustomize app of N ConfigMaps (100 per file) synced by a real ``driftguard reconcile``
   against a real API server; then forced no-op resyncs (POST /refresh). Renders are counted from the
   reconciler's own ``driftguard_render_duration_seconds`` histogram: the first sync renders once, a
   resync of the same revision and spec renders nothing. Writes are counted as in bench_reconciler_sync.
3. *OCI* (no cluster): a real registry (the CNCF distribution registry, TLS and htpasswd auth, on loopback)
   holding a chart of 100 ConfigMaps pushed by ``helm push``; resolving (tag list + manifest digest) cold and
   warm, pulling by digest (``helm pull``) cold, then from the digest cache, and the render after it.
4. *Bombs*: a fresh reconciler process is given, one after the other, a kustomization whose resource is a
   YAML alias bomb, a 50 MB manifest, a 20,000-deep nested manifest and a Jsonnet file that loops; each
   must end in a RenderReady condition. Its peak RSS (VmHWM) is reported against the 512 MiB limit of the
   reconciler's container.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_reconciler_sync import WRITES, versions
from reconciler_bench import (
    Reconciler,
    Repo,
    app_status,
    configmap,
    create_namespace,
    environment,
    make_app,
    parser,
    reconciler,
    wait,
    warm_up,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.oci_registry import OCIRegistry

from certs import CertificateAuthority
from driftguard.local.controlplane.binaries import resolve_render_tools
from reconciler.chartsource import unpack_archive
from reconciler.gitsource import Credentials
from reconciler.ociref import parse_reference
from reconciler.ocisource import OCISource
from reconciler.renderer import Renderer, RenderTools
from reconciler.sources import Kind, parse_options

BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))


def tool_args() -> list[str]:
    return [arg for tool, path in resolve_render_tools().items() for arg in (f"--{tool}", str(path))]


def tool_runs() -> None:
    renderer = Renderer(RenderTools({k: str(v) for k, v in resolve_render_tools().items()}))
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch)
        repo = Repo.create(tree / "r")
        repo.write("base/cms.yaml", [configmap(f"cm-{i:03d}", {"i": str(i)}) for i in range(100)])
        (repo.path / "base/kustomization.yaml").write_text("resources: [cms.yaml]\n")
        (repo.path / "prod").mkdir()
        (repo.path / "prod/kustomization.yaml").write_text("resources: [../base]\nnamePrefix: prod-\n"
                                                         "images: [{name: nginx, newTag: '1.27'}]\n")
        (repo.path / "chart/templates").mkdir(parents=True)
        (repo.path / "chart/Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
        (repo.path / "chart/values.yaml").write_text("count: 100\n")
        (repo.path / "chart/templates/cms.yaml").write_text(
            "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: cm-{{ $i }}}\ndata: {i: {{ $i | quote }}}\n{{- end }}\n")
        paths = [str(p.relative_to(repo.path)) for p in repo.path.rglob("*") if p.is_file() and ".git" not in p.parts]
        cases: tuple[tuple[Kind, str], ...] = (("kustomize", "prod"), ("helm", "chart"))
        for kind, root in cases:
            times = []
            for _ in range(6):
                started = time.perf_counter()
                rendered = renderer.render(kind, repo.path, root, parse_options({}, []), release="r", namespace="ns",
                                           paths=paths)
                times.append(time.perf_counter() - started)
                assert len(rendered.manifests) == 100
            print(f"{rendered.by}: 100 objects; first run {times[0] * 1000:.0f} ms, then median "
                  f"{statistics.median(times[1:]) * 1000:.0f} ms (one tool process per render)")


def oci() -> None:
    renderer = Renderer(RenderTools({k: str(v) for k, v in resolve_render_tools().items()}))
    ca = CertificateAuthority.generate("bench-oci-ca")
    template = ("{{- range $i := until 100 }}\n---\napiVersion: v1\nkind: ConfigMap\n"
                "metadata: {name: cm-{{ $i }}}\ndata: {i: {{ $i | quote }}}\n{{- end }}\n")
    with tempfile.TemporaryDirectory() as scratch, OCIRegistry(Path(scratch) / "registry", ca=ca,
                                                                 users={"bench": "bench-pw"}) as registry:
        registry.login("bench")
        for minor in range(20):  # a tag list worth listing
            registry.push("bulk", f"1.{minor}.0", template)
        ref = parse_reference(f"oci://{registry.host}/charts", "bulk")
        creds = Credentials(username="bench", token="bench-pw", ca=ca.cert_pem.decode())
        source = OCISource()
        times = []
        for _ in range(6):
            started = time.perf_counter()
            found = source.find(ref, "^1.0", creds)
            times.append(time.perf_counter() - started)
        assert found.version == "1.19.0"
        print(f"OCI resolve of ^1.0 over 20 tags (tag list + manifest HEAD, TLS, Basic auth): first "
              f"{times[0] * 1000:.0f} ms, then median {statistics.median(times[1:]) * 1000:.0f} ms")

        def pull(f: Any) -> bytes:
            return renderer.pull_chart(ref.url, f.digest, registry_config=source.registry_config(ref, creds),
                                       ca=creds.ca)
        started = time.perf_counter()
        source.archive(found, pull)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(5):
            started = time.perf_counter()
            data = source.archive(found, pull)
            warm.append(time.perf_counter() - started)
        print(f"OCI pull by digest (helm pull): cold {cold * 1000:.0f} ms; cached by digest: median "
              f"{statistics.median(warm) * 1e6:.0f} µs ({len(data)} bytes)")
        renders_ = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as tree:
                started = time.perf_counter()
                name = unpack_archive(data, Path(tree), "bulk", ref.url)
                rendered = renderer.render("helm", Path(tree), name, parse_options({}, []), release="r",
                                           namespace="ns", paths=[])
                renders_.append(time.perf_counter() - started)
        assert len(rendered.manifests) == 100
        print(f"  then unpack + helm template of the cached chart (100 objects): median "
              f"{statistics.median(renders_) * 1000:.0f} ms")


def renders(rec: Reconciler) -> float:
    return sum(v for k, v in rec.metrics().items() if k.startswith("driftguard_render_duration_seconds_count"))


def cached(args: Any) -> None:
    n = args.objects
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, f"bench-render-{n}")
        repo = Repo.create(scratch / "repo")
        files = []
        for start in range(0, n, 100):
            name = f"part-{start // 100:04d}.yaml"
            repo.write(f"app/{name}", [configmap(f"cm-{i:05d}", {"index": str(i), "payload": "x" * 64})
                                       for i in range(start, min(n, start + 100))])
            files.append(name)
        (repo.path / "app/kustomization.yaml").write_text("resources:\n" + "".join(f"- {f}\n" for f in files))
        sha = repo.commit(f"{n} ConfigMaps through kustomize")
        # kustomize itself is superlinear in resources (v5.8.1 here: 3,000 in ~5 s, 10,000 in ~165 s): the
        # first render of a 10,000-object kustomization needs more than the default 60 s.
        with reconciler(kubeconfig, ns, scratch, *tool_args(), "--render-timeout", "900s") as rec:
            warm_up(admin, ns, scratch)
            started = time.monotonic()
            make_app(admin, ns, "bulk", repo, ns, refreshInterval="1h")

            def synced() -> dict[str, Any] | None:
                status = app_status(admin, ns, "bulk")
                sync = status.get("sync", {})
                ok = sync.get("revision") == sha and sync.get("status") == "Synced"
                return status if ok and status.get("inventoryCount") == n else None
            status = wait(synced, max(300.0, n / 10) + 900, "the first sync", interval=0.5)
            first = time.monotonic() - started
            renders_first = renders(rec)
            before, counts_before = versions(admin, ns), rec.requests()
            walls = []
            for _ in range(args.resyncs):
                cycles = rec.synced_cycles()
                started = time.monotonic()
                rec.refresh(ns, "bulk")
                wait(rec.cycled_past(cycles), 120, "the resync", interval=0.02)
                walls.append((time.monotonic() - started, app_status(admin, ns, "bulk")["lastSyncDuration"]))
                time.sleep(1.0)
            counts_after, after = rec.requests(), versions(admin, ns)
            renders_after = renders(rec)
        changed = sum(1 for k, v in before.items() if after.get(k) != v)
        delta = {verb: counts_after.get(verb, 0) - counts_before.get(verb, 0) for verb in WRITES}
        print(f"first sync of {n} ConfigMaps from kustomize ({status['sync'].get('renderedBy')}): {first:.1f} s, "
              f"{renders_first:.0f} render(s)")
        for wall, own in walls:
            print(f"no-op resync of {n}: {wall:.2f} s (POST /refresh → cycle done; own cycle {own})  target ≤ 10 s")
        print(f"  renders during {len(walls)} resyncs: {renders_after - renders_first:.0f}; objects changed: "
              f"{changed}; writes: {delta}")


def bombs(args: Any) -> None:
    with environment(args) as (kubeconfig, admin, scratch):
        ns = create_namespace(admin, "bench-render-bombs")
        repo = Repo.create(scratch / "repo")
        repo.write("app/cm.yaml", [configmap("alpha", {"k": "v"})])
        good = repo.commit("good")
        deep = "a: " + "[" * 20000 + "]" * 20000 + "\n"
        cases = [
            ("alias bomb in a kustomize resource", {"app/kustomization.yaml": "resources: [bomb.yaml]\n",
                                                    "app/bomb.yaml": BOMB}, "RenderFailed"),
            ("alias bomb in a plain manifest", {"app/bomb.yaml": BOMB}, "InvalidManifest"),
            ("20,000-deep nesting", {"app/deep.yaml": deep}, "InvalidManifest"),
            ("50 MB manifest", {"app/big.yaml": "a: " + "x" * (50 * 1024 * 1024) + "\n"}, "TooLarge"),
            ("jsonnet that never ends", {"app/loop.jsonnet": "local f(x) = f(x + 1); f(0)"}, "RenderFailed"),
        ]
        with reconciler(kubeconfig, ns, scratch, *tool_args(), "--render-timeout", "20s") as rec:
            make_app(admin, ns, "svc", repo, ns, refreshInterval="1h")
            wait(lambda: app_status(admin, ns, "svc").get("sync", {}).get("revision") == good, 60, "the first sync")
            idle = rec.rss_mib()[0]
            for what, files, reason in cases:
                for stale in (repo.path / "app").iterdir():
                    if stale.name != "cm.yaml":
                        stale.unlink()
                for path, text in files.items():
                    (repo.path / path).write_text(text)
                sha = repo.commit(what)
                started = time.monotonic()
                rec.refresh(ns, "svc")

                def refused(s: str = sha, r: str = reason) -> dict[str, Any] | None:
                    conditions = app_status(admin, ns, "svc").get("conditions") or []
                    found = [c for c in conditions if c.get("reason") == r and s[:7] in c.get("message", "")]
                    return found[0] if found else None
                condition = wait(refused, 120, what, interval=0.1)
                print(f"{what}: refused in {time.monotonic() - started:.1f} s ({condition['reason']}: "
                      f"{condition['message'][:90]}…); reconciler RSS now {rec.rss_mib()[0]:.0f} MiB")
            assert (app_status(admin, ns, "svc").get("inventoryCount") or 0) == 1, "nothing pruned"
            peak = rec.rss_mib()[1]
        print(f"reconciler RSS: idle {idle:.0f} MiB, peak over every bomb {peak:.0f} MiB (VmHWM)  target < 512 MiB")



def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--objects", type=int, default=10000)
    p.add_argument("--resyncs", type=int, default=3)
    p.add_argument("--only", choices=("tools", "oci", "cached", "bombs"), default=None)
    args = p.parse_args()
    for part, run in (("tools", tool_runs), ("oci", oci), ("cached", lambda: cached(args)),
                      ("bombs", lambda: bombs(args))):
        if args.only in (None, part):
            run()


if __name__ == "__main__":
    main()
