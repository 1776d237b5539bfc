"""Structured logging for both components: one JSON object per line (or text with ``key=value`` tails).

Context fields come from two places, and only those: ``extra=ctx(...)`` on one call (the webhook puts
the request's uid, user, operation, kind, namespace and name there; the reconciler an object), and
``bound(...)``, which adds fields to every line logged in its block *in this thread* (the reconciler
binds the Application and the revision around a cycle, the Application and object around a
self-heal). This module never looks inside objects, so nothing but what a caller chose — never a key,
token or Secret value — reaches a log line.

A layer of its own at the bottom (standard library only), beside the pure ``driftguard.core``: it
touches handlers and ``sys.stderr``, which the core must not.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

CTX: Final = "ctx"
BOUND: Final = "driftguard_bound"
QUIET: Final = ("urllib3", "kubernetes")  # client libraries: their INFO lines are noise at our INFO

_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "driftguard_log_context", default=types.MappingProxyType({}))


def ctx(**fields: Any) -> dict[str, Any]:
    """``extra=`` for one log call: ``log.info("...", extra=ctx(object=str(ref)))``."""
    return {CTX: fields}


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged in this block, in this thread (None values are left out)."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of ``record``: what was bound when it was created, then what the call passed."""
    return {**getattr(record, BOUND, {}), **(getattr(record, CTX, None) or {})}


def _stamp_bound(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def create(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        setattr(record, BOUND, _bound.get())
        return record

    return create


# Bound fields are taken when a record is *created* (in the logging thread), so a handler that formats
# later or elsewhere (pytest's caplog, a queue) still sees them.
logging.setLogRecordFactory(_stamp_bound(logging.getLogRecordFactory()))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(context_of(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text + "".join(f" {k}={json.dumps(v, default=str)}" for k, v in context_of(record).items())


class BackgroundHandler(logging.Handler):
    """Lines formatted by the caller and written to ``stream`` (default ``sys.stderr``) by a thread of the
    handler's own, so a caller never waits for the stream: the webhook's serving loop logs a denial on
    the thread that answers every connection, and a container's stderr is a pipe that blocks when the log
    collector stalls. At most ``capacity`` lines wait; beyond that lines are dropped and counted, and the
    count is written as a line of its own once the stream takes lines again. The thread is started in the
    process that first logs (gunicorn forks workers after configuring logging, and threads do not survive a
    fork); ``flush`` — called by ``logging.shutdown`` at exit — waits up to ``drain_seconds`` for it, and
    ``close`` (after it at exit, or when ``dictConfig`` replaces the handler) drains, ends the thread and
    joins it, within ``drain_seconds`` too: a stream still stalled then keeps the (daemon) thread until it
    takes the lines or the process ends. A line logged after ``close`` starts a writer again."""

    def __init__(self, stream: Any = None, capacity: int = 10_000, drain_seconds: float = 2.0) -> None:
        super().__init__()
        self._stream = stream
        self._capacity = capacity
        self._drain_seconds = drain_seconds
        self._pid = -1
        self._lines: queue.Queue[str | None] = queue.Queue(capacity)  # None: the writer's signal to end
        self._dropped = 0
        self._start = threading.Lock()
        self._writer: threading.Thread | None = None
        self._ending = threading.Event()  # set by close: the writer ends once it finds nothing waiting

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if self._pid != os.getpid():
            self._begin()
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self._dropped += 1  # racy by a count at worst; never blocks

    def flush(self) -> None:
        if self._pid == os.getpid():
            self._drain(time.monotonic() + self._drain_seconds)

    def close(self) -> None:
        with self._start:
            writer = self._writer if self._pid == os.getpid() else None  # a forked child's copy is not its own
            if writer is not None:
                deadline = time.monotonic() + self._drain_seconds
                self._drain(deadline)
                self._ending.set()
                with contextlib.suppress(queue.Full):  # full at the deadline, the stream stalled: the writer
                    self._lines.put_nowait(None)       # ends after what waits, by the event
                writer.join(max(0.0, deadline - time.monotonic()))
            self._writer, self._pid = None, -1
        super().close()

    def _drain(self, deadline: float) -> None:
        while self._lines.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _begin(self) -> None:
        with self._start:
            if self._pid == os.getpid():
                return
            self._lines = queue.Queue(self._capacity)  # a forked child's copy may hold the parent's lines
            self._dropped = 0
            self._pid = os.getpid()
            self._ending = threading.Event()
            self._writer = threading.Thread(target=self._write, args=(self._lines, self._ending),
                                            name="driftguard-log-writer", daemon=True)
            self._writer.start()

    def _write(self, lines: queue.Queue[str | None], ending: threading.Event) -> None:
        while True:
            line = lines.get()
            try:
                stream = self._stream if self._stream is not None else sys.stderr
                dropped, self._dropped = self._dropped, 0
                if dropped:
                    stream.write(f"driftguard: {dropped} log lines dropped: the log stream was not taking lines\n")
                if line is not None:
                    stream.write(line + "\n")
                stream.flush()
            except Exception:  # noqa: S110 - a broken stream must not end the thread
                pass
            finally:
                lines.task_done()
            if line is None or (ending.is_set() and lines.empty()):
                return


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(fmt: str, level: str, *, quiet: tuple[str, ...] = ()) -> None:
    """Route every logger (ours and the libraries') to stderr in one format (``json`` or ``text``);
    the ``quiet`` loggers only from WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
