"""One logging module for both components: JSON (or text) lines whose context is what callers bound or
passed, nothing else; the reconciler's cycle lines carry the Application and the revision."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from support.fake_cluster import FakeSource, RecordingCluster
from support.reconciler_builders import REV1

from driftguard import logs
from driftguard.kube.resources import Cluster
from reconciler.controller import Controller, Settings
from reconciler.gitsource import GitSource
from reconciler.record import AppState

log = logging.getLogger("driftguard.test")


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    return log.makeRecord(log.name, logging.INFO, __file__, 1, message, (), None, extra=extra or None)


def test_json_lines_carry_what_is_bound_then_what_the_call_passed() -> None:
    with logs.bound(application="ns/app", revision="abc"), logs.bound(revision="def", skipped=None):
        line = json.loads(logs.JsonFormatter().format(record(**logs.ctx(object="ConfigMap ns/web"))))
    assert line["level"] == "info" and line["logger"] == "driftguard.test" and line["message"] == "hello"
    assert {k: line[k] for k in ("application", "revision", "object")} == {
        "application": "ns/app", "revision": "def", "object": "ConfigMap ns/web"}
    assert "skipped" not in line


def test_bound_fields_end_with_their_block_and_stay_in_their_thread() -> None:
    seen: list[dict[str, Any]] = []
    with logs.bound(application="ns/app"):
        inside = logs.context_of(record())
        other = threading.Thread(target=lambda: seen.append(logs.context_of(record())))
        other.start()
        other.join()
    assert inside == {"application": "ns/app"}
    assert seen == [{}], "another thread's lines are not this cycle's"
    assert logs.context_of(record()) == {}


def test_text_lines_end_with_the_context() -> None:
    with logs.bound(application="ns/app"):
        text = logs.TextFormatter().format(record(**logs.ctx(object="x")))
    assert text.endswith('hello application="ns/app" object="x"')


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_webhook_and_the_reconciler_share_the_formatters(fmt: str) -> None:
    from webhook import logs as webhook_logs
    config = webhook_logs.dict_config(fmt, "info")
    assert config["formatters"]["driftguard"]["()"] == f"driftguard.logs.{type(logs.formatter(fmt)).__name__}"


def test_a_reconciler_cycle_logs_its_application_and_revision(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
           "metadata": {"name": "svc", "namespace": "driftguard-system", "generation": 1},
           "spec": {"source": {"repoURL": "https://git.example/org/repo", "path": "app"},
                    "destination": {"namespace": "prod"}, "syncPolicy": {"automated": {}}}}
    source = FakeSource(REV1, {"app/web.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"})
    controller = Controller(cast(Cluster, RecordingCluster()), Settings(cache_dir=tmp_path),
                            source=cast(GitSource, source))
    state = AppState.new(app)

    with caplog.at_level(logging.INFO, logger="reconciler"):
        controller._run(state)

    synced = [r for r in caplog.records if r.name == "reconciler.reporting" and "1 created" in r.getMessage()]
    assert synced, f"no sync line among {[r.getMessage() for r in caplog.records]}"
    assert logs.context_of(synced[0]) == {"application": "driftguard-system/svc", "revision": REV1.sha}
