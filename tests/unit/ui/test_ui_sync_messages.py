"""What the UI's Sync says for each answer of the reconciler (``ui.reads``): in words, with what to do; and the
warning the UI logs at start-up when Sync's token file will not do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ui.reads import ReconcilerAnswer, _refusal, _synced, reconciler_token, sync_token_problem

KEY = "team-a/web"


@pytest.mark.parametrize(("result", "done", "says"), [
    ({"_status": 200, "result": "Succeeded", "revision": "abcdef1234", "initiator": "ann via driftguard-ui",
      "summary": "1 created"}, True, "synced team-a/web at abcdef1 by ann via driftguard-ui: Succeeded (1 created)"),
    ({"_status": 200, "result": "Failed", "revision": "abcdef1234", "initiator": "ann via driftguard-ui",
      "summary": "1 failed", "problem": "ConfigMap x: forbidden"}, False,
     "synced team-a/web at abcdef1 by ann via driftguard-ui: Failed (1 failed): ConfigMap x: forbidden"),
    ({"_status": 200, "result": "Succeeded", "revision": "abcdef1234", "initiator": "ann", "summary": "",
      "pendingPrune": ["ConfigMap team-a/old"]}, True,
     "(nothing to do); 1 object(s) no longer in git kept (a sync with prune deletes them)"),
    ({"_status": 202, "initiator": "ann via driftguard-ui"}, True,
     "sync of team-a/web started by ann via driftguard-ui; still running after 20s: the History table shows it"),
])
def test_a_sync_that_ran(result: dict[str, Any], done: bool, says: str) -> None:
    ok, message = _synced(KEY, result)
    assert ok is done and says in message


@pytest.mark.parametrize(("status", "error", "says"), [
    (409, "a sync of team-a/web asked by bob is waiting to run",
     "not synced: a sync of team-a/web asked by bob is waiting to run; try again when it has run"),
    (503, "this reconciler replica (r-1) is a standby; the leader, which runs syncs, is r-0",
     "not synced: the reconciler could not run it now: this reconciler replica (r-1) is a standby; the leader"),
    (403, "ann via driftguard-ui may not sync Application team-a/web: grant ann verb \"sync\"",
     "the reconciler refused the sync of team-a/web (403): ann via driftguard-ui may not sync"),
])
def test_a_sync_the_reconciler_refused(status: int, error: str, says: str) -> None:
    assert _refusal(KEY, ReconcilerAnswer(status, error, {"error": error})).startswith(says)


@pytest.mark.parametrize(("content", "token", "says"), [
    ("eyJ.token.sig\n", "eyJ.token.sig", ""),  # the projected file, as the kubelet writes it
    (None, "", "cannot read the UI's token for the reconciler (--reconciler-token-file {path}: No such file or "
               "directory); mount a projected serviceAccountToken with audience: driftguard-reconciler there"),
    ("  \n", "", "--reconciler-token-file {path} is empty"),
    ("unset", "", "the UI has no --reconciler-token-file"),
])
def test_the_token_sync_presents_is_read_from_its_file_each_time(
        tmp_path: Path, content: str | None, token: str, says: str) -> None:
    path: Path | None = tmp_path / "token"
    if content == "unset":
        path = None
    elif content is not None:
        (tmp_path / "token").write_text(content)
    found, problem = reconciler_token(path)
    assert found == token
    assert says.format(path=path) in problem and bool(problem) == bool(says)
    if content and content != "unset":  # rotated: the next Sync reads the new token
        (tmp_path / "token").write_text("rotated\n")
        assert reconciler_token(path) == ("rotated", "")


FIX = ("Mount the projected volume from manifests/ui.yaml (a serviceAccountToken with audience: driftguard-reconciler, "
       "at /var/run/secrets/driftguard/reconciler/token) or pass --reconciler-token-file a file holding that token; "
       "the UI serves on, and Sync answers that it is not configured until the file is there")


@pytest.mark.parametrize(("url", "content", "says"), [
    ("http://reconciler:8080", "eyJ.secret.sig\n", ""),  # the projected file: nothing to say
    ("", None, ""),  # no --reconciler-url: Sync is off, and says so when asked
    ("http://reconciler:8080", None,
     "Sync will not work: --reconciler-token-file {path} cannot be read (No such file or directory). " + FIX),
    ("http://reconciler:8080", "directory",
     "Sync will not work: --reconciler-token-file {path} cannot be read (Is a directory). " + FIX),
    ("http://reconciler:8080", " \n", "Sync will not work: --reconciler-token-file {path} is empty. " + FIX),
    ("http://reconciler:8080", "unset", "Sync will not work: --reconciler-token-file is unset. " + FIX),
])
def test_the_start_up_check_of_syncs_token_file(tmp_path: Path, url: str, content: str | None, says: str) -> None:
    path: Path | None = tmp_path / "token"
    if content == "unset":
        path = None
    elif content == "directory":
        (tmp_path / "token").mkdir()
    elif content is not None:
        (tmp_path / "token").write_text(content)
    problem = sync_token_problem(url, path)
    assert problem == says.format(path=path)
