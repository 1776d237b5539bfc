"""``driftguard ui``: serve the web UI. Every flag has an environment variable; flags win."""

from __future__ import annotations

import argparse
import os

from ui import settings


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ui", help="run the web UI (gunicorn over TLS; reads through the Kubernetes API, as each user's RBAC allows)",
        description="Run the web UI. Every flag has an environment variable; flags win.")
    settings.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ui import serve
    from webhook.cli import serve_command

    def load() -> settings.Settings:
        chosen = settings.from_sources(args, os.environ)
        for path in (chosen.login_token_file, chosen.refresh_token_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist or is not a file")
        return chosen

    return serve_command("ui", load, serve.serve)
