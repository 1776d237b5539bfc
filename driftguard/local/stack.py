"""The driftguard components of local mode: installed and started on top of a running control plane.

``driftguard local up`` calls ``start`` once the control plane is ready. It installs the
``manifests/`` base (Namespace, CRD, RBAC — the Deployments, Services and service-based webhook
registrations are skipped: here the components run as host processes), then starts, each detached
and recorded in ``state.json`` so ``local down`` stops it:

1. the webhook — ``driftguard webhook`` (gunicorn, TLS on 127.0.0.1, its own CA), acting with its
   ServiceAccount's token, answering reviews only from the API server's webhook client certificate
   (``--client-ca-file``), registered with the API server by URL + caBundle; ``start`` returns
   only after the API server is seen calling it (a dry-run forged CREATE is denied);
2. the reconciler — ``driftguard reconcile`` with its ServiceAccount's token (bound to a Pod made for
   it, as a kubelet's would be), held to the ``driftguard-reconciler`` ClusterRole from ``manifests/``
   exactly as in a cluster; ``POST /refresh`` needs the bearer token in ``<dir>/refresh-token``
   (generated once, 0600, passed in the environment, never on a command line or in a log);
3. the web UI — ``driftguard ui`` (the webhook's serving stack, TLS on 127.0.0.1 with the webhook's
   local CA), reading as its ServiceAccount ``driftguard-ui`` (``manifests/rbac-ui.yaml``); the login
   token in ``<dir>/ui-login-token`` (0600, new on every ``up``) signs in as the laptop user, and a
   Kubernetes bearer token signs in as whoever it belongs to. Its Sync presents ``<dir>/ui-reconciler-token``
   (0600, new on every ``up``): its ServiceAccount's TokenRequest token for the audience
   ``driftguard-reconciler`` only, as the projected volume in ``manifests/ui.yaml`` is.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from certs import write_private
from certs.authority import CertificateAuthority
from driftguard import install
from driftguard.core import contract
from driftguard.core.marks import MarkKey
from driftguard.core.names import RECONCILER_SERVICE_ACCOUNT, RECONCILER_USER
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster
from driftguard.local.controlplane import LAPTOP_GROUP, LAPTOP_USER, ControlPlane, serviceaccount_token
from driftguard.local.controlplane.binaries import resolve_render_tools
from driftguard.local.controlplane.processes import Readiness, free_port, record, spawn, wait_ready
from reconciler.delegation import AUDIENCE
from webhook import registration

WEBHOOK_SA: Final = "driftguard-webhook"
RECONCILER_SA: Final = RECONCILER_SERVICE_ACCOUNT
BREAK_GLASS_GROUP: Final = "driftguard:break-glass"
TOKEN_SECONDS: Final = 7 * 24 * 3600  # local mode only; `local up` again mints fresh tokens
REFRESH_TOKEN_FILE: Final = "refresh-token"  # noqa: S105 - a file name, not a secret
UI_SA: Final = "driftguard-ui"
UI_LOGIN_TOKEN_FILE: Final = "ui-login-token"  # noqa: S105 - a file name, not a secret
UI_RECONCILER_TOKEN_FILE: Final = "ui-reconciler-token"  # noqa: S105 - a file name: the UI's Sync token
MARK_KEY_FILE: Final = "mark-key"  # the webhook's and the reconciler's shared key for grants and drift marks
HOST_RUN_KINDS: Final = frozenset({
    "Deployment", "Service", "PodDisruptionBudget", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "NetworkPolicy",  # nothing enforces it on loopback; the webhook checks the API server's certificate instead
})

Progress = Callable[[str], None]


def start(plane: ControlPlane, timeout: float, progress: Progress) -> dict[str, str]:
    """Install and start the webhook and reconciler; return facts for ``state.json``'s info."""
    directory = plane.directory
    with plane.admin() as admin:
        cluster = Cluster(admin, field_manager=install.INSTALL_MANAGER)
        base = [m for m in install.base_manifests() if m.obj["kind"] not in HOST_RUN_KINDS]
        install.apply_manifests(cluster, base)
        install.aggregate_cluster_roles(admin)
        progress(f"installed manifests/ ({len(base)} objects: namespace, CRD, RBAC)")
        webhook_url, ca = _start_webhook(plane, timeout, progress)
        register_started = time.monotonic()
        install.register_webhook(cluster, registration.url_client(webhook_url, ca.cert_pem))
        _wait_webhook_called(admin, timeout)
        progress(f"webhook registered; the API server calls it ({time.monotonic() - register_started:.1f}s)")
    reconciler_url = _start_reconciler(plane, timeout, progress)
    ui_url = _start_ui(plane, ca, reconciler_url, timeout, progress)
    return {
        "ui": ui_url,
        "ui_login_token": login_token(directory),
        "ui_login_token_file": str(directory / UI_LOGIN_TOKEN_FILE),
        "webhook": webhook_url,
        "webhook_ca": str(directory / "webhook" / "ca.crt"),
        "reconciler": reconciler_url,
        "audit_file": str(directory / "audit.jsonl"),
        "refresh_token_file": str(directory / REFRESH_TOKEN_FILE),
        "break_glass_group": BREAK_GLASS_GROUP,
    }


