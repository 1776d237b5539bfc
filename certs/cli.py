"""``driftguard certs``: generate the webhook's CA and serving certificate into a directory.

Prints the paths it wrote, never key contents. An existing ``ca.crt``/``ca.key`` pair in the
directory is reused, so re-running rotates the serving certificate without changing the CA (and
therefore without changing the ``caBundle`` of the webhook configurations).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from certs.authority import CertificateAuthority, service_dns_names


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``certs generate`` on the top-level ``driftguard`` parser."""
    certs = subparsers.add_parser("certs", help="generate TLS material for the webhook")
    actions = certs.add_subparsers(dest="certs_command", required=True)
    generate = actions.add_parser("generate", help="write ca.crt, ca.key, tls.crt, tls.key into --dir")
    generate.add_argument("--dir", type=Path, required=True, help="output directory")
    generate.add_argument("--service", default="driftguard-webhook", help="Service name (DNS SANs)")
    generate.add_argument("--namespace", default="driftguard-system", help="Service namespace")
    generate.add_argument("--ip", action="append", default=None, help="IP SAN (repeatable; default 127.0.0.1)")
    generate.add_argument("--days", type=int, default=365, help="serving certificate validity")
    generate.set_defaults(func=run_generate)
    install = actions.add_parser(
        "install", help="create the webhook's TLS Secret in the cluster and inject the caBundle into its webhooks")
    install.add_argument("--dir", type=Path, required=True,
                         help="where the CA is kept (reused when present: re-running rotates only the serving cert)")
    install.add_argument("--kubeconfig", default=None, help="kubeconfig (default $KUBECONFIG, else in-cluster)")
    install.set_defaults(func=run_install)


def run_generate(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    ca, reused = CertificateAuthority.load_or_generate(directory)
    serving = ca.issue_serving(
        common_name=f"{args.service}.{args.namespace}.svc",
        dns_names=service_dns_names(args.service, args.namespace),
        ip_addresses=args.ip or ["127.0.0.1"],
        validity=dt.timedelta(days=args.days),
    )
    serving.write(directory / "tls.crt", directory / "tls.key")
    print(f"{'reused' if reused else 'wrote'} CA: {directory / 'ca.crt'} (key {directory / 'ca.key'})")
    print(f"wrote serving certificate: {directory / 'tls.crt'} (key {directory / 'tls.key'})")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from driftguard.install import install_in_cluster  # imports the Kubernetes client only when needed
    from driftguard.kube import Kube, KubeError
    from driftguard.kube.resources import ResourceError

    ca, reused = CertificateAuthority.load_or_generate(args.dir)
    print(f"{'reused' if reused else 'created'} CA {args.dir / 'ca.crt'} (keep {args.dir / 'ca.key'} secret)")
    try:
        with Kube(args.kubeconfig or os.environ.get("KUBECONFIG") or None) as kube:
            install_in_cluster(kube, ca, progress=print)
    except (KubeError, ResourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
