"""The ``driftguard`` console script: one parser, one ``add_cli`` line per subcommand.

Each subcommand module registers itself with ``add_cli(subparsers)`` and sets ``func``, a callable
from the parsed arguments to an exit code. This file stays a table of contents.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from certs import cli as certs_cli
from driftguard.install import cli as install_cli
from driftguard.local import commands as local_cli
from driftguard.local import rendercmd, suggest, verbs
from driftguard.local.cluster import commands as cluster_cli
from reconciler import cli as reconciler_cli
from ui import cli as ui_cli
from webhook import cli as webhook_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftguard", description="All changes via git, enforced.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    subparsers = parser.add_subparsers(dest="command", required=True)
    local_cli.add_cli(subparsers)
    cluster_cli.add_cli(subparsers)
    install_cli.add_certs_install(certs_cli.add_cli(subparsers))
    install_cli.add_doctor(subparsers)
    install_cli.add_import(subparsers)
    webhook_cli.add_cli(subparsers)
    reconciler_cli.add_cli(subparsers)
    rendercmd.add_cli(subparsers)
    verbs.add_cli(subparsers)
    suggest.add_cli(subparsers)
    ui_cli.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
