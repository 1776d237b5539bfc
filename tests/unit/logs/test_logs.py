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


def _line_record(message: str) -> logging.LogRecord:
    return logging.LogRecord("webhook", logging.WARNING, __file__, 1, message, None, None)


def test_the_background_handler_never_waits_for_a_stalled_stream_and_counts_what_it_dropped() -> None:
    import os
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)
    handler = logs.BackgroundHandler(stream, capacity=50, drain_seconds=60)
    handler.setFormatter(logs.TextFormatter())
    filler = "x" * 1000
    caller = threading.Thread(target=lambda: [handler.emit(_line_record(f"{i} {filler}")) for i in range(500)])
    caller.start()
    caller.join(30)  # nobody reads the pipe: ~64 KiB fit, the writer blocks, the caller must not
    assert not caller.is_alive(), "a stalled stream made the logging caller wait"
    seen: list[str] = []
    with os.fdopen(read_end, "r") as reader:
        draining = threading.Thread(target=lambda: seen.extend(reader))
        draining.start()
        handler.flush()  # the stream takes lines again: what waited is written, then the drop count
        handler.emit(_line_record("after the stall"))
        handler.flush()
        stream.close()
        draining.join(30)
    dropped = sum(int(line.split()[1]) for line in seen if "log lines dropped" in line)
    written = sum(1 for line in seen if filler in line)
    assert written + dropped == 500 and dropped > 0, "every line is either written or counted as dropped"
    assert seen[-1].endswith("after the stall\n")


def test_the_background_handler_drains_on_flush_and_starts_again_in_a_forked_child() -> None:
    import io
    import os
    out = io.StringIO()
    handler = logs.BackgroundHandler(out)
    handler.emit(_line_record("parent"))
    handler.flush()
    assert out.getvalue() == "parent\n"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's writer thread did not survive the fork
        child = os.fdopen(write_end, "w")
        handler._stream = child
        handler.emit(_line_record("child"))
        handler.flush()
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == "child\n"
    assert os.waitpid(pid, 0)[1] == 0


def test_the_webhook_logs_through_the_background_handler() -> None:
    from webhook import logs as webhook_logs
    config = webhook_logs.dict_config("json", "info")
    assert config["handlers"]["stderr"]["class"] == "driftguard.logs.BackgroundHandler"
