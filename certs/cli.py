"""``driftguard certs``: generate the webhook's CA and serving certificate into a directory.

Prints the paths it wrote, never key contents. An existing ``ca.crt``/``ca.key`` pair in the
directory is reused, so re-running rotates the serving certificate without changing the CA (and
therefore without changing the ``caBundle`` of the webhook configurations).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TypeAlias

from certs import webhookclient
from certs.authority import CertificateAuthority, service_dns_names

Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_cli(subparsers: Actions) -> Actions:
    """Register ``certs generate`` on the top-level parser; return the ``certs`` actions for others to extend.

    ``certs install`` talks to a cluster, so it lives with the installer (``driftguard.install.cli``):
    this package stays a leaf that needs nothing but ``cryptography``.
    """
    certs = subparsers.add_parser("certs", help="generate TLS material for the webhook")
    actions = certs.add_subparsers(dest="certs_command", required=True)
    generate = actions.add_parser("generate", help="write ca.crt, ca.key, tls.crt, tls.key into --dir")
    generate.add_argument("--dir", type=Path, required=True, help="output directory")
    generate.add_argument("--service", default="driftguard-webhook", help="Service name (DNS SANs)")
    generate.add_argument("--namespace", default="driftguard-system",  # core.names.NAMESPACE; certs is a leaf
                          help="Service namespace")
    generate.add_argument("--ip", action="append", default=None, help="IP SAN (repeatable; default 127.0.0.1)")
    generate.add_argument("--days", type=int, default=365, help="serving certificate validity")
    generate.set_defaults(func=run_generate)
    client = actions.add_parser(
        "webhook-client", help="the API server's webhook client identity: CA, certificate, kubeconfig, "
        "AdmissionConfiguration (for --admission-control-config-file) into --dir")
    client.add_argument("--dir", type=Path, required=True,
                        help="output directory (not the serving CA's: this CA must sign nothing else)")
    client.add_argument("--service", default="driftguard-webhook", help="the webhook's Service name")
    client.add_argument("--namespace", default="driftguard-system", help="the webhook's namespace")
    client.add_argument("--install-dir", type=Path, default=Path("/etc/kubernetes/driftguard"),
                        help="where the files will be on the API server's hosts (paths inside the two files)")
    client.set_defaults(func=run_webhook_client)
    return actions


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


def run_webhook_client(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    webhookclient.write(directory, [f"{args.service}.{args.namespace}.svc"], args.install_dir)
    print(f"wrote webhook client CA {directory / 'ca.crt'}, certificate {directory / 'client.crt'}, "
          f"{directory / 'webhook-client.kubeconfig'} and {directory / 'admission.yaml'}")
    print(f"copy client.crt, client.key, webhook-client.kubeconfig and admission.yaml to {args.install_dir} on every "
          f"API server host and add --admission-control-config-file={args.install_dir / 'admission.yaml'}; give the "
          f"webhook ca.crt as --client-ca-file")
    return 0
