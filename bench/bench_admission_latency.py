"""What the webhook adds to an API-server write, against no admission, a Go floor and a CEL policy.

    .venv/bin/python bench/bench_admission_latency.py            # 500 writes per case
    .venv/bin/python bench/bench_admission_latency.py -n 2000

One run, one kube-apiserver (driftguard's own control plane, started in a temp dir, which presents
its webhook client certificate as in local mode), four namespaces that differ only in admission:

* (a) ``none``    — no webhook or policy selects it;
* (b) ``floor``   — the Go floor webhook (``tools/floorwebhook``: standard-library TLS server that
  decodes the AdmissionReview and allows), registered exactly like driftguard's (both configurations);
* (c) ``cel``     — a ValidatingAdmissionPolicy doing a comparable identity check in-process
  (managed objects only; the reconciler passes, anyone else must leave ``spec.replicas`` as it was);
* (d) ``webhook`` — the driftguard webhook (``driftguard webhook`` as deployed, gunicorn over TLS with
  ``--client-ca-file`` as local mode runs it, registered by URL with ``registration.configurations``).

In each, the laptop user makes the same write: a merge patch of an undeclared label on a managed,
stamped Deployment (allowed everywhere, so every write reaches etcd). Writes go round-robin over
the three namespaces so drift in the machine's load hits all three alike. Reported: p50/p90/p99
of the client-observed latency, and the differences (b - a) and (c - a).
"""

from __future__ import annotations

import argparse
import http.client
import re
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_webhook import Server, add_server_arguments, interpreter, manifest
from floor import FloorServer

from driftguard.core import contract
from driftguard.kube import Kube, KubeError
from driftguard.local.controlplane import ControlPlane
from webhook import registration

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
SOURCE = contract.Source("https://github.com/org/k8s-manifests", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
                         "alice@org", "2024-05-01T10:00:00Z", "services/my-service/production/deployment.yaml")
CASES = ("none", "floor", "cel", "webhook")
FLOOR = "driftguard-floor"


def cel_policy(name: str, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                                   "resources": ["deployments"]}],
                "objectSelector": {"matchLabels": {contract.LABEL_MANAGED: "true"}},
            },
            "validations": [{
                "expression": "request.userInfo.username == 'system:serviceaccount:driftguard-system:"
                              "driftguard-reconciler' || object.spec.replicas == oldObject.spec.replicas",
                "message": "spec.replicas is declared in git",
            }],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}},
    }
    return policy, binding


def stamped(namespace: str) -> dict[str, Any]:
    body = manifest()
    body["metadata"]["namespace"] = namespace
    return contract.stamp(body, application="driftguard-system/my-service", source=SOURCE, enforcement="deny")


def write(laptop: Kube, namespace: str, value: int) -> float:
    started = time.perf_counter()
    laptop.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/my-service",
                   body={"metadata": {"labels": {"bench": str(value)}}}, content_type="application/merge-patch+json")
    return (time.perf_counter() - started) * 1000


def wait_for_policies(plane: ControlPlane, laptop: Kube, namespaces: dict[str, str]) -> None:
    """Every admission path actually called: driftguard and CEL deny a replicas change in their namespace
    (dry-run); the floor, which allows everything, shows up in the API server's webhook histogram."""
    for case in ("webhook", "cel", "floor"):
        deadline = time.monotonic() + 60
        while True:
            try:
                laptop.request("PATCH", f"/apis/apps/v1/namespaces/{namespaces[case]}/deployments/my-service",
                               body={"spec": {"replicas": 7}}, content_type="application/merge-patch+json",
                               query={"dryRun": "All"})
                if case == "floor" and any(name.startswith(f"validate.{FLOOR}") and count
                                           for (name, _), (count, _) in webhook_calls(plane).items()):
                    break
            except KubeError as error:
                if error.status in (403, 422):  # webhooks deny with 403, CEL policies with 422
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case}: admission never took effect")
            time.sleep(0.2)


