"""Reconciler settings, declared once: each field's flag, environment variable, default and help.

Two frozen values. ``Options`` is the process: where to connect and listen, leadership, the refresh
token, logging. ``Settings`` is the controller's tuning (how often, how many, how long); an ``Options``
carries one. Each configurable field declares its environment variable and help in ``metadata``, and
everything else is generated from that one declaration: the ``driftguard reconcile`` flags
(``add_arguments``), reading flags, then the environment, then defaults (``from_sources``), and the
README's configuration table (``reference``, checked against the README by a test). Fields without
metadata are not settings of their own (``Settings.namespace`` and ``cache_dir`` come from ``Options``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from driftguard.core.names import NAMESPACE, RECONCILER_SERVICE_ACCOUNT
from reconciler.application import parse_duration
from reconciler.delegation import parse_account

LEASE_NAME: Final = RECONCILER_SERVICE_ACCOUNT
LOG_FORMATS: Final = ("text", "json")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftguard" / "git"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _meta(env: str, help: str, *, kind: str = "", shown: str | None = None) -> dict[str, Any]:
    """``kind``: "duration" (``30s``, ``1m``, or seconds), "switch" (``--x``/``--no-x``); ``shown``: the
    default as documented, when it is computed at start."""
    return {"env": env, "help": help, "kind": kind, "shown": shown}


@dataclass(frozen=True)
class Settings:
    namespace: str = NAMESPACE  # where Applications live; "" for every namespace (from Options)
    cache_dir: Path = field(default_factory=default_cache_dir)  # from Options
    resync_interval: float = field(default=60.0, metadata=_meta(
        "DRIFTGUARD_RESYNC_INTERVAL", "full comparison of every object at least this often", kind="duration"))
    max_backoff: float = field(default=60.0, metadata=_meta(
        "DRIFTGUARD_MAX_BACKOFF", "longest wait before retrying a failing Application", kind="duration"))
    workers: int = field(default=2, metadata=_meta(
        "DRIFTGUARD_RECONCILER_WORKERS", "Applications synced concurrently"))
    apply_concurrency: int = field(default=4, metadata=_meta(
        "DRIFTGUARD_APPLY_CONCURRENCY", "objects of one Application applied concurrently"))
    heal_workers: int = field(default=2, metadata=_meta(
        "DRIFTGUARD_HEAL_WORKERS", "objects self-healed concurrently"))
    watch_timeout: float = field(default=30.0, metadata=_meta(
        "DRIFTGUARD_WATCH_TIMEOUT", "how long one watch request stays open before it is renewed", kind="duration"))
    fight_limit: int = field(default=5, metadata=_meta(
        "DRIFTGUARD_FIGHT_LIMIT", "reverts of one object within --fight-window after which self-heal backs off"))
    fight_window: float = field(default=60.0, metadata=_meta(
        "DRIFTGUARD_FIGHT_WINDOW", "the window --fight-limit counts reverts in", kind="duration"))
    stop_timeout: float = field(default=30.0, metadata=_meta(
        "DRIFTGUARD_STOP_TIMEOUT", "how long a lost leadership term's threads may take to stop before the "
        "process exits", kind="duration"))
    system_namespace: str = NAMESPACE  # driftguard's own: the registration ConfigMap (reconciler.perimeter)
    application_namespaces: str = field(default="", metadata=_meta(
        "DRIFTGUARD_APPLICATION_NAMESPACES", "more namespaces whose Applications to reconcile, besides --namespace: "
        "comma-separated names or shell patterns (team-*), as Argo CD's apps in any namespace; the reconciler "
        "needs its RBAC there"))
    allow_local_repos: bool = field(default=False, metadata=_meta(
        "DRIFTGUARD_ALLOW_LOCAL_REPOS", "accept file:// URLs and local paths as repoURL (local mode and tests only: a "
        "local path can read another Application's fetched repository from the reconciler's git cache)",
        kind="switch"))
    oci_plain_http_loopback: bool = field(default=False, metadata=_meta(
        "DRIFTGUARD_OCI_PLAIN_HTTP_LOOPBACK", "speak plain http to OCI chart registries on loopback (127.0.0.0/8, "
        "::1, localhost: a registry beside the reconciler, and tests); never with a login, never to another host",
        kind="switch"))
    default_service_account: str = field(default="", metadata=_meta(
        "DRIFTGUARD_DEFAULT_SERVICE_ACCOUNT", "the ServiceAccount (in the Application's namespace) an Application "
        "naming none applies as, impersonated, like Flux's flag: with it no Application applies as the reconciler "
        "itself (an Application in driftguard's namespace then needs its Project's destinationServiceAccounts)"))
    project_namespace: str = field(default="", metadata=_meta(
        "DRIFTGUARD_PROJECT_NAMESPACE", f"the namespace Projects are read from (unset: --namespace, else {NAMESPACE})"))
    webhook_configuration: str = field(default="driftguard", metadata=_meta(
        "DRIFTGUARD_WEBHOOK_CONFIGURATION", "the Validating- and MutatingWebhookConfiguration the leader restores "
        "from the installer's registration ConfigMap when deleted or altered (empty: none)"))
    perimeter_interval: float = field(default=10.0, metadata=_meta(
        "DRIFTGUARD_PERIMETER_INTERVAL", "re-check the webhook configurations this often, behind the watches",
        kind="duration"))
    perimeter_settle: float = field(default=3.0, metadata=_meta(
        "DRIFTGUARD_PERIMETER_SETTLE", "re-create a deleted webhook configuration once it has been missing this "
        "long (an uninstall deletes the webhook's Service next: then it is not re-created)", kind="duration"))
    kustomize: str = field(default="kustomize", metadata=_meta(
        "DRIFTGUARD_KUSTOMIZE", "the kustomize binary (a path, or a name on PATH) for paths holding a kustomization"))
    helm: str = field(default="helm", metadata=_meta(
        "DRIFTGUARD_HELM", "the helm binary (a path, or a name on PATH) for paths holding a Chart.yaml"))
    jsonnet: str = field(default="jsonnet", metadata=_meta(
        "DRIFTGUARD_JSONNET", "the jsonnet binary (a path, or a name on PATH) for *.jsonnet files"))
    render_timeout: float = field(default=60.0, metadata=_meta(
        "DRIFTGUARD_RENDER_TIMEOUT", "longest one kustomize, helm or jsonnet run may take", kind="duration"))
    wave_timeout: float = field(default=300.0, metadata=_meta(
        "DRIFTGUARD_WAVE_TIMEOUT", "longest a sync waits for one wave's objects to be healthy, or one wave's hooks to "
        "complete, before it fails", kind="duration"))
    render_memory: int = field(default=2048, metadata=_meta(
        "DRIFTGUARD_RENDER_MEMORY", "address space of one render tool process, MiB (Go tools reserve ~1 GiB at "
        "start; the container's memory limit is the hard bound)"))
    render_max_output: int = field(default=64, metadata=_meta(
        "DRIFTGUARD_RENDER_MAX_OUTPUT", "largest output of one render tool run, MiB"))
    max_file_bytes: int = field(default=8 * 1024 * 1024, metadata=_meta(
        "DRIFTGUARD_MAX_FILE_BYTES", "largest file read from a revision"))
    max_revision_bytes: int = field(default=256 * 1024 * 1024, metadata=_meta(
        "DRIFTGUARD_MAX_REVISION_BYTES", "most bytes read from one revision (the manifests of a path; the whole "
        "repository for kustomize, helm and jsonnet)"))
    max_objects: int = field(default=50_000, metadata=_meta(
        "DRIFTGUARD_MAX_OBJECTS", "most objects one revision of an Application may render to"))
    max_yaml_nodes: int = field(default=1_000_000, metadata=_meta(
        "DRIFTGUARD_MAX_YAML_NODES", "most nodes one YAML document may expand to (aliases counted as expanded)"))
    max_yaml_depth: int = field(default=200, metadata=_meta(
        "DRIFTGUARD_MAX_YAML_DEPTH", "deepest nesting of one YAML or JSON document"))
    mark_key_file: Path | None = field(default=None, metadata=_meta(
        "DRIFTGUARD_MARK_KEY_FILE", "the key (hex) that authenticates the webhook's break-glass grants and drift "
        "marks, shared with the webhook (unset: no grant or mark is believed)"))
    break_glass_ttl: float = field(default=3600.0, metadata=_meta(
        "DRIFTGUARD_BREAK_GLASS_TTL", "longest a break-glass grant holds after it was granted, whatever its expiry "
        "says", kind="duration"))
    audit_trail: bool = field(default=True, metadata=_meta(
        "DRIFTGUARD_AUDIT_TRAIL", "the leader folds the webhook's audit Events (every namespace) into the durable "
        "audit trail: a ConfigMap per Application in --audit-namespace, which `driftguard audit --kubeconfig` reads",
        kind="switch"))
    audit_namespace: str = field(default="", metadata=_meta(
        "DRIFTGUARD_AUDIT_NAMESPACE", f"the namespace the audit trail ConfigMaps are kept in (unset: {NAMESPACE})"))
    audit_retention: float = field(default=7 * 86400.0, metadata=_meta(
        "DRIFTGUARD_AUDIT_RETENTION", "audit trail entries last seen longer ago than this are dropped",
        kind="duration", shown="168h"))
    audit_max_records: int = field(default=500, metadata=_meta(
        "DRIFTGUARD_AUDIT_MAX_RECORDS", "most entries (Event series) one trail keeps, the newest (and at most "
        "768 KiB)"))
    notify_loopback: bool = field(default=False, metadata=_meta(
        "DRIFTGUARD_NOTIFY_LOOPBACK", "allow notification receivers on loopback (a relay beside the reconciler, "
        "tests); link-local addresses are always refused", kind="switch"))
    audit_flush: float = field(default=10.0, metadata=_meta(
        "DRIFTGUARD_AUDIT_FLUSH", "a trail is written at most this often, and only when it changed",
        kind="duration"))


    @property
    def application_patterns(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.application_namespaces.split(",") if p.strip())

    def watches(self, namespace: str) -> bool:
        """Whether Applications in ``namespace`` are this reconciler's: ``--namespace`` (every one when "") or a
        ``--application-namespaces`` pattern."""
        return (not self.namespace or namespace == self.namespace
                or any(fnmatch.fnmatchcase(namespace, p) for p in self.application_patterns))

    @property
    def applications_in(self) -> str:
        """The namespace the Applications watch covers ("": every one, filtered by ``watches``)."""
        return "" if self.application_patterns else self.namespace

    @property
    def projects_in(self) -> str:
        """Where Projects live: ``--project-namespace``, else the Applications' namespace, else driftguard's."""
        return self.project_namespace or self.namespace or self.system_namespace


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = field(default=None, metadata=_meta(
        "KUBECONFIG", "kubeconfig file (unset: the in-cluster ServiceAccount)"))
    context: str | None = field(default=None, metadata=_meta("DRIFTGUARD_CONTEXT", "kubeconfig context"))
    namespace: str = field(default=NAMESPACE, metadata=_meta(
        "DRIFTGUARD_NAMESPACE", "namespace whose Applications to reconcile (--all-namespaces: every one)"))
    listen: str = field(default="127.0.0.1:8081", metadata=_meta(
        "DRIFTGUARD_RECONCILER_LISTEN", "HTTP address for /healthz, /readyz, /metrics, POST /refresh and POST /sync"))
    cache_dir: Path = field(default_factory=default_cache_dir, metadata=_meta(
        "DRIFTGUARD_CACHE_DIR", "git mirrors", shown="$XDG_CACHE_HOME/driftguard/git"))
    leader_elect: bool = field(default=True, metadata=_meta(
        "DRIFTGUARD_LEADER_ELECT", "campaign for a Lease so only one replica acts", kind="switch"))
    lease_namespace: str = field(default="", metadata=_meta(
        "DRIFTGUARD_LEASE_NAMESPACE", f"the Lease's namespace (unset: --namespace, else {NAMESPACE})"))
    lease_name: str = field(default=LEASE_NAME, metadata=_meta("DRIFTGUARD_LEASE_NAME", "the Lease's name"))
    lease_duration: float = field(default=15.0, metadata=_meta(
        "DRIFTGUARD_LEASE_DURATION", "how long a Lease not renewed stays held", kind="duration"))
    identity: str = field(default_factory=default_identity, metadata=_meta(
        "POD_NAME", "this replica's name in the Lease", shown="$POD_NAME, else host_random"))
    install_crd: bool = field(default=False, metadata=_meta(
        "DRIFTGUARD_INSTALL_CRD", "apply the Application and Project CRDs at start", kind="switch"))
    refresh_token: str = field(default="", metadata=_meta(
        "DRIFTGUARD_REFRESH_TOKEN", "bearer token required by POST /refresh (unset: POST /refresh is disabled)"))
    ui_service_account: str = field(default="", metadata=_meta(
        "DRIFTGUARD_UI_SERVICE_ACCOUNT", "NAMESPACE/NAME of the web UI's ServiceAccount, the only caller whose POST "
        "/sync may name the user it is for (RBAC is asked about that user; unset: no one may)"))
    log_format: str = field(default="text", metadata=_meta("DRIFTGUARD_LOG_FORMAT", "log lines as text or json"))
    settings: Settings = field(default_factory=Settings)


def _declared(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.metadata]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (default None, so ``from_sources`` can tell "not given"), and
    ``--all-namespaces``."""
    for f in _declared(Options) + _declared(Settings):
        help_text = f"{f.metadata['help']} [env {f.metadata['env']}]"
        if f.metadata["kind"] == "switch":
            parser.add_argument(_flag(f.name), dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=help_text)
        else:
            parser.add_argument(_flag(f.name), dest=f.name, default=None, metavar=f.name.upper(), help=help_text)
    parser.add_argument("--all-namespaces", action="store_true", default=None,
                        help="reconcile Applications in every namespace (as --namespace '')")


