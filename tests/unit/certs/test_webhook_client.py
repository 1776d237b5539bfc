"""The API server's webhook client identity: what ``certs webhook-client`` and the local control plane write."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs import webhookclient
from driftguard.cli import build_parser


def test_the_files_name_the_webhook_and_point_into_the_install_directory(tmp_path: Path) -> None:
    ca = webhookclient.write(tmp_path, ["driftguard-webhook.driftguard-system.svc"], Path("/etc/kubernetes/dg"))
    kubeconfig = json.loads((tmp_path / "webhook-client.kubeconfig").read_text())
    assert kubeconfig["users"] == [{"name": "driftguard-webhook.driftguard-system.svc", "user": {
        "client-certificate": "/etc/kubernetes/dg/client.crt", "client-key": "/etc/kubernetes/dg/client.key"}}]
    admission = json.loads((tmp_path / "admission.yaml").read_text())
    assert [plugin["name"] for plugin in admission["plugins"]] == ["ValidatingAdmissionWebhook",
                                                                  "MutatingAdmissionWebhook"]
    assert {plugin["configuration"]["kubeConfigFile"] for plugin in admission["plugins"]} == {
        "/etc/kubernetes/dg/webhook-client.kubeconfig"}
    client = x509.load_pem_x509_certificate((tmp_path / "client.crt").read_bytes())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem)
    assert client.issuer == issuer.subject
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    client.verify_directly_issued_by(issuer)
    assert (tmp_path / "client.key").stat().st_mode & 0o077 == 0, "the key is private"


def test_rerunning_keeps_the_ca_the_webhook_trusts(tmp_path: Path) -> None:
    first = webhookclient.write(tmp_path, ["*"])
    second = webhookclient.write(tmp_path, ["*"])
    assert first.cert_pem == second.cert_pem


def test_the_command(tmp_path: Path) -> None:
    args = build_parser().parse_args(["certs", "webhook-client", "--dir", str(tmp_path / "out")])
    assert args.func(args) == 0
    kubeconfig = json.loads((tmp_path / "out" / "webhook-client.kubeconfig").read_text())
    assert kubeconfig["users"][0]["name"] == "driftguard-webhook.driftguard-system.svc"
