"""``driftguard ui``: serve the web UI. Every flag has an environment variable; flags win."""

from __future__ import annotations

import argparse
import os
import sys

from ui import settings


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ui", help="run the web UI (gunicorn over TLS; reads through the Kubernetes API, as each user's RBAC allows)",
        description="Run the web UI. Every flag has an environment variable; flags win.")
    settings.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ui import serve
    from webhook import logs
    from webhook.tls import CertificateFilesError

    try:
        chosen = settings.from_sources(args, os.environ)
    except ValueError as error:
        print(f"driftguard ui: {error}", file=sys.stderr)
        return 2
    for path in (chosen.login_token_file, chosen.refresh_token_file):
        if path is not None and not path.is_file():
            print(f"driftguard ui: {path} does not exist or is not a file", file=sys.stderr)
            return 2
    logs.configure(chosen.log_format, chosen.log_level)
    try:
        serve.serve(chosen)
    except CertificateFilesError as error:
        print(f"driftguard ui: cannot serve TLS: {error}", file=sys.stderr)
        return 1
    return 0
