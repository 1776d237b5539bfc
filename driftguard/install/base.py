"""Installing driftguard itself: the ``manifests/`` base, webhook TLS, and webhook registration.

One path serves local mode (a bare control plane) and ``driftguard certs install`` (a real
cluster): the kustomize base is read from ``manifests/kustomization.yaml`` (so there is one list
of what driftguard consists of), applied with server-side apply as field manager
``driftguard-install``, CRDs first and waited on until Established.

Two things a bare control plane lacks are done here explicitly and nowhere else:
ClusterRole aggregation (normally kube-controller-manager's job) for
``driftguard-reconciler``, and nothing more. It never deletes anything.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from certs.authority import CertificateAuthority, service_dns_names
from driftguard.core import ordering
from driftguard.core.manifests import Manifest, parse_documents
from driftguard.core.marks import MarkKey
from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube
from driftguard.kube.resources import Cluster, ResourceType
from reconciler import crd, perimeter
from webhook import registration

INSTALL_MANAGER: Final = "driftguard-install"
WEBHOOK_SERVICE: Final = "driftguard-webhook"
WEBHOOK_SECRET: Final = "driftguard-webhook-tls"  # noqa: S105 - a Secret's name, not a password
MARK_KEY_SECRET: Final = "driftguard-mark-key"  # noqa: S105 - key "key": hex; the webhook seals marks with it
REFRESH_TOKEN_SECRET: Final = "driftguard-refresh-token"  # noqa: S105 - key "token": POST /refresh's bearer token
UI_SERVICE: Final = "driftguard-ui"
UI_SECRET: Final = "driftguard-ui-tls"  # noqa: S105 - a Secret's name: the web UI's serving certificate
UI_SESSION_SECRET: Final = "driftguard-ui-session"  # noqa: S105 - key "key": signs the UI's session cookies
SECRETS: Final = ResourceType("", "v1", "Secret", "secrets", namespaced=True)
AGGREGATED_ROLE: Final = "driftguard-reconciler"
AGGREGATE_LABEL: Final = "driftguard.io/aggregate-to-reconciler"

Progress = Callable[[str], None]


class InstallError(RuntimeError):
    """Installing driftguard failed; the message names the object and what to do."""


def manifests_dir() -> Path:
    """The repository's ``manifests/`` (local mode and installs run from a checkout)."""
    return Path(__file__).resolve().parents[2] / "manifests"


def base_manifests(directory: Path | None = None) -> list[Manifest]:
    """Every object in the kustomize base, in kustomization.yaml's resource order."""
    directory = directory or manifests_dir()
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        out.extend(parse_documents((directory / resource).read_text(), f"manifests/{resource}"))
    return out


def apply_manifests(cluster: Cluster, manifests: Iterable[Manifest], *, progress: Progress | None = None,
                    timeout: float = 60.0) -> None:
    """Server-side apply in dependency order; wait for each CRD to be Established before going on."""
    for manifest in ordering.for_apply(manifests, lambda m: m.ref):
        cluster.apply(manifest.obj)
        if manifest.obj["kind"] == "CustomResourceDefinition":
            crd.wait_established(cluster, manifest.obj, timeout=timeout)
        if progress:
            progress(f"applied {manifest.ref}")


def aggregate_cluster_roles(kube: Kube) -> int:
    """Do what kube-controller-manager's aggregation controller does, for driftguard's role only.

    Returns the number of rules now in ``driftguard-reconciler``. Only needed on a control plane
    without kube-controller-manager (local mode, tests).
    """
    roles = kube.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                         query={"labelSelector": f"{AGGREGATE_LABEL}=true"})
    rules: list[dict[str, Any]] = []
    for role in sorted(roles.get("items", []), key=lambda r: r["metadata"]["name"]):
        rules.extend(r for r in role.get("rules") or [] if r not in rules)
    kube.request("PATCH", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{AGGREGATED_ROLE}",
                 body={"rules": rules}, content_type="application/merge-patch+json")
    return len(rules)


def webhook_tls_secret(ca: CertificateAuthority, *, namespace: str = NAMESPACE,
                       service: str = WEBHOOK_SERVICE, ips: Sequence[str] = (), name: str = WEBHOOK_SECRET,
                       extra_names: Sequence[str] = ()) -> dict[str, Any]:
    """The ``kubernetes.io/tls`` Secret the webhook Deployment mounts (or, with ``name``, the UI's), with a fresh
    serving cert."""
    serving = ca.issue_serving(f"{service}.{namespace}.svc",
                               [*service_dns_names(service, namespace), *extra_names], list(ips))
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "driftguard"}},
        "data": {
            "tls.crt": base64.b64encode(serving.cert_pem).decode(),
            "tls.key": base64.b64encode(serving.key_pem).decode(),
            "ca.crt": base64.b64encode(ca.cert_pem).decode(),
        },
    }


