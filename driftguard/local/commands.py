"""``driftguard local up|down``: a whole driftguard installation on this machine, no cluster needed.

``up`` starts the control plane (and, as later issues add them, the webhook and the reconciler)
detached: every process leads its own session, is recorded in ``<dir>/state.json`` the moment it is
spawned, and outlives the command. ``down`` stops whatever ``state.json`` lists, newest first, and
waits until each is gone. Both are idempotent: ``up`` on a running directory only reports it, ``down``
on a stopped one says so and does nothing.

To add a component to local mode: after the control plane is up, ``spawn`` it with a ``Readiness``
URL, ``record`` it in the directory and ``wait_ready`` it (see ``driftguard.local.controlplane.processes``);
``down`` needs no change. This module refuses to adopt processes it did not record.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from driftguard.install import InstallError
from driftguard.kube import KubeError
from driftguard.kube.resources import ResourceError
from driftguard.local import stack
from driftguard.local.controlplane import BinariesUnavailable, ControlPlane, ControlPlaneError, resolve_binaries
from driftguard.local.controlplane.processes import ProcessFailed, State, is_running, stop_all


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``local up`` and ``local down``."""
    local = subparsers.add_parser("local", help="run driftguard and a real control plane on this machine")
    actions = local.add_subparsers(dest="local_command", required=True)
    up_parser = actions.add_parser("up", help="start everything in the background; return when ready")
    up_parser.add_argument("--dir", type=Path, default=Path(".local"), help="state directory (default .local)")
    up_parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up_parser.set_defaults(func=lambda args: up(args.dir, args.timeout))
    down_parser = actions.add_parser("down", help="stop everything started by `local up --dir`")
    down_parser.add_argument("--dir", type=Path, default=Path(".local"), help="state directory (default .local)")
    down_parser.set_defaults(func=lambda args: down(args.dir))
    demo_parser = actions.add_parser("demo", help="walk through the driftguard story on a running `local up`")
    demo_parser.add_argument("--dir", type=Path, default=Path(".local"), help="state directory (default .local)")
    demo_parser.set_defaults(func=lambda args: demo(args.dir))


def up(directory: Path, timeout: float = 120.0) -> int:
    directory = directory.resolve()
    state = State.load(directory)
    running = [p for p in state.processes if is_running(p)] if state else []
    if state and running and len(running) == len(state.processes):
        _say(f"already up in {directory}")
        _print_usage(directory, state)
        return 0
    if running:
        _say(f"{directory} is partly running ({', '.join(p.name for p in running)}); stopping it first")
        stop_all(running)
    started = time.monotonic()
    try:
        plane = ControlPlane(directory, resolve_binaries(), progress=_say)
        plane.start(timeout)
        info = stack.start(plane, timeout, _say)
    except (BinariesUnavailable, ControlPlaneError, KubeError, ResourceError, ProcessFailed, InstallError,
            OSError) as error:
        _say(f"error: {error}")
        _say("stopping what was started; logs are kept in " + str(directory / "logs"))
        down(directory)
        return 1
    state = State.load(directory) or State()
    state.with_info(**info).save(directory)
    _say(f"driftguard local is up ({time.monotonic() - started:.1f}s)")
    _print_usage(directory, State.load(directory) or State())
    return 0


def down(directory: Path) -> int:
    directory = directory.resolve()
    state = State.load(directory)
    if state is None or not any(is_running(p) for p in state.processes):
        _say(f"nothing running in {directory}")
        if state is not None and state.processes:
            State(info=state.info).save(directory)
        return 0
    for process in stop_all(state.processes):
        _say(f"stopped {process.name} (pid {process.pid})")
    State(info=state.info).save(directory)
    return 0


def demo(directory: Path) -> int:
    from driftguard.local import demo as story  # the demo is only imported when asked for

    directory = directory.resolve()
    try:
        steps = story.Demo(directory, sys.stdout).run()
    except story.DemoError as error:
        _say(f"demo failed: {error}")
        return 1
    story.print_next_steps(directory, sys.stdout)
    print(f"\n{len(steps)} steps ok in {sum(s.seconds for s in steps):.1f}s")
    return 0


def _print_usage(directory: Path, state: State) -> None:
    info = state.info
    kubectl = info.get("kubectl") or "kubectl"
    admin = info.get("admin_kubeconfig", directory / "admin.kubeconfig")
    print(
        f"driftguard local is up in {directory}\n"
        f"  API server:  {info.get('apiserver', '?')} (Kubernetes v{info.get('kubernetes_version', '?')})\n"
        f"  webhook:     {info.get('webhook', '-')} (audit file {info.get('audit_file', '-')})\n"
        f"  reconciler:  {info.get('reconciler', '-')} (POST /refresh to sync now, with "
        f"Authorization: Bearer $(cat {info.get('refresh_token_file', '<dir>/refresh-token')}))\n"
        f"  web UI:      {info.get('ui', '-')} (login token {info.get('ui_login_token', '-')}; signs in as the "
        f"laptop user; CA {info.get('webhook_ca', '-')})\n"
        f"  kubectl:     {kubectl}  (version-matched)\n"
        "\n"
        "Act as an engineer's laptop (cluster-admin by RBAC; only admission can stop it):\n"
        f"  export KUBECONFIG={info.get('laptop_kubeconfig', directory / 'laptop.kubeconfig')}\n"
        "Act as the cluster administrator (system:masters):\n"
        f"  export KUBECONFIG={admin}\n"
        f"then e.g.: {kubectl} get applications -A\n"
        f"           driftguard status --kubeconfig {admin}\n"
        f"           driftguard audit --dir {directory}\n"
        "\n"
        f"Stop everything: driftguard local down --dir {directory}"
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
