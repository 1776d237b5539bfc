"""One logging module for both components: JSON (or text) lines whose context is what callers bound or
passed, nothing else; the reconciler's cycle lines carry the Application and the revision."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from support.fake_cluster import FakeSource, RecordingCluster
from support.reconciler_builders import REV1
from support.threads import every_thread_joined

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


def _stalled(capacity: int, drain_seconds: float, lines: int) -> tuple[logs.BackgroundHandler, io.TextIOWrapper, int]:
    """A handler writing to a pipe nobody reads, and the pipe's read end: ``lines`` lines of 1,000 characters
    logged from a thread of their own (~64 KiB fit in the pipe, then the writer blocks; the caller must not)."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)
    handler = logs.BackgroundHandler(stream, capacity=capacity, drain_seconds=drain_seconds)
    handler.setFormatter(logs.TextFormatter())
    caller = threading.Thread(target=lambda: [handler.emit(_line_record(f"{i} {FILLER}")) for i in range(lines)])
    caller.start()
    caller.join(30)
    assert not caller.is_alive(), "a stalled stream made the logging caller wait"
    return handler, stream, read_end


FILLER = "x" * 1000


def test_the_background_handler_never_waits_for_a_stalled_stream_and_counts_what_it_dropped() -> None:
    seen: list[str] = []
    with every_thread_joined():
        handler, stream, read_end = _stalled(capacity=50, drain_seconds=60, lines=500)
        with os.fdopen(read_end, "r") as reader:
            draining = threading.Thread(target=lambda: seen.extend(reader))
            draining.start()
            handler.flush()  # the stream takes lines again: what waited is written, then the drop count
            handler.emit(_line_record("after the stall"))
            handler.close()
            stream.close()
            draining.join(30)
    dropped = sum(int(line.split()[1]) for line in seen if "log lines dropped" in line)
    written = sum(1 for line in seen if FILLER in line)
    assert written + dropped == 500 and dropped > 0, "every line is either written or counted as dropped"
    assert seen[-1].endswith("after the stall\n")


def test_the_background_handler_drains_on_flush_and_starts_again_in_a_forked_child() -> None:
    out = io.StringIO()
    with every_thread_joined():
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
            handler.close()
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            assert pipe.read() == "child\n"
        assert os.waitpid(pid, 0)[1] == 0
        handler.close()


def test_closing_the_background_handler_writes_what_waits_and_joins_its_writer() -> None:
    out = io.StringIO()
    before = set(threading.enumerate())
    handler = logs.BackgroundHandler(out)
    for n in range(100):
        handler.emit(_line_record(f"line {n}"))
    handler.close()
    assert set(threading.enumerate()) - before == set(), "close() returned before its writer thread ended"
    assert out.getvalue() == "".join(f"line {n}\n" for n in range(100))
    handler.emit(_line_record("after close"))  # a closed handler that is used again starts a writer again
    handler.close()
    assert set(threading.enumerate()) - before == set()
    assert out.getvalue().endswith("line 99\nafter close\n")


def test_closing_the_background_handler_on_a_stalled_stream_returns_and_its_writer_ends_with_the_stall() -> None:
    seen: list[str] = []
    with every_thread_joined():
        handler, stream, read_end = _stalled(capacity=50, drain_seconds=0.1, lines=500)
        closing = threading.Thread(target=handler.close)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "close() waited for a stalled stream past its drain_seconds"
        with os.fdopen(read_end, "r") as reader:  # the stream takes lines again: the writer writes what
            draining = threading.Thread(target=lambda: seen.extend(reader))  # waited, then ends
            draining.start()
            for thread in threading.enumerate():
                if thread.name == "driftguard-log-writer":
                    thread.join(30)
            stream.close()
            draining.join(30)
    dropped = sum(int(line.split()[1]) for line in seen if "log lines dropped" in line)
    assert sum(1 for line in seen if FILLER in line) + dropped == 500


def test_the_webhook_logs_through_the_background_handler() -> None:
    from webhook import logs as webhook_logs
    config = webhook_logs.dict_config("json", "info")
    assert config["handlers"]["stderr"]["class"] == "driftguard.logs.BackgroundHandler"
