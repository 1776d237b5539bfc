"""API-server writes while 1,000 connections that never finish a TLS handshake are held on the webhook.

    .venv/bin/python bench/bench_flood.py                       # 1,000 trickling connections, 300 writes
    .venv/bin/python bench/bench_flood.py --mode idle           # connections that send nothing
    .venv/bin/python bench/bench_flood.py --worker-class gthread -n 20   # gunicorn's own worker: the "before"

One kube-apiserver (driftguard's own control plane, in a temp dir), the driftguard webhook as local
mode runs it (``--client-ca-file``: the API server presents its webhook client certificate), registered
for one namespace holding a managed Deployment. The laptop user's writes (an undeclared label, allowed,
so each reaches the webhook and etcd) are timed without a flood, then with ``support.flood.Flood``
holding ``--connections`` connections to the webhook port — a TLS record header, then one byte every 2 s
(``trickle``) or nothing (``idle``); the server closes them at its handshake deadline and the flood opens
them again. ``/healthz`` is timed alongside. The flood targets 127.0.0.1 only, is bounded in count and
time and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_admission_latency import ADMISSION, stamped, write  # noqa: E402
from bench_webhook import Server, add_server_arguments, interpreter  # noqa: E402
from support.flood import Flood  # noqa: E402

from driftguard.kube import Kube, KubeError  # noqa: E402
from driftguard.local.controlplane import ControlPlane  # noqa: E402
from webhook import registration  # noqa: E402

NAMESPACE = "bench-flood"


def timed_writes(laptop: Kube, count: int, offset: int) -> tuple[list[float], int]:
    samples, failures = [], 0
    for i in range(count):
        started = time.perf_counter()
        try:
            write(laptop, NAMESPACE, offset + i)
        except KubeError:
            failures += 1
        samples.append((time.perf_counter() - started) * 1000)
    return samples, failures


def healthz_ms(server: Server) -> float:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    started = time.perf_counter()
    connection = http.client.HTTPSConnection("127.0.0.1", server.settings.port, context=context, timeout=10)
    try:
        connection.request("GET", "/healthz")
        ok = connection.getresponse().read() == b"ok\n"
    except OSError:
        ok = False
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000 if ok else float("inf")


def summary(label: str, samples: list[float], failures: int) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else samples * 99
    return (f"{label:<34} {len(samples):>6} {failures:>7} {statistics.median(samples):>8.2f} {cuts[98]:>8.2f}"
            f" {max(samples):>9.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--writes", type=int, default=300)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--mode", choices=("trickle", "idle"), default="trickle")
    parser.add_argument("--worker-class", choices=("event", "gthread"), default="event")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds the flood lasts at least")
    add_server_arguments(parser)
    args = parser.parse_args()
    print(f"server interpreter: {interpreter(args.server_venv)}")
    with tempfile.TemporaryDirectory(prefix="driftguard-flood-bench-") as tmp:
        directory = Path(tmp)
        plane = ControlPlane(directory / "controlplane").start()
        (directory / "webhook").mkdir()
        extra = {"client_ca_file": plane.webhook_client_ca_file} if args.worker_class == "event" else {}
        server = Server(directory / "webhook", args.server_venv, worker_class=args.worker_class, **extra)
        admin, laptop = Kube(plane.admin_kubeconfig), Kube(plane.laptop_kubeconfig)
        try:
            admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
            admin.request("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", body=stamped(NAMESPACE))
            client = registration.url_client(f"https://127.0.0.1:{server.settings.port}", server.ca_file.read_bytes())
            selector = {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
            for config, kind in zip(registration.configurations(client, namespace_selector=selector),
                                    ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"), strict=True):
                admin.request("POST", f"{ADMISSION}/{kind}", body=config)
            time.sleep(2)  # the API server's informer picks the configurations up
            timed_writes(laptop, 30, 1_000_000)  # warm-up
            quiet, quiet_failed = timed_writes(laptop, args.writes, 0)
            health_quiet = [healthz_ms(server) for _ in range(20)]
            with Flood(server.settings.port, args.connections, mode=args.mode, seconds=600) as flood:
                flooded, flooded_failed = [], 0
                health: list[float] = []
                started, chunk = time.monotonic(), 0
                while chunk < 10 or time.monotonic() - started < args.hold:  # past the handshake deadline
                    chunk += 1
                    samples, failed = timed_writes(laptop, max(1, args.writes // 10), 10_000 * chunk)
                    flooded += samples
                    flooded_failed += failed
                    health.append(healthz_ms(server))
                held, reopened = flood.held or flood.opened, flood.reopened
        finally:
            admin.close()
            laptop.close()
            server.stop()
            plane.stop()
    print(f"worker class {args.worker_class}; flood: {args.connections} {args.mode} connections to 127.0.0.1 "
          f"(held {held}, reopened {reopened} after the server closed them)")
    print(f"{'API-server writes (laptop)':<34} {'writes':>6} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}")
    print(summary("no flood", quiet, quiet_failed))
    print(summary("during the flood", flooded, flooded_failed))
    print(summary("/healthz, no flood", health_quiet, sum(h == float("inf") for h in health_quiet)))
    finite = [h for h in health if h != float("inf")]
    if finite:
        print(summary("/healthz, during the flood", finite, len(health) - len(finite)))
    else:
        print(f"{'/healthz, during the flood':<34} {0:>6} {len(health):>7}  (no answer within 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
