"""Running the webhook as deployed: gunicorn, TLS from rotating files, JSON logs, shared metrics.

gunicorn is imported here and nowhere else. ``WebhookServer`` is a ``BaseApplication`` (no gunicorn
command line of its own): every option comes from ``Settings``. Workers are ``event`` by default
(``webhook.worker``: an event loop does the TLS handshakes and reads whole requests under deadlines,
threads only run the app) — gunicorn's ``gthread`` parks a thread on every connection that is slow to
handshake or to send its request, so 16 trickling connections stopped it (issue 14); ``gthread`` and
``sync`` stay selectable for comparison (``bench/bench_webhook.py --matrix``).

Prometheus multiprocess mode: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers create their metrics, so ``/metrics`` on any worker reports all of them.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import resource
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from webhook import logs
from webhook.settings import Settings
from webhook.tls import CertificateReloader
from webhook.worker import Limits, WebhookWorker, own_worker_hooks

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KEEPALIVE = 75  # seconds; the API server's client keeps idle connections 90 s


class ServingSettings(Protocol):
    """What the serving stack reads: the webhook's ``Settings`` and the UI's ``ui.settings.Settings`` both have it."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def cert_file(self) -> Path | None: ...
    @property
    def key_file(self) -> Path | None: ...
    @property
    def cert_warning_days(self) -> int: ...
    @property
    def client_ca_file(self) -> Path | None: ...
    @property
    def workers(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def worker_class(self) -> str: ...
    @property
    def handshake_timeout(self) -> float: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def log_format(self) -> str: ...
    @property
    def log_level(self) -> str: ...


AppLoader = Callable[[CertificateReloader], Any]


class TLSServer(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn over TLS from rotating files with the event worker, for any WSGI app ``load_app`` builds
    (in each worker, after the fork). The webhook and the web UI (``ui.serve``) both run on it."""

    def __init__(self, settings: ServingSettings, load_app: AppLoader, *, name: str,
                 hooks: dict[str, Callable[..., None]] | None = None) -> None:
        if settings.cert_file is None or settings.key_file is None:
            raise ValueError(f"the {name} serves TLS only: give --cert-file and --key-file")
        self.settings = settings
        self.load_app = load_app
        self.proc_name = f"driftguard-{name}"
        self.hooks = hooks or {}
        self.reloader = CertificateReloader(settings.cert_file, settings.key_file,
                                            warn_within=dt.timedelta(days=settings.cert_warning_days),
                                            client_ca_file=settings.client_ca_file)
        super().__init__()

    def load_config(self) -> None:
        options = {**gunicorn_options(self.settings, self._ssl_context, proc_name=self.proc_name), **self.hooks}
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = self.load_app(self.reloader)
        _settle_garbage_collector()
        return app

    def _ssl_context(self, config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        log.debug("TLS connection accepted")  # gunicorn 23 asks once per connection
        return self.reloader.context()


class WebhookServer(TLSServer):
    def __init__(self, settings: Settings) -> None:
        def create(reloader: CertificateReloader) -> Any:
            from webhook.app import create_app

            return create_app(settings, certificate=reloader)

        super().__init__(settings, create, name="webhook", hooks=dict(WEBHOOK_HOOKS))


class WebhookLogger(Logger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's logger, minus the access-line work nobody reads.

    With ``logconfig_dict`` set, gunicorn builds every request's access-log atoms (a dict of all
    headers and environ entries, a strftime) before ``gunicorn.access`` — at WARNING — drops the
    line. Asking the logger first makes that a level check.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def gunicorn_options(settings: ServingSettings, ssl_context: Callable[..., ssl.SSLContext], *,
                     proc_name: str = "driftguard-webhook") -> dict[str, Any]:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": worker_class(settings),
        "threads": settings.threads,
        "worker_connections": settings.max_connections,
        "certfile": str(settings.cert_file),
        "keyfile": str(settings.key_file),
        "ssl_context": ssl_context,
        "keepalive": KEEPALIVE,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "logger_class": WebhookLogger,
        "logconfig_dict": logs.dict_config(settings.log_format, settings.log_level),
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,  # noqa: S108 - heartbeat, not data
        "proc_name": proc_name,
        **(own_worker_hooks(settings.max_body_bytes) if settings.worker_class != "event" else {}),
    }


def worker_class(settings: ServingSettings) -> type[Any] | str:
    """The gunicorn worker: ``WebhookWorker`` with these settings' limits, or gunicorn's own by name."""
    if settings.worker_class != "event":
        return settings.worker_class
    limits = Limits(handshake_timeout=settings.handshake_timeout, request_timeout=settings.request_timeout,
                    keepalive=KEEPALIVE, max_connections=settings.max_connections,
                    max_body_bytes=settings.max_body_bytes, authenticate=settings.client_ca_file is not None)
    return type("WebhookWorker", (WebhookWorker,), {"limits": limits})


def raise_file_limit(wanted: int) -> None:
    """Lift the soft descriptor limit towards ``wanted`` (capped by the hard limit): connections are cheap now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def serve(settings: Settings) -> None:
    """Run gunicorn in the foreground until SIGTERM/SIGINT.

    ``CertificateFilesError`` (unreadable files, a key that is not the certificate's) comes before
    anything listens.
    """
    metrics_dir = prepare_metrics_dir(settings.metrics_dir)
    raise_file_limit(settings.workers * settings.max_connections + 256)
    try:
        WebhookServer(settings).run()
    finally:
        if settings.metrics_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def prepare_metrics_dir(wanted: Path | None) -> Path:
    """An empty multiprocess directory, exported for the workers' metrics.

    ``prometheus_client`` picks its value class when first imported; the ``driftguard`` console
    script may already have imported it (another subcommand's module), so it is switched here too.
    Metrics are created after the fork, in each worker's ``create_app``.
    """
    directory = wanted or Path(tempfile.mkdtemp(prefix="driftguard-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()
    return directory


def _settle_garbage_collector() -> None:
    """Keep the start-up heap (Flask, the kubernetes client's thousands of classes) out of collections.

    Without this a full collection scans every imported module's objects and stalls a request for
    tens of milliseconds — the p99 of the benchmark; requests themselves create no long-lived cycles.
    """
    gc.collect()
    gc.freeze()


def _worker_exit(server: Any, worker: Any) -> None:
    """Write what the worker's audit queue still holds before it goes (SIGTERM in a rolling update)."""
    webhook = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("driftguard")
    if webhook is not None:
        webhook.recorder.close()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


WEBHOOK_HOOKS: Final[dict[str, Callable[..., None]]] = {"child_exit": _child_exit, "worker_exit": _worker_exit}
