"""``driftguard reconcile`` (run the reconciler) and ``driftguard status`` (print Applications)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from driftguard import logs
from driftguard.kube import Kube, KubeError
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.application import parse_duration
from reconciler.controller import Settings
from reconciler.crd import APPLICATIONS
from reconciler.service import LEASE_NAME, Options, default_cache_dir, default_identity, run


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``reconcile`` and ``status``."""
    reconcile = subparsers.add_parser("reconcile", help="run the git → cluster reconciler")
    _connection(reconcile)
    reconcile.add_argument("--namespace", default="driftguard-system",
                           help="namespace whose Applications to reconcile (default driftguard-system)")
    reconcile.add_argument("--all-namespaces", action="store_true", help="reconcile Applications in every namespace")
    reconcile.add_argument("--listen", default="127.0.0.1:8081",
                           help="HTTP address for /healthz, /readyz, /metrics and POST /refresh (default %(default)s)")
    reconcile.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                           help="git cache (default %(default)s)")
    reconcile.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                           help="campaign for a Lease so only one replica acts (default on)")
    reconcile.add_argument("--lease-namespace", default="", help="the Lease's namespace (default: --namespace)")
    reconcile.add_argument("--lease-name", default=LEASE_NAME)
    reconcile.add_argument("--lease-duration", type=parse_duration, default=15.0)
    reconcile.add_argument("--identity", default=default_identity(),
                           help="this replica's name in the Lease (default $POD_NAME, else host_random)")
    reconcile.add_argument("--resync-interval", type=parse_duration, default=60.0,
                           help="full comparison of every object at least this often (default 60s)")
    reconcile.add_argument("--workers", type=int, default=2, help="Applications synced concurrently")
    reconcile.add_argument("--apply-concurrency", type=int, default=4, help="objects applied concurrently")
    reconcile.add_argument("--install-crd", action="store_true", help="apply the Application CRD at start")
    reconcile.add_argument("--refresh-token", default=os.environ.get("DRIFTGUARD_REFRESH_TOKEN", ""),
                           help="bearer token required by POST /refresh (env DRIFTGUARD_REFRESH_TOKEN)")
    reconcile.add_argument("--log-format", choices=("text", "json"), default="text")
    reconcile.set_defaults(func=_reconcile)

    status = subparsers.add_parser("status", help="print every Application's sync state")
    _connection(status)
    status.add_argument("-n", "--namespace", default="driftguard-system")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.add_argument("--json", action="store_true", help="print the Applications' status as JSON")
    status.set_defaults(func=_status)


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None,
                        help="kubeconfig file (default $KUBECONFIG; none: in-cluster ServiceAccount)")
    parser.add_argument("--context", default=None)


def _reconcile(args: argparse.Namespace) -> int:
    logs.configure(args.log_format, "debug" if getattr(args, "verbose", False) else "info", quiet=logs.QUIET)
    namespace = "" if args.all_namespaces else args.namespace
    options = Options(
        kubeconfig=args.kubeconfig, context=args.context, namespace=namespace, listen=args.listen,
        cache_dir=args.cache_dir, leader_elect=args.leader_elect, lease_namespace=args.lease_namespace,
        lease_name=args.lease_name, lease_duration=args.lease_duration, identity=args.identity,
        install_crd=args.install_crd, refresh_token=args.refresh_token,
        settings=Settings(namespace=namespace, cache_dir=args.cache_dir, resync_interval=args.resync_interval,
                          workers=args.workers, apply_concurrency=args.apply_concurrency),
    )
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


COLUMNS = ("NAMESPACE", "NAME", "SYNC", "HEALTH", "REVISION", "OBJECTS", "DRIFT", "LAST SYNC", "MESSAGE")


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
