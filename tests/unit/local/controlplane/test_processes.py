"""Detached processes: recorded as data, stopped for real, never confused with a reused pid."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from driftguard.local.controlplane.processes import (
    ManagedProcess,
    ProcessFailed,
    Readiness,
    State,
    free_port,
    is_running,
    port_free,
    record,
    spawn,
    stop,
    stop_all,
    wait_ready,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# A parent that forks a child into its own process group and ignores SIGTERM: only a group kill works.
STUBBORN_FAMILY = [
    sys.executable,
    "-c",
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n",
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path("/proc").exists() else "R"
    return state not in {"Z", "X"}


def test_spawned_process_leads_its_own_session_and_stops(tmp_path: Path) -> None:
    process = spawn("sleeper", SLEEPER, tmp_path / "sleeper.log")
    try:
        assert os.getsid(process.pid) == process.pid != os.getsid(0)
        assert is_running(process)
    finally:
        assert stop(process, grace=5)
    assert not _alive(process.pid)
    assert not is_running(process)
    assert stop(process) is False  # idempotent


def test_stop_kills_the_whole_group_after_the_grace_period(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    process = spawn("family", STUBBORN_FAMILY, log)
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(log.read_text().split()[0])
    assert stop(process, grace=0.5)
    assert not _alive(process.pid)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("pid reuse detection needs /proc")
    process = spawn("sleeper", SLEEPER, tmp_path / "sleeper.log")
    impostor = ManagedProcess(**{**process.to_json(), "argv": tuple(process.argv), "start_ticks": 1})
    try:
        assert not is_running(impostor)
        assert stop(impostor) is False
        assert _alive(process.pid)
    finally:
        stop(process)


def test_wait_ready_fails_fast_with_the_log_tail_when_the_process_dies(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('bad flag --frobnicate', flush=True); sys.exit(3)"]
    process = spawn("broken", argv, tmp_path / "broken.log", ready=Readiness(f"http://127.0.0.1:{free_port()}/"))
    with pytest.raises(ProcessFailed, match=r"(?s)broken .* exited before becoming ready.*--frobnicate"):
        wait_ready(process, timeout=30)


def test_wait_ready_polls_until_the_url_answers(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    process = spawn("http", argv, tmp_path / "http.log", ready=Readiness(f"http://127.0.0.1:{port}/"))
    try:
        assert wait_ready(process, timeout=30) < 30
    finally:
        stop(process)


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    first = spawn("a", SLEEPER, tmp_path / "a.log", ready=Readiness("https://127.0.0.1:1/readyz", "/ca.crt"))
    second = spawn("b", SLEEPER, tmp_path / "b.log")
    try:
        record(tmp_path, first)
        record(tmp_path, second)
        State.load(tmp_path).with_info(apiserver="https://127.0.0.1:1").save(tmp_path)  # type: ignore[union-attr]
        loaded = State.load(tmp_path)
        assert loaded is not None
        assert loaded.processes == (first, second)
        assert loaded.info == {"apiserver": "https://127.0.0.1:1"}
        assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
        stopped = stop_all(loaded.processes)
        assert [p.name for p in stopped] == ["b", "a"]
    finally:
        stop_all([first, second])
    assert not _alive(first.pid) and not _alive(second.pid)


def test_port_free_ignores_time_wait_but_not_a_listener() -> None:
    """A server that closed its connections first leaves them in TIME_WAIT on its port; a restarted
    server (Go listens with SO_REUSEADDR) can bind it again, so the port must count as free."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's net.Listen does
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        assert not port_free(port)  # somebody listens: taken
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: its end goes to TIME_WAIT
            client.recv(1)
    assert port_free(port)
