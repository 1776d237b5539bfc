"""Webhook configuration deleted or altered → restored by the reconciler.

    .venv/bin/python bench/bench_perimeter.py [--samples 20]

The registration is written by the installer's ``register_webhook`` (the ConfigMap the reconciler
restores from, then both configurations; their webhooks select no namespace, so nothing else is
affected). Each sample, as an admin (writes to webhook configurations reach no webhook): delete the
ValidatingWebhookConfiguration and time until it exists again (a new uid), or set one webhook's
``failurePolicy`` to ``Ignore`` and time until it reads ``Fail`` again. The reconciler runs as its own
process with the admin's kubeconfig and ``--no-leader-elect``; it learns of each change through its
watch (``--perimeter-interval`` is the safety net behind it, 10 s). A deleted configuration is re-created
only once it has been missing for ``--perimeter-settle`` (3 s: an uninstall deletes the webhook's Service
next). Target: p99 ≤ 2 s past that ("within seconds").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciler_bench import create_namespace, environment, parser, reconciler, summary, wait

from certs.authority import CertificateAuthority
from driftguard import install
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster
from webhook import registration

PATH = "/apis/admissionregistration.k8s.io/v1/{kind}/driftguard"
NOWHERE = {"matchLabels": {"driftguard-bench/perimeter": "never"}}


def recreated(admin: Kube, uid: str) -> Callable[[], bool]:
    """A ``wait`` probe: the ValidatingWebhookConfiguration is there again, as another object than ``uid``."""
    def again() -> bool:
        found = live(admin, "validatingwebhookconfigurations")
        return found is not None and found["metadata"]["uid"] != uid
    return again


def live(admin: Kube, kind: str) -> dict[str, Any] | None:
    try:
        return admin.request("GET", PATH.format(kind=kind))
    except KubeError as e:
        if e.status == 404:
            return None
        raise


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--samples", type=int, default=20, help="of each: deleted, altered")
    args = p.parse_args()
    with environment(args) as (kubeconfig, admin, scratch):
        create_namespace(admin, "driftguard-system")
        ns = create_namespace(admin, "bench-perimeter")
        client = registration.url_client("https://127.0.0.1:1", CertificateAuthority.generate().cert_pem)
        install.register_webhook(Cluster(admin, field_manager=install.INSTALL_MANAGER), client,
                                 namespace_selector=NOWHERE)
        deleted: list[float] = []
        altered: list[float] = []
        with reconciler(kubeconfig, ns, scratch) as rec:
            time.sleep(1.0)  # its watches are open
            for _ in range(args.samples):
                uid = live(admin, "validatingwebhookconfigurations")["metadata"]["uid"]  # type: ignore[index]
                admin.request("DELETE", PATH.format(kind="validatingwebhookconfigurations"))
                gone = time.monotonic()
                wait(recreated(admin, uid), 30, "re-created", interval=0.005)
                deleted.append(time.monotonic() - gone)
                admin.request("PATCH", PATH.format(kind="mutatingwebhookconfigurations"),
                              body=[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}],
                              content_type="application/json-patch+json")
                changed = time.monotonic()
                wait(lambda: (live(admin, "mutatingwebhookconfigurations") or {"webhooks": [{}]})
                     ["webhooks"][0].get("failurePolicy") == "Fail", 30, "restored", interval=0.005)
                altered.append(time.monotonic() - changed)
                time.sleep(0.2)
            metrics = rec.metrics()
        restored = {k: v for k, v in metrics.items() if k.startswith("driftguard_perimeter_restored_total")}
        print("webhook configuration restored by the reconciler (watch-driven)")
        print(f"  deleted ValidatingWebhookConfiguration → re-created: {summary(deleted)}")
        print(f"  failurePolicy set to Ignore → Fail again:             {summary(altered)}")
        counted = ", ".join(f"{k[36:]}={v:.0f}" for k, v in sorted(restored.items()))
        print(f"  target p99 ≤ 2000 ms (deleted: past the 3000 ms settle time); counted: {counted}")


if __name__ == "__main__":
    main()
