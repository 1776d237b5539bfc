"""The README's reference parts are checked against the code, so they cannot silently go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driftguard.cli import build_parser
from reconciler import settings as reconciler_settings
from ui import settings as ui_settings
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


ROOT = Path(__file__).resolve().parents[3]


def _path_table() -> list[str]:
    start = README.index("| path | what |\n")
    rows = README[start:].split("\n\n", 1)[0].splitlines()[2:]
    return [re.match(r"\| `([^`]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]


def test_the_path_table_names_only_what_exists() -> None:
    paths = _path_table()
    assert len(paths) > 5
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == []


def test_the_path_table_covers_the_tree() -> None:
    """Every top-level directory, and every package and module of driftguard/, has a row."""
    listed = {p.rstrip("/") for p in _path_table()}
    tracked = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
               and not p.name.endswith(".egg-info") and p.name not in ("driftguard", "build", "dist", "__pycache__")}
    inner = {f"driftguard/{p.name}".removesuffix("/") for p in (ROOT / "driftguard").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert tracked and inner
    assert sorted((tracked | inner) - listed) == []


def test_pre_commit_runs_what_make_lint_runs() -> None:
    import yaml
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = [hook["entry"] for repo in config["repos"] if repo["repo"] == "local" for hook in repo["hooks"]]
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlint: venv\n", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip().replace("$(VENV)", ".venv") for line in recipe.splitlines() if line.startswith("\t")]
    assert commands and entries == commands


@pytest.mark.parametrize("row", ui_settings.reference(), ids=lambda row: row[0])
def test_every_ui_setting_is_in_the_configuration_table(row: tuple[str, str, str, str]) -> None:
    flag, env, default, help_text = row
    assert f"| `{flag}` | `{env}` | {default} | {help_text} |" in README, "regenerate the table from reference()"
