"""The README's reference parts are checked against the code, so they cannot silently go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driftguard.cli import build_parser
from reconciler import settings as reconciler_settings
from webhook import settings

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


@pytest.mark.parametrize("row", settings.reference(), ids=lambda row: row[0])
def test_every_webhook_setting_is_in_the_configuration_table(row: tuple[str, str, str, str]) -> None:
    flag, env, default, help_text = row
    assert f"| `{flag}` | `{env}` | {default} | {help_text} |" in README, "regenerate the table from reference()"


@pytest.mark.parametrize("row", reconciler_settings.reference(), ids=lambda row: row[0])
def test_every_reconciler_setting_is_in_the_configuration_table(row: tuple[str, str, str, str]) -> None:
    flag, env, default, help_text = row
    assert f"| `{flag}` | `{env}` | {default} | {help_text} |" in README, "regenerate the table from reference()"


def test_every_reconciler_flag_is_documented() -> None:
    parser = build_parser()
    reconcile = parser.parse_args(["reconcile"])  # the subcommand exists
    assert callable(reconcile.func)
    subparsers = next(a for a in parser._actions if a.dest == "command")
    flags = {o for a in subparsers.choices["reconcile"]._actions for o in a.option_strings if o.startswith("--")}
    missing = sorted(f for f in flags - {"--help"} if f"`{f}" not in README and f"{f}/" not in README)
    assert missing == []


@pytest.mark.parametrize("command", sorted(set(re.findall(r"`driftguard ([a-z-]+)", README))))
def test_every_subcommand_the_readme_names_exists(command: str) -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert command in subparsers.choices
