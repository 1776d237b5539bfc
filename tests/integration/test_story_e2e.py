"""The demo's walkthrough as an end-to-end test: `local up`, every step's outcome asserted, `local down`.

The same ``driftguard.demo.Demo`` that ``make demo`` prints runs here; each step raises when its
outcome is wrong (a denial without git's value, a prune that never happens...), and this test also
checks the facts a person would: timings stay bounded, the audit file holds the laptop's attempts,
and nothing is left running afterwards.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftguard.demo import Demo

pytestmark = pytest.mark.integration


def driftguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftguard.cli", *args], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL, check=False)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    if os.environ.get("DRIFTGUARD_TEST_KUBECONFIG"):
        pytest.skip("the story runs on its own local stack; not exercised against an external cluster")
    directory = tmp_path / "stack"
    up = driftguard("local", "up", "--dir", str(directory))
    assert up.returncode == 0, up.stderr
    yield directory
    driftguard("local", "down", "--dir", str(directory))


def test_the_whole_story(stack: Path) -> None:
    out = io.StringIO()
    steps = Demo(stack, out).run()

    assert [s.ok for s in steps] == [True] * 9, out.getvalue()
    by_number = {int(s.title.split(".")[0]): s for s in steps}
    assert by_number[2].facts["replicas"] == 3
    assert "is declared in git (3)" in by_number[3].output and "this request sets 9" in by_number[3].output
    assert "commit" in by_number[3].output and "alice@example.org" in by_number[3].output
    assert by_number[5].facts["seconds"] < 10
    assert by_number[7].facts["revert_seconds"] < 10

    records = [json.loads(line) for line in (stack / "audit.jsonl").read_text().splitlines()]
    laptop = [r for r in records if r["user"] == "laptop"]
    assert {r["decision"] for r in laptop} >= {"deny", "warn"}
    assert all(r.get("object") for r in laptop)

    state = json.loads((stack / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    assert {p["name"] for p in state["processes"]} == {"etcd", "kube-apiserver", "webhook", "reconciler"}
    down = driftguard("local", "down", "--dir", str(stack))
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if alive(pid)] == []
