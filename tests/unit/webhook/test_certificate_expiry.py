"""An expired, expiring or not-yet-valid serving certificate: classified, logged, and made visible in /readyz."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509
from support.admission import SETTINGS

from certs import CertificateAuthority, Credential
from webhook.app import create_app
from webhook.certcheck import FIX, State, Validity, classify, validity
from webhook.tls import CertificateFilesError, CertificateReloader

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate()


def _issue(ca: CertificateAuthority, not_before: dt.datetime, lasting: dt.timedelta) -> Credential:
    return ca.issue_serving("driftguard-webhook", ip_addresses=["127.0.0.1"], validity=lasting, not_before=not_before)


@pytest.mark.parametrize(("not_before", "lasting", "warn_days", "state", "usable", "says"), [
    pytest.param(NOW - DAY, 90 * DAY, 7, "valid", True, "is valid until 2030-08-29T12:00:00Z", id="valid"),
    pytest.param(NOW - 80 * DAY, 86 * DAY, 7, "expiring-soon", True,
                 "expires at 2030-06-07T12:00:00Z (notAfter), in 6d 0h", id="six-days-left"),
    pytest.param(NOW - DAY, DAY + dt.timedelta(hours=5), 7, "expiring-soon", True, "in 5h 0m", id="hours-left"),
    pytest.param(NOW - 80 * DAY, 87 * DAY, 7, "valid", True, "valid until", id="exactly-the-window-left"),
    pytest.param(NOW - 80 * DAY, 20 * DAY + 80 * DAY, 30, "expiring-soon", True, "in 20d 0h", id="wider-window"),
    pytest.param(NOW - DAY, dt.timedelta(hours=25), 0, "valid", True, "valid until", id="warning-off"),
    pytest.param(NOW - DAY, DAY, 7, "expiring-soon", True, "in 0h 0m", id="at-notAfter-still-valid"),
    pytest.param(NOW - DAY, DAY - dt.timedelta(seconds=1), 7, "expired", False,
                 "expired at 2030-06-01T11:59:59Z (notAfter)", id="one-second-late"),
    pytest.param(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), 30 * DAY, 7, "expired", False,
                 "expired at 2020-01-31T00:00:00Z", id="long-expired"),
    pytest.param(NOW + dt.timedelta(hours=1), 90 * DAY, 7, "not-yet-valid", False,
                 "is not valid before 2030-06-01T13:00:00Z (notBefore; now 2030-06-01T12:00:00Z)", id="not-yet-valid"),
    pytest.param(NOW, 90 * DAY, 7, "valid", True, "valid until", id="at-notBefore-valid"),
])
def test_classify(ca: CertificateAuthority, not_before: dt.datetime, lasting: dt.timedelta, warn_days: int,
                  state: State, usable: bool, says: str) -> None:
    window = validity(_issue(ca, not_before, lasting).cert_pem)
    status = classify("/tls/tls.crt", window, NOW, dt.timedelta(days=warn_days))
    assert (status.state, status.usable) == (state, usable)
    assert status.message.startswith("serving certificate /tls/tls.crt ")
    assert says in status.message
    assert (FIX in status.message) == (state != "valid")
    assert "driftguard certs install --dir <your CA dir>" in FIX and "cert-manager" in FIX


def test_validity_reads_the_leaf_of_a_chain(ca: CertificateAuthority) -> None:
    leaf = _issue(ca, NOW, 10 * DAY)
    assert validity(leaf.cert_pem + ca.cert_pem) == Validity(NOW, NOW + 10 * DAY)
    with pytest.raises(ValueError):
        validity(b"not a certificate")


class Clocks:
    """A monotonic clock (file re-checks) and a wall clock (validity), both moved by hand."""

    def __init__(self) -> None:
        self.monotonic, self.wall = 0.0, NOW

    def advance(self, by: dt.timedelta) -> None:
        self.monotonic += by.total_seconds()
        self.wall += by


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "tls.crt", tmp_path / "tls.key"


def _reloader(files: tuple[Path, Path], clocks: Clocks) -> CertificateReloader:
    return CertificateReloader(*files, clock=lambda: clocks.monotonic, wall_clock=lambda: clocks.wall)


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "webhook.tls" and r.levelno == level]


def test_an_expired_certificate_at_start_up_is_one_error_naming_file_dates_and_fix(
    ca: CertificateAuthority, files: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    _issue(ca, NOW - 40 * DAY, 30 * DAY).write(*files)
    clocks = Clocks()
    with caplog.at_level(logging.INFO, "webhook.tls"):
        reloader = _reloader(files, clocks)
        clocks.advance(dt.timedelta(seconds=5))
        assert reloader.status().state == "expired"
        assert reloader.status().state == "expired"
    [error] = _logged(caplog, logging.ERROR)
    assert f"serving certificate {files[0]} expired at 2030-05-22T12:00:00Z" in error.getMessage()
    assert "driftguard certs install --dir" in error.getMessage()
    ctx = error.__dict__["ctx"]
    assert ctx["cert_file"] == str(files[0]) and ctx["certificate"] == "expired"
    assert ctx["not_after"] == "2030-05-22T12:00:00+00:00" and ctx["not_before"] == "2030-04-22T12:00:00+00:00"


def test_a_rotated_valid_certificate_recovers_and_a_later_expiry_is_noticed_without_a_file_change(
    ca: CertificateAuthority, files: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    _issue(ca, NOW - 40 * DAY, 30 * DAY).write(*files)
    clocks = Clocks()
    reloader = _reloader(files, clocks)
    assert not reloader.status().usable
    _issue(ca, NOW - DAY, 30 * DAY).write(*files)
    clocks.advance(dt.timedelta(seconds=2))
    with caplog.at_level(logging.INFO, "webhook.tls"):
        recovered = reloader.status()
    assert recovered.state == "valid" and recovered.validity.not_after == NOW + 29 * DAY
    assert any("valid until" in r.getMessage() for r in _logged(caplog, logging.INFO))
    caplog.clear()
    with caplog.at_level(logging.INFO, "webhook.tls"):
        clocks.advance(23 * DAY)
        assert reloader.status().state == "expiring-soon"
        clocks.advance(7 * DAY)
        assert reloader.status().state == "expired"
    assert len(_logged(caplog, logging.WARNING)) == 1
    assert len(_logged(caplog, logging.ERROR)) == 1


def test_an_expiring_certificate_warns_once_per_load(
    ca: CertificateAuthority, files: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    _issue(ca, NOW - DAY, 4 * DAY).write(*files)
    clocks = Clocks()
    with caplog.at_level(logging.INFO, "webhook.tls"):
        reloader = _reloader(files, clocks)
        for _ in range(3):
            clocks.advance(dt.timedelta(seconds=2))
            assert reloader.status().state == "expiring-soon"
        assert len(_logged(caplog, logging.WARNING)) == 1
        _issue(ca, NOW - DAY, 5 * DAY).write(*files)  # renewed, but again for too short
        clocks.advance(dt.timedelta(seconds=2))
        reloader.context()  # a handshake reloads; the warning comes with the load
        assert len(_logged(caplog, logging.WARNING)) == 2
        clocks.advance(dt.timedelta(seconds=2))
        reloader.status()
    assert len(_logged(caplog, logging.WARNING)) == 2
    assert not _logged(caplog, logging.ERROR)


def test_a_good_certificate_is_reported_at_info(ca: CertificateAuthority, files: tuple[Path, Path],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    _issue(ca, NOW - DAY, 90 * DAY).write(*files)
    with caplog.at_level(logging.INFO, "webhook.tls"):
        assert _reloader(files, Clocks()).status().state == "valid"
    assert not _logged(caplog, logging.WARNING) and not _logged(caplog, logging.ERROR)


def test_files_that_cannot_be_served_refuse_to_start_with_a_clear_message(
    ca: CertificateAuthority, files: tuple[Path, Path],
) -> None:
    cert, key = files
    with pytest.raises(CertificateFilesError, match=f"cannot read {cert}: No such file or directory"):
        CertificateReloader(cert, key)
    _issue(ca, NOW, 90 * DAY).write(cert, key)
    key.write_bytes(_issue(ca, NOW, 90 * DAY).key_pem)
    with pytest.raises(CertificateFilesError, match=f"{key} is not the private key of {cert}"):
        CertificateReloader(cert, key)
    cert.write_text("not a certificate\n")
    with pytest.raises(CertificateFilesError, match=f"cannot load {cert} with {key}"):
        CertificateReloader(cert, key)


def test_readyz_fails_with_the_message_while_healthz_stays_ok_and_recovers_on_rotation(
    ca: CertificateAuthority, files: tuple[Path, Path],
) -> None:
    expired = _issue(ca, NOW - 40 * DAY, 30 * DAY)
    expired.write(*files)
    clocks = Clocks()
    client = create_app(SETTINGS, certificate=_reloader(files, clocks), clock=lambda: clocks.wall).test_client()
    unready = client.get("/readyz")
    assert unready.status_code == 503
    assert unready.get_data(as_text=True) == f"serving certificate {files[0]} expired at 2030-05-22T12:00:00Z " \
        "(notAfter): the API server rejects every TLS handshake to the webhook; " + FIX + "\n"
    assert client.get("/healthz").status_code == 200
    assert _expiry_gauge(client.get("/metrics").get_data(as_text=True), files[0]) == (NOW - 10 * DAY).timestamp()

    valid = _issue(ca, NOW - DAY, 30 * DAY)
    valid.write(*files)
    clocks.advance(dt.timedelta(seconds=2))
    assert client.get("/readyz").status_code == 200
    expiry = x509.load_pem_x509_certificate(valid.cert_pem).not_valid_after_utc
    assert _expiry_gauge(client.get("/metrics").get_data(as_text=True), files[0]) == expiry.timestamp()


def test_without_a_certificate_source_there_is_no_expiry_series() -> None:
    client = create_app(SETTINGS).test_client()
    assert client.get("/readyz").status_code == 200
    assert "driftguard_webhook_certificate_expiry_timestamp_seconds{" not in client.get("/metrics").get_data(
        as_text=True)


def _expiry_gauge(text: str, cert_file: Path) -> float:
    prefix = f'driftguard_webhook_certificate_expiry_timestamp_seconds{{file="{cert_file}"}} '
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))