def webhook_calls(plane: ControlPlane) -> dict[tuple[str, str], tuple[float, float]]:
    """(count, seconds) per (webhook, type) from the API server's own admission webhook histogram."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in apiserver_metrics(plane).splitlines():
        match = re.match(r"apiserver_admission_webhook_admission_duration_seconds_(count|sum)\{(.*)\} (\S+)", line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if labels.get("rejected") != "false":
            continue
        entry = found.setdefault((labels.get("name", ""), labels.get("type", "")), [0.0, 0.0])
        entry[0 if match[1] == "count" else 1] += float(match[3])
    return {key: (value[0], value[1]) for key, value in found.items()}


def apiserver_metrics(plane: ControlPlane) -> str:
    """``/metrics`` as text (driftguard.kube speaks JSON only), with the admin client certificate."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    context.load_cert_chain(plane.pki / "admin.crt", plane.pki / "admin.key")
    url = urlsplit(plane.url)
    connection = http.client.HTTPSConnection(url.hostname or "127.0.0.1", url.port, context=context, timeout=10)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def app_timing(server: Server) -> tuple[float, float]:
    """(count, seconds) of the webhook's own request histogram: time inside the app, decode to encode."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", server.settings.port, context=context, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found = {kind: float(value) for kind, value in re.findall(
        r'^driftguard_webhook_request_seconds_(count|sum)\{webhook="validate"\} (\S+)$', text, re.M)}
    return found.get("count", 0.0), found.get("sum", 0.0)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[89], cuts[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--writes", type=int, default=500, help="writes per case")
    parser.add_argument("--worker-class", choices=("event", "gthread"), default="event",
                        help="gthread: gunicorn's own worker, without caller authentication (the 'before')")
    add_server_arguments(parser)
    args = parser.parse_args()
    print(f"server interpreter: {interpreter(args.server_venv)}")
    with tempfile.TemporaryDirectory(prefix="driftguard-admission-bench-") as tmp:
        directory = Path(tmp)
        plane = ControlPlane(directory / "controlplane").start()
        webhook_dir = directory / "webhook"
        webhook_dir.mkdir()
        extra = {"client_ca_file": plane.webhook_client_ca_file} if args.worker_class == "event" else {}
        server = Server(webhook_dir, args.server_venv, worker_class=args.worker_class, **extra)
        floor = FloorServer(directory / "floor")
        admin, laptop = Kube(plane.admin_kubeconfig), Kube(plane.laptop_kubeconfig)
        try:
            namespaces = {case: f"bench-{case}" for case in CASES}
            for namespace in namespaces.values():
                admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
                admin.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=stamped(namespace))
            for case, name, url, ca in (
                    ("webhook", registration.NAME, f"https://127.0.0.1:{server.settings.port}", server.ca_file),
                    ("floor", FLOOR, floor.base_url, floor.ca_file)):
                selector = {"matchLabels": {"kubernetes.io/metadata.name": namespaces[case]}}
                client = registration.url_client(url, ca.read_bytes())
                for config, kind in zip(registration.configurations(client, name=name, namespace_selector=selector),
                                        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
                                        strict=True):
                    admin.request("POST", f"{ADMISSION}/{kind}", body=config)
            policy, binding = cel_policy("driftguard-bench", namespaces["cel"])
            admin.request("POST", f"{ADMISSION}/validatingadmissionpolicies", body=policy)
            admin.request("POST", f"{ADMISSION}/validatingadmissionpolicybindings", body=binding)
            wait_for_policies(plane, laptop, namespaces)

            samples: dict[str, list[float]] = {case: [] for case in CASES}
            for i in range(50):  # warm-up: connections, caches
                for case in CASES:
                    write(laptop, namespaces[case], 100_000 + i)
            before = webhook_calls(plane)
            cpu_before = {"webhook": server.cpu_seconds(), "floor": floor.cpu_seconds()}
            app_before = app_timing(server)
            for i in range(args.writes):
                for case in CASES:
                    samples[case].append(write(laptop, namespaces[case], i))
            app_after = app_timing(server)
            cpu = {"webhook": server.cpu_seconds() - cpu_before["webhook"],
                   "floor": floor.cpu_seconds() - cpu_before["floor"]}
            calls = {key: (value[0] - before.get(key, (0.0, 0.0))[0], value[1] - before.get(key, (0.0, 0.0))[1])
                     for key, value in webhook_calls(plane).items()}
        finally:
            admin.close()
            laptop.close()
            server.stop()
            floor.stop()
            plane.stop()

    print(f"{args.writes} writes per case, round-robin; client: driftguard.kube (Python) as the laptop user; "
          f"driftguard worker class {args.worker_class}")
    print(f"{'admission':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    stats = {case: percentiles(samples[case]) for case in CASES}
    for case in CASES:
        print(f"{case:<10} {stats[case][0]:>8.2f} {stats[case][1]:>8.2f} {stats[case][2]:>8.2f}")
    for (name, kind), (count, seconds) in sorted(calls.items()):
        if count:
            print(f"apiserver's own timing of webhook {name} ({kind}): {count:.0f} calls, "
                  f"mean {seconds / count * 1000:.2f} ms")
    in_app = (app_after[1] - app_before[1]) / max(1.0, app_after[0] - app_before[0])
    print(f"driftguard's own timing inside the app (decode, decide, encode): mean {in_app * 1000:.2f} ms")
    added = {case: [stats[case][k] - stats["none"][k] for k in range(3)] for case in CASES[1:]}
    for case, label in (("floor", "(b - a) Go floor adds"), ("cel", "(c - a) CEL policy adds"),
                        ("webhook", "(d - a) driftguard adds")):
        print(f"{label:<26} p50 {added[case][0]:+.2f} ms, p90 {added[case][1]:+.2f} ms, p99 {added[case][2]:+.2f} ms")
    floor_p50, own_p50 = added["floor"][0], added["webhook"][0]
    print("driftguard / Go floor added p50: " + (f"{own_p50 / floor_p50:.2f}x" if floor_p50 > 0 else "n/a"))
    own_p99 = added["webhook"][2]
    print("driftguard added p99 / its added p50: " + (f"{own_p99 / own_p50:.1f}x" if own_p50 > 0 else "n/a"))
    for case, domain in (("webhook", "driftguard.io"), ("floor", f"{FLOOR}.io")):
        reviews = sum(count for (name, _), (count, _) in calls.items() if name.split(".", 1)[-1] == domain)
        if reviews:
            print(f"server CPU per review, {case}: {cpu[case] / reviews * 1e6:.0f} us ({reviews:.0f} reviews)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
