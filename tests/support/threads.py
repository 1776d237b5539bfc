"""Tests end the threads they start, themselves or through the code under test, before they return."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


@contextlib.contextmanager
def every_thread_joined(timeout: float = 10.0) -> Iterator[None]:
    """Join every thread started inside the block when it ends (a library's cancelled timer, a worker the test
    released); fail, naming them, if any still runs ``timeout`` seconds later. Not when the block raises."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + timeout
    running = []
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            running.append(thread.name)
    assert not running, f"threads still running {timeout:g} s after the test: {running}"
