"""Settings: flags over environment over defaults, validated, reproducible as flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webhook import settings
from webhook.settings import Settings


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_trust_the_reconciler_and_the_cluster_controllers() -> None:
    chosen = settings.from_sources()
    assert chosen.reconciler_users == ("system:serviceaccount:driftguard-system:driftguard-reconciler",)
    assert chosen.allowed_users == ("system:serviceaccount:kube-system:generic-garbage-collector",
                                    "system:serviceaccount:kube-system:namespace-controller")
    assert chosen.break_glass_groups == ()
    assert (chosen.max_body_bytes, chosen.parent_timeout, chosen.worker_class) == (3 * 1024 * 1024, 1.0, "event")


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    environ = {"DRIFTGUARD_BREAK_GLASS_GROUPS": "sre, oncall", "DRIFTGUARD_WEBHOOK_PORT": "9000",
               "DRIFTGUARD_AUDIT_EVENTS": "false", "DRIFTGUARD_AUDIT_FILE": "/var/log/audit.jsonl"}
    chosen = settings.from_sources(_parse("--port", "9443"), environ)
    assert chosen.port == 9443
    assert chosen.break_glass_groups == ("sre", "oncall")
    assert chosen.audit_events is False
    assert chosen.audit_file == Path("/var/log/audit.jsonl")


def test_the_certificate_warning_window_has_a_flag_and_a_variable() -> None:
    assert settings.from_sources(None, {}).cert_warning_days == 7
    assert settings.from_sources(None, {"DRIFTGUARD_CERT_WARNING_DAYS": "30"}).cert_warning_days == 30
    assert settings.from_sources(_parse("--cert-warning-days", "0"), {"DRIFTGUARD_CERT_WARNING_DAYS": "30"}
                                 ).cert_warning_days == 0


@pytest.mark.parametrize(("environ", "problem"), [
    ({"DRIFTGUARD_WEBHOOK_PORT": "https"}, "is not a valid int"),
    ({"DRIFTGUARD_AUDIT_EVENTS": "perhaps"}, "is not a valid bool"),
    ({"DRIFTGUARD_WEBHOOK_WORKER_CLASS": "gevent"}, "is not event, gthread or sync"),
    ({"DRIFTGUARD_BREAK_GLASS_TTL": "0"}, "must be positive"),
    ({"DRIFTGUARD_CERT_FILE": "/tls.crt"}, "go together"),
    ({"DRIFTGUARD_CERT_WARNING_DAYS": "-1"}, "--cert-warning-days must not be negative"),
])
def test_bad_values_are_refused_with_the_flag_and_variable(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings.from_sources(None, environ)


def test_to_args_round_trips() -> None:
    chosen = Settings(break_glass_groups=("sre",), audit_file=Path("/tmp/a.jsonl"), port=1234, audit_events=False,
                      cert_file=Path("/c"), key_file=Path("/k"))
    assert settings.from_sources(_parse(*chosen.to_args())) == chosen


def test_every_setting_is_documented_with_a_flag_and_a_variable() -> None:
    rows = settings.reference()
    assert len(rows) == len(Settings.__dataclass_fields__)
    for flag, env, _, text in rows:
        assert flag.startswith("--") and env.startswith("DRIFTGUARD_") and text
