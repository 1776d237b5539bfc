"""The webhook's subcommands: ``driftguard webhook`` (serve), ``webhook-config`` and ``audit``.

``add_cli`` registers them on the ``driftguard`` parser; ``main`` is the same CLI on its own, for
``python -m webhook``. Heavy modules (gunicorn, Flask, prometheus_client) are imported only when a
command runs: ``serve`` must set up Prometheus' multiprocess directory before anything imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from driftguard.core.names import NAMESPACE
from webhook import auditcli, registration, settings


class _Logged(Protocol):
    @property
    def log_format(self) -> str: ...
    @property
    def log_level(self) -> str: ...


Served = TypeVar("Served", bound=_Logged)


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "webhook", help="run the admission webhook (gunicorn over TLS)",
        description="Run the admission webhook. Every flag has an environment variable; flags win.")
    settings.add_arguments(serve)
    serve.set_defaults(func=run_webhook)

    config = subparsers.add_parser(
        "webhook-config", help="print the Validating/MutatingWebhookConfiguration objects as JSON",
        description="Render the webhook configurations, pointing at a URL (local mode) or a Service.")
    target = config.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base URL of the webhook, e.g. https://127.0.0.1:8443")
    target.add_argument("--service", help="Service name (in --namespace) in front of the webhook")
    config.add_argument("--namespace", default=NAMESPACE, help="driftguard's namespace")
    config.add_argument("--port", type=int, default=443, help="Service port (with --service)")
    config.add_argument("--ca-file", type=Path, required=True, help="PEM CA that signed the serving certificate")
    config.add_argument("--name", default=registration.NAME, help="name of both configurations")
    config.add_argument("--reconciler-users", default=",".join(registration.RECONCILER_USERS),
                        help="the reconciler's ServiceAccount user(s), as the webhook's --reconciler-users; "
                             "comma-separated")
    config.add_argument("--reconciler-pod-prefix", default=settings.RECONCILER_POD_PREFIX,
                        help="as the webhook's --reconciler-pod-prefix")
    config.set_defaults(func=run_webhook_config)

    audit = subparsers.add_parser("audit", help="list and filter the webhook's audit records")
    auditcli.add_arguments(audit)
    audit.set_defaults(func=auditcli.run)


def run_webhook(args: argparse.Namespace) -> int:
    from webhook import serve

    def load() -> settings.Settings:
        chosen = settings.from_sources(args, os.environ)
        if chosen.cert_file is None:
            raise ValueError("the webhook serves TLS only: give --cert-file and --key-file")
        return chosen

    return serve_command("webhook", load, serve.serve)


def serve_command(command: str, load: Callable[[], Served], serve: Callable[[Served], None]) -> int:
    """What ``driftguard webhook`` and ``driftguard ui`` share: ``load`` the settings (a ValueError is exit 2,
    naming the problem), configure logging, ``serve`` TLS until stopped (certificate files that cannot be
    served: exit 1)."""
    from webhook import logs
    from webhook.tls import CertificateFilesError

    try:
        chosen = load()
    except ValueError as error:
        print(f"driftguard {command}: {error}", file=sys.stderr)
        return 2
    logs.configure(chosen.log_format, chosen.log_level)
    try:
        serve(chosen)
    except CertificateFilesError as error:
        print(f"driftguard {command}: cannot serve TLS: {error}", file=sys.stderr)
        return 1
    return 0


def run_webhook_config(args: argparse.Namespace) -> int:
    ca_bundle = args.ca_file.read_bytes()
    if args.url:
        client = registration.url_client(args.url, ca_bundle)
    else:
        client = registration.service_client(args.service, args.namespace, ca_bundle, port=args.port)
    reconcilers = [user.strip() for user in args.reconciler_users.split(",") if user.strip()]
    objects = registration.configurations(client, name=args.name, namespace=args.namespace,
                                          reconciler_users=reconcilers,
                                          reconciler_pod_prefix=args.reconciler_pod_prefix)
    print(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
