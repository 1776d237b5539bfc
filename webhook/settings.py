"""Webhook settings: one frozen dataclass, filled from flags, then environment, then defaults.

Each field declares its flag, environment variable and help text once (in ``metadata``); the
argparse options, the environment reader, ``to_args`` (for starting the server as a child process)
and the README's reference table are all generated from that one declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from driftguard.core.names import NAMESPACE, RECONCILER_USER

GARBAGE_COLLECTOR: Final = "system:serviceaccount:kube-system:generic-garbage-collector"
NAMESPACE_CONTROLLER: Final = "system:serviceaccount:kube-system:namespace-controller"
RECONCILER_POD_PREFIX: Final = "driftguard-reconciler-"
MiB: Final = 1024 * 1024

WorkerClass = Literal["event", "gthread", "sync"]
LogFormat = Literal["json", "text"]


def meta(env: str, help: str, *, kind: str = "") -> dict[str, str]:
    """A field's flag metadata (see the module docstring): its environment variable, help text and parser."""
    return _meta(env, help, kind=kind)


def _meta(env: str, help: str, *, kind: str = "") -> dict[str, str]:
    return {"env": env, "help": help, "kind": kind}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the webhook process needs; policy reads the first block only."""

    # --- policy
    reconciler_users: tuple[str, ...] = field(default=(RECONCILER_USER,), metadata=_meta(
        "DRIFTGUARD_RECONCILER_USERS",
        "users whose requests always pass (the reconciler's ServiceAccount); comma-separated", kind="list"))
    reconciler_pod_prefix: str = field(default=RECONCILER_POD_PREFIX, metadata=_meta(
        "DRIFTGUARD_RECONCILER_POD_PREFIX",
        "the reconciler is trusted only with a token bound to a Pod whose name starts with this"))
    allowed_users: tuple[str, ...] = field(default=(GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER), metadata=_meta(
        "DRIFTGUARD_ALLOWED_USERS",
        "cluster controllers whose DELETEs pass (with their own token; the garbage collector's only for objects "
        "with owners); comma-separated", kind="list"))
    admin_groups: tuple[str, ...] = field(default=("system:masters",), metadata=_meta(
        "DRIFTGUARD_ADMIN_GROUPS",
        "groups whose members may create, change and delete Applications not deployed from git (their risky "
        "changes are recorded); comma-separated", kind="list"))
    break_glass_groups: tuple[str, ...] = field(default=(), metadata=_meta(
        "DRIFTGUARD_BREAK_GLASS_GROUPS",
        "groups allowed to break glass (annotation driftguard.io/break-glass); empty disables it", kind="list"))
    break_glass_ttl: int = field(default=3600, metadata=_meta(
        "DRIFTGUARD_BREAK_GLASS_TTL", "seconds the reconciler leaves a break-glass object alone"))
    application_namespaces: tuple[str, ...] = field(default=(NAMESPACE,), metadata=_meta(
        "DRIFTGUARD_APPLICATION_NAMESPACES",
        "the namespaces (names or shell patterns; * for every one) whose Applications a reconciler watches, as its "
        "--namespace and --application-namespaces: creating an Application elsewhere is admitted with a warning "
        "that nothing will sync it; comma-separated", kind="list"))
    project_namespace: str = field(default=NAMESPACE, metadata=_meta(
        "DRIFTGUARD_PROJECT_NAMESPACE", "the namespace Projects are read from, as the reconciler's "
        "--project-namespace (an Application created there may use any Project)"))
    mark_key_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_MARK_KEY_FILE", "the key (hex) that seals break-glass grants and drift marks, shared with the "
        "reconciler (unset: break-glass is refused, no drift mark is written)"))
    # --- audit
    audit_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_AUDIT_FILE", "append-only JSONL audit file (unset: log and Events only)"))
    audit_events: bool = field(default=True, metadata=_meta(
        "DRIFTGUARD_AUDIT_EVENTS", "write aggregated Kubernetes Events for audit records"))
    event_flush_seconds: float = field(default=5.0, metadata=_meta(
        "DRIFTGUARD_EVENT_FLUSH_SECONDS", "how often aggregated Events are written"))
    audit_queue_size: int = field(default=4096, metadata=_meta(
        "DRIFTGUARD_AUDIT_QUEUE_SIZE", "records buffered for the file/Event writer; more are dropped"))
    # --- cluster access (scale parent reads, Events)
    kubeconfig: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_KUBECONFIG", "kubeconfig for the webhook's own API calls (unset: in-cluster if there)"))
    parent_timeout: float = field(default=1.0, metadata=_meta(
        "DRIFTGUARD_PARENT_TIMEOUT", "seconds allowed for reading a scale request's parent object"))
    # --- HTTP edge
    max_body_bytes: int = field(default=3 * MiB, metadata=_meta(
        "DRIFTGUARD_MAX_BODY_BYTES", "largest AdmissionReview accepted (bytes)"))
    log_format: LogFormat = field(default="json", metadata=_meta(
        "DRIFTGUARD_LOG_FORMAT", "log lines as json or text"))
    log_level: str = field(default="INFO", metadata=_meta("DRIFTGUARD_LOG_LEVEL", "log level"))
    # --- server (gunicorn)
    host: str = field(default="0.0.0.0", metadata=_meta(  # noqa: S104 - a Pod listens on all interfaces
        "DRIFTGUARD_WEBHOOK_HOST", "address to listen on"))
    port: int = field(default=8443, metadata=_meta("DRIFTGUARD_WEBHOOK_PORT", "TLS port to listen on"))
    cert_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_CERT_FILE", "serving certificate (PEM); re-read when it changes"))
    key_file: Path | None = field(default=None, metadata=_meta("DRIFTGUARD_KEY_FILE", "serving key (PEM)"))
    cert_warning_days: int = field(default=7, metadata=_meta(
        "DRIFTGUARD_CERT_WARNING_DAYS",
        "log a warning when the serving certificate expires within this many days (0: never)"))
    client_ca_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_CLIENT_CA_FILE",
        "PEM CA of the API server's webhook client certificate: when set, /validate and /mutate answer only "
        "callers presenting a certificate it signed (use a CA dedicated to that certificate; needs the event "
        "worker); re-read when it changes"))
    workers: int = field(default=2, metadata=_meta("DRIFTGUARD_WEBHOOK_WORKERS", "gunicorn worker processes"))
    threads: int = field(default=8, metadata=_meta(
        "DRIFTGUARD_WEBHOOK_THREADS", "request threads per worker (event and gthread)"))
    worker_class: WorkerClass = field(default="event", metadata=_meta(
        "DRIFTGUARD_WEBHOOK_WORKER_CLASS",
        "event (an event loop does TLS and reads whole requests under deadlines and answers plain reviews "
        "itself; threads run what reads the API and everything else), gthread or sync (gunicorn's own, for "
        "comparison)"))
    handshake_timeout: float = field(default=5.0, metadata=_meta(
        "DRIFTGUARD_HANDSHAKE_TIMEOUT", "seconds a new connection may take to finish its TLS handshake (event)"))
    request_timeout: float = field(default=10.0, metadata=_meta(
        "DRIFTGUARD_REQUEST_TIMEOUT",
        "seconds from a request's first byte (or the handshake) until it must be complete (event)"))
    max_connections: int = field(default=4096, metadata=_meta(
        "DRIFTGUARD_MAX_CONNECTIONS",
        "open connections per worker; when full, the one waiting longest without a complete request is closed"))
    metrics_dir: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_METRICS_DIR", "prometheus multiprocess directory (unset: a fresh temp dir)"))

    def to_args(self) -> list[str]:
        """Flags reproducing these settings (for starting ``driftguard webhook`` as a child process)."""
        args: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            args += [_flag(f.name), str(value)]
        return args


def add_arguments(parser: argparse.ArgumentParser, settings_class: type[Any] = Settings) -> None:
    """Add one flag per setting (default None, so ``from_sources`` can tell "not given").

    ``settings_class`` is any dataclass declared like ``Settings`` (``_meta`` on each field): the web
    UI's settings (``ui.settings``) use this same mechanism.
    """
    for f in dataclasses.fields(settings_class):
        parser.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                            help=f"{f.metadata['help']} [env {f.metadata['env']}]")


def values_from_sources(settings_class: type[Any], args: argparse.Namespace | None,
                        environ: Mapping[str, str] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of ``settings_class``: overrides, then flags, then the environment."""
    environ = environ or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(settings_class):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = environ.get(f.metadata["env"])
        if raw is not None:
            values[f.name] = _parse(f, str(raw))
    return values


