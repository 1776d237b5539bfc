"""The API server's identity towards admission webhooks: a CA of its own, a client certificate, and the
two files kube-apiserver reads to present it (``--admission-control-config-file``).

``write(directory, names, install_dir)`` writes ``ca.crt``/``ca.key`` (reused when present: the
webhook's ``--client-ca-file`` keeps trusting it), ``client.crt``/``client.key``, a kubeconfig giving the
certificate to the webhooks in ``names`` (``<service>.<namespace>.svc``, ``host:port``, or ``*``) and an
AdmissionConfiguration naming that kubeconfig for both webhook admission plugins. Paths inside the
two files point into ``install_dir`` — where they will be on the API server's host (the same
directory in local mode). Both are JSON, which kube-apiserver reads as YAML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from certs.authority import CertificateAuthority

CLIENT_USER = "kube-apiserver-webhook-client"
PLUGINS = ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")


def write(directory: Path, names: Sequence[str], install_dir: Path | None = None) -> CertificateAuthority:
    installed = install_dir or directory
    ca, _ = CertificateAuthority.load_or_generate(directory, "driftguard-webhook-client-ca")
    ca.issue_client(CLIENT_USER).write(directory / "client.crt", directory / "client.key")
    user = {"client-certificate": str(installed / "client.crt"), "client-key": str(installed / "client.key")}
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "preferences": {},
                  "users": [{"name": name, "user": user} for name in names]}
    (directory / "webhook-client.kubeconfig").write_text(json.dumps(kubeconfig, indent=2) + "\n")
    webhook_admission = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                         "kubeConfigFile": str(installed / "webhook-client.kubeconfig")}
    admission = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
                 "plugins": [{"name": plugin, "configuration": webhook_admission} for plugin in PLUGINS]}
    (directory / "admission.yaml").write_text(json.dumps(admission, indent=2) + "\n")
    return ca
