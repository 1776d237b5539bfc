"""Every webhook unit test starts with an empty stamp cache and leaves no audit writer thread running.

``webhook.audit.Recorder`` starts its writer (``driftguard-audit``) on the first record it queues; a test
that never closes its recorder leaves the thread flushing Events into whatever runs next, and its log
lines ("audit Event write failed") turn up in other tests or after the suite. Close the recorder (a
fixture's teardown) instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from webhook.edits import STAMPS

WRITER = "driftguard-audit"


def _writers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == WRITER and t.is_alive()}


@pytest.fixture(autouse=True)
def fresh_stamp_cache() -> Iterator[None]:
    """Each test decodes its stamps itself (tests that break decoding must see it break)."""
    STAMPS.clear()
    yield
    STAMPS.clear()


@pytest.fixture(autouse=True)
def no_audit_writer_outlives_the_test() -> Iterator[None]:
    before = _writers()
    yield
    left = _writers() - before
    assert not left, f"{len(left)} audit writer thread(s) still running: close the test's Recorder"