def from_sources(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> Settings:
    """Settings from ``overrides``, then flags, then the environment, then defaults; ValueError if bad."""
    settings = Settings(**values_from_sources(Settings, args, environ, overrides))
    _check(settings)
    return settings


def reference(settings_class: type[Any] = Settings) -> list[tuple[str, str, str, str]]:
    """(flag, env, default, help) for every setting — the documentation table."""
    rows = []
    for f in dataclasses.fields(settings_class):
        default = f.default
        shown = ",".join(cast(Sequence[str], default)) if isinstance(default, tuple) else default
        rows.append((_flag(f.name), f.metadata["env"], "" if shown is None else str(shown), f.metadata["help"]))
    return rows


def flag(name: str) -> str:
    return _flag(name)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(f: dataclasses.Field[Any], raw: str) -> object:
    parsers: dict[str, Callable[[str], object]] = {
        "list": lambda s: tuple(item.strip() for item in s.split(",") if item.strip()),
    }
    if f.metadata["kind"] in parsers:
        return parsers[f.metadata["kind"]](raw)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _parse_bool(raw)
    except ValueError as e:
        raise ValueError(f"{_flag(f.name)} / {f.metadata['env']}: {raw!r} is not a valid {kind}") from e
    if kind == "Path | None":
        return Path(raw) if raw else None
    return raw


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _check(settings: Settings) -> None:
    if settings.worker_class not in ("event", "gthread", "sync"):
        raise ValueError(f"--worker-class: {settings.worker_class!r} is not event, gthread or sync")
    if settings.log_format not in ("json", "text"):
        raise ValueError(f"--log-format: {settings.log_format!r} is not json or text")
    for name in ("break_glass_ttl", "max_body_bytes", "port", "workers", "threads", "audit_queue_size",
                 "handshake_timeout", "request_timeout", "max_connections"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"{_flag(name)} must be positive")
    if settings.cert_warning_days < 0:
        raise ValueError(f"{_flag('cert_warning_days')} must not be negative")
    if settings.client_ca_file is not None and settings.worker_class != "event":
        raise ValueError("--client-ca-file needs --worker-class event (it checks the caller's certificate)")
    if (settings.cert_file is None) != (settings.key_file is None):
        raise ValueError("--cert-file and --key-file go together")
