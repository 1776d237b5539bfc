"""`driftguard local up/down/demo` as a user runs them: separate processes that return, then clean up.

The demo's walkthrough runs here as the end-to-end test: the same ``driftguard.local.demo.Demo`` that
``make demo`` prints, every step's outcome checked (each step raises when driftguard does not do what it
promises), plus the facts a person would check: the audit file and nothing left running (each step's wait is bounded;
its speed is measured by the benchmarks, not asserted here).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from driftguard.kube import Kube, KubeError
from driftguard.local.demo import Demo

pytestmark = pytest.mark.integration


def driftguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftguard.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's exit status may wait for a non-reaping init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def processes_mentioning(directory: Path) -> list[int]:
    """Live processes whose command line mentions ``directory`` (leftovers, whoever started them)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.fixture
def local_dir(tmp_path: Path) -> Path:
    if os.environ.get("DRIFTGUARD_TEST_KUBECONFIG"):
        pytest.skip("local mode starts its own control plane; not exercised against an external cluster")
    directory = tmp_path / "local"
    yield directory
    if (directory / "state.json").exists():
        driftguard("local", "down", "--dir", str(directory))  # never leave a cluster behind a failed test
    shutil.rmtree(directory / "etcd", ignore_errors=True)


def test_local_up_down_round_trip_leaves_no_process_behind(local_dir: Path) -> None:
    up = driftguard("local", "up", "--dir", str(local_dir))
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={local_dir / 'laptop.kubeconfig'}" in up.stdout
    assert "ready" in up.stderr

    state = json.loads((local_dir / "state.json").read_text())
    pids = {p["name"]: p["pid"] for p in state["processes"]}
    assert sorted(pids) == ["etcd", "kube-apiserver", "reconciler", "ui", "webhook"]
    assert all(alive(pid) for pid in pids.values()), "up returned but its processes are not running"

    with Kube(local_dir / "laptop.kubeconfig") as laptop:  # usable after the CLI exited
        review = laptop.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    assert review["status"]["userInfo"]["username"] == "laptop"

    # POST /refresh needs the generated token (0600, never on the reconciler's command line)
    token_file = local_dir / "refresh-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32 and all(token not in " ".join(p["argv"]) for p in state["processes"])
    refresh = state["info"]["reconciler"] + "/refresh"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(refresh, method="POST", data=b""), timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    authorized = urllib.request.Request(refresh, method="POST", data=b"", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(authorized, timeout=10) as answer:
        assert answer.status == 202  # accepted: a sync is queued

    again = driftguard("local", "up", "--dir", str(local_dir))
    assert again.returncode == 0 and "already up" in again.stderr
    assert {p["name"]: p["pid"] for p in json.loads((local_dir / "state.json").read_text())["processes"]} == pids

    down = driftguard("local", "down", "--dir", str(local_dir))
    assert down.returncode == 0, down.stderr
    assert f"stopped kube-apiserver (pid {pids['kube-apiserver']})" in down.stderr
    assert [pid for pid in pids.values() if alive(pid)] == []
    assert processes_mentioning(local_dir) == []

    twice = driftguard("local", "down", "--dir", str(local_dir))
    assert twice.returncode == 0 and "nothing running" in twice.stderr

    restarted = driftguard("local", "up", "--dir", str(local_dir))  # same directory: data and kubeconfigs kept
    assert restarted.returncode == 0, restarted.stderr
    with Kube(local_dir / "admin.kubeconfig") as admin:
        probe = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "forged", "labels": {"driftguard.io/managed": "true"}}}
        with pytest.raises(KubeError, match="forged ownership"):  # the new webhook answers, not a stale one
            admin.request("POST", "/api/v1/namespaces/default/configmaps", body=probe)
    final = driftguard("local", "down", "--dir", str(local_dir))
    assert final.returncode == 0
    assert processes_mentioning(local_dir) == []


def test_local_down_on_a_directory_never_started_is_a_no_op(local_dir: Path) -> None:
    down = driftguard("local", "down", "--dir", str(local_dir))
    assert down.returncode == 0
    assert "nothing running" in down.stderr


def test_the_whole_story(local_dir: Path) -> None:
    """The demo's walkthrough, each step's outcome asserted (``driftguard.local.demo`` raises on a wrong one)."""
    up = driftguard("local", "up", "--dir", str(local_dir))
    assert up.returncode == 0, up.stderr
    stack = local_dir
    out = io.StringIO()
    steps = Demo(stack, out, step_timeout=120.0).run()  # generous: the machine may be loaded

    assert [s.ok for s in steps] == [True] * 9, out.getvalue()
    by_number = {int(s.title.split(".")[0]): s for s in steps}
    assert by_number[2].facts["replicas"] == 3
    assert "is declared in git (3)" in by_number[3].output and "this request sets 9" in by_number[3].output
    assert "commit" in by_number[3].output and "alice@example.org" in by_number[3].output
    assert by_number[5].facts["commit"][:7] in by_number[8].output  # the reverted commit is the one step 5 made

    records = [json.loads(line) for line in (stack / "audit.jsonl").read_text().splitlines()]
    laptop = [r for r in records if r["user"] == "laptop"]
    assert {r["decision"] for r in laptop} >= {"deny", "warn"}
    assert all(r.get("object") for r in laptop)

    state = json.loads((stack / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    assert {p["name"] for p in state["processes"]} == {"etcd", "kube-apiserver", "webhook", "reconciler", "ui"}
    down = driftguard("local", "down", "--dir", str(stack))
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if alive(pid)] == []
