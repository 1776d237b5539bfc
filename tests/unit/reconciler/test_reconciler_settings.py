"""The reconciler's settings come from one declaration: flags win over the environment, which wins over
the defaults; bad values are refused naming the flag and its variable."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from driftguard.core.names import NAMESPACE
from reconciler import settings
from reconciler.settings import Options, Settings


def parse(*argv: str, **environ: str) -> Options:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.from_sources(parser.parse_args(list(argv)), environ)


def test_defaults_are_the_dataclasses_defaults() -> None:
    options = parse(POD_NAME="pod-1", XDG_CACHE_HOME="/ignored/by/from_sources")
    assert (options.namespace, options.listen, options.leader_elect, options.install_crd) == (
        NAMESPACE, "127.0.0.1:8081", True, False)
    assert options.identity == "pod-1" and options.settings.resync_interval == Settings().resync_interval
    assert options.settings.namespace == NAMESPACE and options.settings.cache_dir == options.cache_dir


@pytest.mark.parametrize(("argv", "environ", "expected"), [
    pytest.param([], {"DRIFTGUARD_RESYNC_INTERVAL": "2m"}, 120.0, id="env"),
    pytest.param(["--resync-interval", "30s"], {"DRIFTGUARD_RESYNC_INTERVAL": "2m"}, 30.0, id="flag-wins"),
    pytest.param(["--resync-interval", "1m30s"], {}, 90.0, id="go-duration"),
    pytest.param(["--resync-interval", "45"], {}, 45.0, id="seconds"),
])
def test_flags_then_environment_then_defaults(argv: list[str], environ: dict[str, str], expected: float) -> None:
    assert parse(*argv, **environ).settings.resync_interval == expected


@pytest.mark.parametrize(("argv", "environ", "namespace", "leader"), [
    pytest.param(["--all-namespaces"], {"DRIFTGUARD_NAMESPACE": "team-a"}, "", True, id="all-namespaces"),
    pytest.param([], {"DRIFTGUARD_NAMESPACE": "team-a", "DRIFTGUARD_LEADER_ELECT": "false"}, "team-a", False,
                 id="env"),
    pytest.param(["--leader-elect"], {"DRIFTGUARD_LEADER_ELECT": "false"}, NAMESPACE, True, id="switch-flag-wins"),
    pytest.param(["--no-leader-elect"], {}, NAMESPACE, False, id="no-switch"),
])
def test_namespace_and_switches(argv: list[str], environ: dict[str, str], namespace: str, leader: bool) -> None:
    options = parse(*argv, **environ)
    assert (options.namespace, options.settings.namespace, options.leader_elect) == (namespace, namespace, leader)


def test_the_cache_dir_reaches_the_controller() -> None:
    options = parse("--cache-dir", "/var/cache/driftguard", "--workers", "5")
    assert options.cache_dir == options.settings.cache_dir == Path("/var/cache/driftguard")
    assert options.settings.workers == 5


@pytest.mark.parametrize(("argv", "environ", "names"), [
    pytest.param(["--resync-interval", "soon"], {}, "--resync-interval / DRIFTGUARD_RESYNC_INTERVAL", id="duration"),
    pytest.param([], {"DRIFTGUARD_RECONCILER_WORKERS": "many"}, "--workers / DRIFTGUARD_RECONCILER_WORKERS",
                 id="integer"),
    pytest.param(["--workers", "0"], {}, "--workers must be positive", id="zero-workers"),
    pytest.param([], {"DRIFTGUARD_LEADER_ELECT": "maybe"}, "--leader-elect / DRIFTGUARD_LEADER_ELECT", id="switch"),
    pytest.param(["--log-format", "xml"], {}, "--log-format", id="log-format"),
    pytest.param(["--listen", "8080"], {}, "--listen", id="listen"),
    pytest.param(["--lease-duration", "0s"], {}, "--lease-duration", id="lease-duration"),
])
def test_bad_values_name_the_setting(argv: list[str], environ: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=names.replace("/", ".")):
        parse(*argv, **environ)


def test_every_declared_setting_is_a_flag_and_a_table_row() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    rows = settings.reference()
    assert len(rows) > 10
    assert {row[0] for row in rows} | {"--all-namespaces", "--help", "--no-leader-elect", "--no-install-crd",
                                          "--no-allow-local-repos", "--no-oci-plain-http-loopback",
                                          "--no-audit-trail", "--no-notify-loopback"} == flags
