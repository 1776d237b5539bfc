"""``driftguard reconcile`` (run the reconciler) and ``driftguard status`` (print Applications)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from driftguard import logs
from driftguard.core.names import NAMESPACE
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster, ResourceError
from reconciler import settings
from reconciler.crd import APPLICATIONS
from reconciler.service import run


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``reconcile`` and ``status``."""
    reconcile = subparsers.add_parser(
        "reconcile", help="run the git → cluster reconciler",
        description="Run the reconciler. Every flag has an environment variable; flags win.")
    settings.add_arguments(reconcile)
    reconcile.set_defaults(func=_reconcile)

    status = subparsers.add_parser("status", help="print every Application's sync state")
    _connection(status)
    status.add_argument("-n", "--namespace", default=NAMESPACE)
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.add_argument("--json", action="store_true", help="print the Applications' status as JSON")
    status.set_defaults(func=_status)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None,
                        help="kubeconfig file (default $KUBECONFIG; none: in-cluster ServiceAccount)")
    parser.add_argument("--context", default=None)


def _reconcile(args: argparse.Namespace) -> int:
    try:
        options = settings.from_sources(args, os.environ)
    except ValueError as e:
        print(f"driftguard reconcile: {e}", file=sys.stderr)
        return 2
    logs.configure(options.log_format, "debug" if getattr(args, "verbose", False) else "info", quiet=logs.QUIET)
    try:
        return run(options)
    except (KubeError, ResourceError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _status(args: argparse.Namespace) -> int:
    try:
        with Kube(args.kubeconfig, context=args.context) as kube:
            items, _ = Cluster(kube).list(APPLICATIONS, "" if args.all_namespaces else args.namespace)
    except (KubeError, ResourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump([_summary(i) | {"status": i.get("status") or {}} for i in items], sys.stdout, indent=2)
        print()
    else:
        print_table(items, sys.stdout)
    return 0


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    metadata = item.get("metadata") or {}
    return {"namespace": metadata.get("namespace"), "name": metadata.get("name")}


COLUMNS = ("NAMESPACE", "NAME", "PROJECT", "SYNC", "HEALTH", "REVISION", "OBJECTS", "DRIFT", "LAST SYNC", "MESSAGE")


def rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for item in sorted(items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"])):
        status = item.get("status") or {}
        sync, health = status.get("sync") or {}, status.get("health") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        drift = [d for d in status.get("drift") or [] if d.get("state") != "Reverted"]
        message = "" if ready.get("status") == "True" else str(ready.get("message") or "")
        out.append((
            str(item["metadata"].get("namespace", "")), str(item["metadata"]["name"]),
            str((item.get("spec") or {}).get("project") or "default"),
            str(sync.get("status") or "Unknown"), str(health.get("status") or "Unknown"),
            str(sync.get("shortRevision") or "-"), str(status.get("inventoryCount", 0)), str(len(drift)),
            str(status.get("lastSyncTime") or "-"), message[:100],
        ))
    return out


def print_table(items: list[dict[str, Any]], out: TextIO) -> None:
    table = [COLUMNS, *rows(items)]
    if len(table) == 1:
        print("No Applications found.", file=out)
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
