"""A private CA from the repository Secret: written 0600 for the fetch only, named in GIT_SSL_CAINFO."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from reconciler.gitsource import Credentials, _environment

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_ca_keys_of_argo_and_flux_style_secrets() -> None:
    assert Credentials.from_secret_data({"ca.crt": b64(PEM)}).ca == PEM
    assert Credentials.from_secret_data({"caFile": b64(PEM)}).ca == PEM
    assert Credentials.from_secret_data({"token": b64("t")}).ca == ""


def test_ca_file_exists_only_during_the_fetch_and_is_private() -> None:
    with _environment(Credentials(token="t", ca=PEM)) as env:
        path = Path(env["GIT_SSL_CAINFO"])
        assert path.read_text() == PEM + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "GIT_SSL_NO_VERIFY" not in env and "sslVerify" not in str(env)
    assert not path.exists()
    assert not path.parent.exists()


def test_without_a_ca_the_inherited_trust_is_left_alone() -> None:
    with _environment(Credentials(token="t")) as env:
        assert "GIT_SSL_CAINFO" not in env
    with _environment(None) as env:
        assert "GIT_SSL_CAINFO" not in env
