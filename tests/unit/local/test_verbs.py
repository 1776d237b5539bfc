"""The verbs' pure parts: the history table, the sync result, the kubeconfig's bearer token."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from driftguard.local.verbs import history_rows, kubeconfig_token, print_sync


def test_history_rows_newest_first_and_one_line_messages() -> None:
    rows = history_rows([{"id": 0, "revision": "a" * 40, "result": "Succeeded", "initiator": "automated"},
                         {"id": 1, "revision": "b" * 40, "result": "Failed", "initiator": "carol",
                          "message": "ConfigMap p/x failed:\n  denied"}])
    assert [r[0] for r in rows] == ["1", "0"]
    assert rows[0][1] == "bbbbbbb" and rows[0][-1] == "ConfigMap p/x failed: denied"
    assert rows[1][2] == "-"  # no author: a dash, not an empty cell


def test_print_sync() -> None:
    out = io.StringIO()
    print_sync({"application": "p/app", "initiator": "carol", "dryRun": False, "result": "Failed",
                "revision": "c" * 40, "problem": "no", "changes": ["ConfigMap p/x created"],
                "pendingPrune": ["ConfigMap p/old"], "summary": "1 created"}, out)
    assert out.getvalue().splitlines() == [
        "Application p/app synced at ccccccc by carol: Failed", "  no", "  ConfigMap p/x created",
        "  ConfigMap p/old: no longer in git, kept (use --prune to delete it)", "  1 created"]


def kubeconfig(tmp_path: Path, user: dict[str, str]) -> str:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "current-context": "one", "contexts": [{"name": "one", "context": {"user": "u1"}},
                                               {"name": "two", "context": {"user": "u2"}}],
        "users": [{"name": "u1", "user": user}, {"name": "u2", "user": {"token": "second"}}]}))
    return str(path)


def test_kubeconfig_token(tmp_path: Path) -> None:
    assert kubeconfig_token(kubeconfig(tmp_path, {"token": "first"}), None) == "first"
    assert kubeconfig_token(kubeconfig(tmp_path, {"token": "first"}), "two") == "second"
    (tmp_path / "tok").write_text("from-file\n")
    assert kubeconfig_token(kubeconfig(tmp_path, {"tokenFile": str(tmp_path / "tok")}), None) == "from-file"


def test_a_certificate_kubeconfig_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass --token or \\$DRIFTGUARD_TOKEN"):
        kubeconfig_token(kubeconfig(tmp_path, {"client-certificate-data": "x"}), None)
    with pytest.raises(ValueError, match="cannot read the kubeconfig"):
        kubeconfig_token(str(tmp_path / "missing"), None)
