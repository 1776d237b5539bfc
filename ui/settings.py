"""The web UI's settings: declared once per field, by the webhook's settings mechanism (``webhook.settings``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftguard.core.names import NAMESPACE
from webhook import settings as mechanism
from webhook.settings import LogFormat, WorkerClass
from webhook.settings import meta as _meta

# where manifests/ui.yaml projects the UI's token for the reconciler (audience driftguard-reconciler)
RECONCILER_TOKEN_PATH = Path("/var/run/secrets/driftguard/reconciler/token")


@dataclass(frozen=True, slots=True)
class Settings:
    # --- cluster access (the UI's own, read-only identity)
    kubeconfig: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_KUBECONFIG", "kubeconfig for the UI's own read-only API calls (unset: in-cluster if there)"))
    audit_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_AUDIT_FILE", "the webhook's JSONL audit file the audit rows come from (local mode; unset: "
        "the cluster's durable audit trail)"))
    audit_namespace: str = field(default=NAMESPACE, metadata=_meta(
        "DRIFTGUARD_UI_AUDIT_NAMESPACE", "where the durable audit trail's ConfigMaps are (the reconciler's "
        "--audit-namespace), read with the audit Events not folded yet when --audit-file is unset"))
    reconciler_url: str = field(default="", metadata=_meta(
        "DRIFTGUARD_UI_RECONCILER_URL", "the reconciler's HTTP address, for Refresh and Sync (e.g. http://driftguard-"
        "reconciler.driftguard-system:8080; unset: both are off)"))
    refresh_token_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_REFRESH_TOKEN_FILE", "file holding the reconciler's refresh token (its --refresh-token)"))
    reconciler_token_file: Path | None = field(default=RECONCILER_TOKEN_PATH, metadata=_meta(
        "DRIFTGUARD_UI_RECONCILER_TOKEN_FILE", "file holding the UI's ServiceAccount token for audience "
        "driftguard-reconciler, which Sync presents (a projected volume; re-read on each use)"))
    access_cache_seconds: float = field(default=10.0, metadata=_meta(
        "DRIFTGUARD_UI_ACCESS_CACHE_SECONDS", "seconds an RBAC answer (SubjectAccessReview) for a user is reused"))
    # --- authentication
    login_token_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_LOGIN_TOKEN_FILE", "local mode: file holding a login token that signs in as --login-user "
        "(unset: only Kubernetes bearer tokens sign in)"))
    login_user: str = field(default="", metadata=_meta(
        "DRIFTGUARD_UI_LOGIN_USER", "the Kubernetes user the login token stands for (RBAC is asked about them)"))
    login_groups: tuple[str, ...] = field(default=(), metadata=_meta(
        "DRIFTGUARD_UI_LOGIN_GROUPS", "that user's groups; comma-separated", kind="list"))
    proxy_user_header: str = field(default="", metadata=_meta(
        "DRIFTGUARD_UI_PROXY_USER_HEADER", "behind an authenticating proxy: the header naming the user (e.g. "
        "X-Remote-User); only read when set, and only with --client-ca-file (the proxy's client certificate)"))
    proxy_groups_header: str = field(default="", metadata=_meta(
        "DRIFTGUARD_UI_PROXY_GROUPS_HEADER", "the proxy's header listing the user's groups, comma-separated"))
    session_key_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_SESSION_KEY_FILE", "file holding the key that signs session cookies, shared by replicas "
        "(unset: a random key per process; a restart signs everyone out)"))
    session_hours: float = field(default=8.0, metadata=_meta(
        "DRIFTGUARD_UI_SESSION_HOURS", "hours a sign-in lasts"))
    # --- HTTP edge and server (the webhook's serving stack)
    max_body_bytes: int = field(default=64 * 1024, metadata=_meta(
        "DRIFTGUARD_UI_MAX_BODY_BYTES", "largest request body accepted (bytes)"))
    log_format: LogFormat = field(default="json", metadata=_meta(
        "DRIFTGUARD_UI_LOG_FORMAT", "log lines as json or text"))
    log_level: str = field(default="INFO", metadata=_meta("DRIFTGUARD_UI_LOG_LEVEL", "log level"))
    host: str = field(default="127.0.0.1", metadata=_meta(
        "DRIFTGUARD_UI_HOST", "address to listen on (0.0.0.0 in a Pod)"))
    port: int = field(default=8445, metadata=_meta("DRIFTGUARD_UI_PORT", "TLS port to listen on"))
    cert_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_CERT_FILE", "serving certificate (PEM); re-read when it changes"))
    key_file: Path | None = field(default=None, metadata=_meta("DRIFTGUARD_UI_KEY_FILE", "serving key (PEM)"))
    cert_warning_days: int = field(default=7, metadata=_meta(
        "DRIFTGUARD_UI_CERT_WARNING_DAYS", "log a warning when the serving certificate expires within this many days"))
    client_ca_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_UI_CLIENT_CA_FILE", "PEM CA of an authenticating proxy's client certificate: when set, only "
        "callers presenting a certificate it signed reach the UI"))
    workers: int = field(default=1, metadata=_meta("DRIFTGUARD_UI_WORKERS", "gunicorn worker processes"))
    threads: int = field(default=8, metadata=_meta("DRIFTGUARD_UI_THREADS", "request threads per worker"))
    worker_class: WorkerClass = field(default="event", metadata=_meta(
        "DRIFTGUARD_UI_WORKER_CLASS", "event (as the webhook), gthread or sync"))
    handshake_timeout: float = field(default=5.0, metadata=_meta(
        "DRIFTGUARD_UI_HANDSHAKE_TIMEOUT", "seconds a new connection may take to finish its TLS handshake"))
    request_timeout: float = field(default=10.0, metadata=_meta(
        "DRIFTGUARD_UI_REQUEST_TIMEOUT", "seconds from a request's first byte until it must be complete"))
    max_connections: int = field(default=1024, metadata=_meta(
        "DRIFTGUARD_UI_MAX_CONNECTIONS", "open connections per worker"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mechanism.add_arguments(parser, Settings)


def from_sources(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> Settings:
    chosen = Settings(**mechanism.values_from_sources(Settings, args, environ, overrides))
    _check(chosen)
    return chosen


def reference() -> list[tuple[str, str, str, str]]:
    return mechanism.reference(Settings)


def _check(chosen: Settings) -> None:
    if chosen.cert_file is None or chosen.key_file is None:
        raise ValueError("the UI serves TLS only: give --cert-file and --key-file")
    if chosen.worker_class not in ("event", "gthread", "sync"):
        raise ValueError(f"--worker-class: {chosen.worker_class!r} is not event, gthread or sync")
    for name in ("port", "workers", "threads", "max_body_bytes", "session_hours", "max_connections"):
        if getattr(chosen, name) <= 0:
            raise ValueError(f"{mechanism.flag(name)} must be positive")
    if chosen.login_token_file is not None and not chosen.login_user:
        raise ValueError("--login-token-file needs --login-user: the Kubernetes user the token signs in as")
    if chosen.proxy_user_header and chosen.client_ca_file is None:
        raise ValueError("--proxy-user-header needs --client-ca-file: identity headers are trusted only from a "
                         "proxy that presents a client certificate the CA signed")
    if chosen.proxy_user_header and chosen.worker_class != "event":
        raise ValueError("--proxy-user-header needs --worker-class event (it checks the proxy's certificate)")
