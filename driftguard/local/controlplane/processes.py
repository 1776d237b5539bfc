"""Background processes that must outlive their starter, and be stopped without leftovers.

A ``ManagedProcess`` is data — name, argv, pid, log file, how to tell it is ready — so it can be
written to ``<dir>/state.json`` by one command (``driftguard local up``) and stopped by another
(``local down``). Each process leads its own session (``start_new_session=True``): a Ctrl-C in the
starter's terminal does not reach it, and stopping signals the whole process group, so forked
workers (gunicorn's) go too.

Stopping is SIGTERM, a grace period, then SIGKILL, and waiting until the process is really gone.
A recorded pid is only signalled while it still belongs to the process we started (its start time
in /proc matches), so a stale state file cannot kill an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from certs import write_private

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1


class ProcessFailed(RuntimeError):
    """A managed process exited or did not become ready in time."""


@dataclass(frozen=True)
class Readiness:
    """An HTTP(S) URL that answers 200 once the process is ready; ``ca_file`` verifies HTTPS."""

    url: str
    ca_file: str | None = None


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    argv: tuple[str, ...]
    pid: int
    log_file: str
    ready: Readiness | None = None
    start_ticks: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManagedProcess:
        ready = data.get("ready")
        return cls(
            name=str(data["name"]),
            argv=tuple(data["argv"]),
            pid=int(data["pid"]),
            log_file=str(data["log_file"]),
            ready=Readiness(**ready) if ready else None,
            start_ticks=data.get("start_ticks"),
        )


@dataclass(frozen=True)
class State:
    """What runs in a directory: the processes (in start order) and named endpoints/paths."""

    processes: tuple[ManagedProcess, ...] = ()
    info: Mapping[str, str] = field(default_factory=dict)

    def with_process(self, process: ManagedProcess) -> State:
        others = tuple(p for p in self.processes if p.name != process.name)
        return State(processes=(*others, process), info=self.info)

    def with_info(self, **info: str) -> State:
        return State(processes=self.processes, info={**self.info, **info})

    def save(self, directory: Path) -> Path:
        document = {
            "version": STATE_VERSION,
            "processes": [p.to_json() for p in self.processes],
            "info": dict(self.info),
        }
        return write_private(directory / STATE_FILE, json.dumps(document, indent=2).encode() + b"\n")

    @classmethod
    def load(cls, directory: Path) -> State | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        document = json.loads(path.read_text())
        processes = tuple(ManagedProcess.from_json(p) for p in document.get("processes", []))
        return cls(processes=processes, info=dict(document.get("info", {})))


def record(directory: Path, process: ManagedProcess) -> None:
    """Add (or replace, by name) ``process`` in ``directory/state.json`` — right after spawning it, so
    ``driftguard local down`` finds it even if the starter dies while waiting for it."""
    (State.load(directory) or State()).with_process(process).save(directory)


def spawn(
    name: str,
    argv: Sequence[str],
    log_file: Path,
    *,
    ready: Readiness | None = None,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Start ``argv`` in its own session, stdin closed, stdout+stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    log.info("started %s (pid %d), log %s", name, process.pid, log_file)
    _children[process.pid] = process
    return ManagedProcess(name, tuple(argv), process.pid, str(log_file), ready, _start_ticks(process.pid))


# Popen handles of processes this interpreter started, so stopping them also reaps them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def is_running(process: ManagedProcess) -> bool:
    """Whether ``process`` is alive (not a zombie) and still the process that was started."""
    child = _children.get(process.pid)
    if child is not None and child.poll() is not None:
        return False
    if not _pid_alive(process.pid):
        return False
    ticks = _start_ticks(process.pid)
    return process.start_ticks is None or ticks is None or ticks == process.start_ticks


def wait_ready(process: ManagedProcess, timeout: float, interval: float = 0.1) -> float:
    """Poll the readiness URL until 200; return the seconds waited. Fails fast if the process dies."""
    started = time.monotonic()
    if process.ready is None:
        return 0.0
    context = _ssl_context(process.ready)
    last_error = "no answer yet"
    while time.monotonic() - started < timeout:
        if not is_running(process):
            raise ProcessFailed(_failure(process, "exited before becoming ready"))
        ok, last_error = _probe(process.ready.url, context)
        if ok:
            return time.monotonic() - started
        time.sleep(interval)
    raise ProcessFailed(_failure(process, f"not ready after {timeout:.0f}s ({last_error})"))


def stop(process: ManagedProcess, grace: float = 10.0) -> bool:
    """SIGTERM the process group, SIGKILL after ``grace`` seconds; True if it was running."""
    if not is_running(process):
        if not _pid_alive(process.pid):
            _reap(process.pid)
        return False
    send = _group_signaller(process.pid)
    send(signal.SIGTERM)
    if not _wait_gone(process, grace):
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing", process.name, process.pid, grace)
        send(signal.SIGKILL)
        _wait_gone(process, 10.0)
    send(signal.SIGKILL)  # whatever the leader left behind in its group
    log.info("stopped %s (pid %d)", process.name, process.pid)
    return True


def stop_all(processes: Sequence[ManagedProcess], grace: float = 10.0) -> list[ManagedProcess]:
    """Stop in reverse start order; return the ones that were running."""
    return [p for p in reversed(processes) if stop(p, grace)]


def log_tail(process: ManagedProcess, lines: int = 30) -> str:
    try:
        text = Path(process.log_file).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (racy by nature; the kernel rarely reuses it quickly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on 127.0.0.1 right now.

    Bound with SO_REUSEADDR, as Go's (etcd's, kube-apiserver's) listeners are: connections a stopped
    server closed linger in TIME_WAIT on its port for a minute, and without the option they would make
    a restart in the same directory move to another port and break every exported kubeconfig.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _failure(process: ManagedProcess, what: str) -> str:
    return f"{process.name} (pid {process.pid}) {what}; last lines of {process.log_file}:\n{log_tail(process)}"


def _probe(url: str, context: ssl.SSLContext | None) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except (OSError, ssl.SSLError) as error:
        return False, str(error)


def _ssl_context(ready: Readiness) -> ssl.SSLContext | None:
    if not ready.url.startswith("https:"):
        return None
    return ssl.create_default_context(cafile=ready.ca_file)


def _wait_gone(process: ManagedProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    _reap(process.pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a child of ours that is gone (or a zombie), so it leaves no trace."""
    child = _children.get(pid)
    if child is None:
        return
    try:
        child.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return
    del _children[pid]


def _group_signaller(pid: int) -> Callable[[signal.Signals], None]:
    """Signal the whole group when ``pid`` leads one (it does when we spawned it), else just ``pid``."""
    try:
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        leader = False
    deliver = os.killpg if leader else os.kill

    def send(signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            deliver(pid, signum)

    return send


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in {"Z", "X"}


def _proc_state(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first); None where there is no /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()