def generated_secrets() -> list[dict[str, Any]]:
    """The Secrets driftguard's pods mount besides TLS, each with a fresh random value: the mark key the
    webhook seals break-glass grants and drift marks with (and the reconciler verifies them with), and the
    bearer token ``POST /refresh`` requires, and the key the web UI's replicas sign session cookies with."""
    values = {MARK_KEY_SECRET: ("key", MarkKey.generate().to_text()),
              REFRESH_TOKEN_SECRET: ("token", secrets.token_urlsafe(32)),
              UI_SESSION_SECRET: ("key", secrets.token_urlsafe(32))}
    return [{
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "driftguard"}},
        "data": {key: base64.b64encode(value.encode()).decode()},
    } for name, (key, value) in values.items()]


def ensure_generated_secrets(cluster: Cluster, progress: Progress | None = None) -> None:
    """Create each of ``generated_secrets`` that does not exist; never replace one (a new mark key would void
    every standing grant, a new token every git host's push hook). Delete one to rotate it."""
    for secret in generated_secrets():
        name = secret["metadata"]["name"]
        if cluster.get(SECRETS, NAMESPACE, name) is not None:
            if progress:
                progress(f"kept Secret {NAMESPACE}/{name} (delete it to rotate)")
            continue
        cluster.create(SECRETS, secret)
        if progress:
            progress(f"created Secret {NAMESPACE}/{name} (value not shown)")


def register_webhook(cluster: Cluster, client: registration.ClientConfig, **options: Any) -> None:
    """Apply both webhook configurations pointing at ``client``, after recording them in the ConfigMap
    the reconciler restores them from (``reconciler.perimeter``) — first, so it never reverts a new
    registration to the old one."""
    configurations = registration.configurations(client, **options)
    cluster.apply(perimeter.registration_configmap(configurations, NAMESPACE))
    for configuration in configurations:
        cluster.apply(configuration)


def install_in_cluster(kube: Kube, ca: CertificateAuthority, *, progress: Progress | None = None) -> None:
    """``driftguard certs install``: the mark-key and refresh-token Secrets when missing, the TLS Secret,
    and webhook configurations with the caBundle.

    Safe to re-run; re-running with the same CA rotates only the serving certificate.
    """
    cluster = Cluster(kube, field_manager=INSTALL_MANAGER)
    ensure_generated_secrets(cluster, progress)
    cluster.apply(webhook_tls_secret(ca))
    if progress:
        progress(f"applied Secret {NAMESPACE}/{WEBHOOK_SECRET} (serving certificate for "
                 f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc; key not shown)")
    cluster.apply(webhook_tls_secret(ca, service=UI_SERVICE, name=UI_SECRET, ips=["127.0.0.1"],
                                     extra_names=["localhost"]))  # localhost: reached by kubectl port-forward
    if progress:
        progress(f"applied Secret {NAMESPACE}/{UI_SECRET} (the web UI's serving certificate; key not shown)")
    register_webhook(cluster, registration.service_client(WEBHOOK_SERVICE, NAMESPACE, ca.cert_pem))
    if progress:
        progress("applied ValidatingWebhookConfiguration and MutatingWebhookConfiguration driftguard (caBundle set), "
                 f"recorded in ConfigMap {NAMESPACE}/{perimeter.REGISTRATION_CONFIGMAP} for the reconciler to restore")


def render_webhook_configurations() -> str:
    """The YAML committed as ``manifests/webhook-configurations.yaml`` (no caBundle), with the
    ValidatingAdmissionPolicy that guards them (``registration.protection``).

    No caBundle at all, not an empty one: ``driftguard certs install`` (field manager driftguard-install)
    owns it, so ``kubectl apply -k`` and ``helm upgrade`` (server-side apply) neither conflict over it
    nor blank it; every other field they set has the value the installer sets, which SSA shares."""
    placeholder = CertificateAuthority.generate().cert_pem
    configurations = registration.configurations(registration.service_client(WEBHOOK_SERVICE, NAMESPACE, placeholder))
    for document in configurations:
        for hook in document["webhooks"]:
            del hook["clientConfig"]["caBundle"]
    documents = [*configurations, *registration.protection()]
    header = ("# Generated by `make manifests` from webhook/registration.py; do not edit.\n"
              "# caBundle is injected by `driftguard certs install` (or cert-manager's CA injector), which owns it.\n")
    return header + yaml.dump_all(documents, Dumper=_NoAliases, sort_keys=False)


class _NoAliases(yaml.SafeDumper):
    """Repeat shared values instead of emitting ``&id001`` anchors nobody wants to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