def _start_webhook(
    plane: ControlPlane, timeout: float, progress: Progress
) -> tuple[str, CertificateAuthority]:
    directory = plane.directory
    tls = directory / "webhook"
    ca, _ = CertificateAuthority.load_or_generate(tls, "driftguard-local-webhook-ca")
    ca.issue_serving("driftguard-webhook", ["localhost"], ["127.0.0.1"]).write(tls / "tls.crt", tls / "tls.key")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "driftguard.cli", "webhook", "--host", "127.0.0.1", "--port", str(port),
        "--cert-file", str(tls / "tls.crt"), "--key-file", str(tls / "tls.key"),
        "--audit-file", str(directory / "audit.jsonl"),
        "--kubeconfig", str(plane.kubeconfig_for_serviceaccount(install.NAMESPACE, WEBHOOK_SA, TOKEN_SECONDS)),
        "--reconciler-users", RECONCILER_USER, "--break-glass-groups", BREAK_GLASS_GROUP,
        "--client-ca-file", str(plane.webhook_client_ca_file),
        "--mark-key-file", str(mark_key_file(directory)),
        "--log-format", "json",
    ]
    _launch("webhook", argv, Readiness(f"{url}/readyz", str(tls / "ca.crt")), directory, timeout=timeout,
            progress=progress)
    return url, ca


def login_token(directory: Path) -> str:
    """The UI's login token: ``<dir>/ui-login-token`` (0600), standing for the laptop user."""
    return (directory / UI_LOGIN_TOKEN_FILE).read_text().strip()


def _start_ui(plane: ControlPlane, ca: CertificateAuthority, reconciler_url: str, timeout: float,
              progress: Progress) -> str:
    directory = plane.directory
    tls = directory / "ui"
    ca.issue_serving("driftguard-ui", ["localhost"], ["127.0.0.1"]).write(tls / "tls.crt", tls / "tls.key")
    write_private(directory / UI_LOGIN_TOKEN_FILE, (secrets.token_urlsafe(24) + "\n").encode())
    refresh_token(directory)
    with plane.admin() as admin:  # what manifests/ui.yaml projects: a token for the reconciler's audience only
        token = serviceaccount_token(admin, install.NAMESPACE, UI_SA, TOKEN_SECONDS, audiences=[AUDIENCE])
    write_private(directory / UI_RECONCILER_TOKEN_FILE, (token + "\n").encode())
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "driftguard.cli", "ui", "--host", "127.0.0.1", "--port", str(port),
        "--cert-file", str(tls / "tls.crt"), "--key-file", str(tls / "tls.key"),
        "--kubeconfig", str(plane.kubeconfig_for_serviceaccount(install.NAMESPACE, UI_SA, TOKEN_SECONDS)),
        "--audit-file", str(directory / "audit.jsonl"),
        "--reconciler-url", reconciler_url, "--refresh-token-file", str(directory / REFRESH_TOKEN_FILE),
        "--reconciler-token-file", str(directory / UI_RECONCILER_TOKEN_FILE),
        "--login-token-file", str(directory / UI_LOGIN_TOKEN_FILE),
        "--login-user", LAPTOP_USER, "--login-groups", LAPTOP_GROUP, "--log-format", "json",
    ]
    _launch("ui", argv, Readiness(f"{url}/readyz", str(directory / "webhook" / "ca.crt")), directory,
            timeout=timeout, progress=progress)
    return url


def refresh_token(directory: Path) -> str:
    """The bearer token ``POST /refresh`` needs in local mode: ``<dir>/refresh-token`` (0600), made once."""
    path = directory / REFRESH_TOKEN_FILE
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path.read_text().strip()


def mark_key_file(directory: Path) -> Path:
    """``<dir>/mark-key`` (0600, hex), made once: the key both components seal and verify marks with."""
    path = directory / MARK_KEY_FILE
    if not path.exists():
        write_private(path, (MarkKey.generate().to_text() + "\n").encode())
    return path


def _start_reconciler(plane: ControlPlane, timeout: float, progress: Progress) -> str:
    directory = plane.directory
    kubeconfig = plane.kubeconfig_for_serviceaccount(install.NAMESPACE, RECONCILER_SA, TOKEN_SECONDS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "driftguard.cli", "reconcile", "--kubeconfig", str(kubeconfig),
        "--namespace", install.NAMESPACE, "--listen", f"127.0.0.1:{port}",
        "--cache-dir", str(directory / "git-cache"), "--identity", "local-reconciler", "--log-format", "json",
        "--mark-key-file", str(mark_key_file(directory)),
        *(arg for tool, path in resolve_render_tools().items() for arg in (f"--{tool}", str(path))),
        "--allow-local-repos",  # local mode: the demo's repositories are directories on this machine
        "--ui-service-account", f"{install.NAMESPACE}/{UI_SA}",  # the UI's Sync names its signed-in user
    ]
    env = {**os.environ, "DRIFTGUARD_REFRESH_TOKEN": refresh_token(directory)}  # not argv: ps shows argv
    _launch("reconciler", argv, Readiness(f"{url}/readyz"), directory, timeout=timeout, progress=progress, env=env)
    return url


def _launch(name: str, argv: list[str], ready: Readiness, directory: Path, *, timeout: float,
            progress: Progress, env: dict[str, str] | None = None) -> None:
    progress(f"starting {name}…")
    process = spawn(name, argv, directory / "logs" / f"{name}.log", ready=ready, env=env)
    record(directory, process)
    progress(f"{name} ready in {wait_ready(process, timeout):.1f}s")


def _wait_webhook_called(admin: Kube, timeout: float) -> None:
    """Until the API server has picked up the registration: a forged, dry-run CREATE gets denied."""
    probe = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"generateName": "driftguard-probe-", "labels": {contract.LABEL_MANAGED: "true"}},
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.request("POST", "/api/v1/namespaces/default/configmaps", body=probe, query={"dryRun": "All"})
        except KubeError as error:
            if "forged ownership" in error.message:
                return  # our webhook answered (not a stale registration from a previous run)
            if "failed calling webhook" not in error.message:
                raise
        time.sleep(0.1)
    raise install.InstallError(f"the API server did not call the webhook within {timeout:.0f}s")