def from_sources(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Options:
    """Options from flags, then the environment, then defaults; ValueError naming the setting if bad."""
    environ = environ or {}

    def values(cls: type[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for f in _declared(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = environ.get(f.metadata["env"])
            if raw is not None:
                found[f.name] = _parse(f, raw)
        return found

    chosen = values(Options)
    if args is not None and getattr(args, "all_namespaces", None):
        chosen["namespace"] = ""
    options = Options(**chosen)
    settings = Settings(namespace=options.namespace, cache_dir=options.cache_dir, **values(Settings))
    options = dataclasses.replace(options, settings=settings)
    _check(options)
    return options


def reference() -> list[tuple[str, str, str, str]]:
    """(flag, env, default, help) for every setting — the README's table."""
    rows = []
    for cls in (Options, Settings):
        for f in _declared(cls):
            shown = f.metadata["shown"]
            if shown is None:
                shown = _show(f.default)
            rows.append((_flag(f.name), f.metadata["env"], shown, f.metadata["help"]))
    return rows


def _show(default: Any) -> str:
    if default is None or default == "":
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return f"{default:g}s"
    return str(default)


def _parse(f: dataclasses.Field[Any], raw: Any) -> object:
    if isinstance(raw, bool):  # a switch given as a flag
        return raw
    text, kind = str(raw), f.metadata["kind"]
    what = f"{_flag(f.name)} / {f.metadata['env']}"
    try:
        if kind == "duration":
            return parse_duration(text)
        if kind == "switch":
            return _parse_bool(text)
        if f.type in ("int", int):
            return int(text)
    except ValueError as e:
        raise ValueError(f"{what}: {text!r} is not a valid {kind or 'integer'}") from e
    if f.name == "cache_dir":
        return Path(text)
    if f.name == "mark_key_file":
        return Path(text) if text else None
    return text


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def _check(options: Options) -> None:
    if options.log_format not in LOG_FORMATS:
        raise ValueError(f"--log-format: {options.log_format!r} is not text or json")
    if not options.listen.rpartition(":")[2].isdigit() or ":" not in options.listen:
        raise ValueError(f"--listen: {options.listen!r} is not host:port")
    s = options.settings
    for name in ("workers", "apply_concurrency", "heal_workers", "fight_limit", "render_memory", "render_max_output",
                 "max_file_bytes", "max_revision_bytes", "max_objects", "max_yaml_nodes", "max_yaml_depth",
                 "audit_max_records"):
        if getattr(s, name) <= 0:
            raise ValueError(f"{_flag(name)} must be positive")
    for name in ("resync_interval", "max_backoff", "watch_timeout", "fight_window", "stop_timeout",
                 "perimeter_interval", "perimeter_settle", "break_glass_ttl", "render_timeout", "wave_timeout",
                 "audit_retention", "audit_flush"):
        if getattr(s, name) <= 0:
            raise ValueError(f"{_flag(name)} must be a positive duration")
    if options.lease_duration <= 0:
        raise ValueError("--lease-duration must be a positive duration")
    if options.ui_service_account:
        try:
            parse_account(options.ui_service_account)
        except ValueError as e:
            raise ValueError(f"--ui-service-account: {e}") from None
