"""CPU per review of two checkouts' webhooks, measured in interleaved rounds under the same load.

    .venv/bin/python bench/bench_webhook_ab.py BEFORE_DIR AFTER_DIR [--concurrency 16] [--rounds 6]
        [--venv .venv-release] [--case allow]

Each directory is a checkout with its own virtual environment (``--venv``, relative to it: ``make venv`` or
``make venv-release`` there). Both servers (one gunicorn worker each, as deployed otherwise) start at once
and stay up; ``wrk`` loads one, then the other, alternating which goes first, so a busy neighbour on a
shared machine weighs on both alike. Prints, per checkout, the median of the rounds' CPU per review (user +
system of the worker, from /proc) and every round's figure, and the median requests per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SERVE = """
import signal, sys, time
from pathlib import Path
sys.path.insert(0, "bench")
import bench_webhook as bw
directory = Path(sys.argv[1])
(directory / "review.json").write_bytes(bw.review(sys.argv[2]))
(directory / "review.lua").write_text(bw.LUA.replace("{body}", str(directory / "review.json")))
server = bw.Server(directory, workers=1)
print(server.url, server.process.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
while True:
    time.sleep(1)
"""


def worker_cpu(pid: str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs=2, type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--case", choices=("allow", "deny"), default="allow")
    args = parser.parse_args()
    servers: list[tuple[Path, subprocess.Popen[str], str, str, Path]] = []
    cpu: dict[Path, list[float]] = {}
    rate: dict[Path, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="dg-webhook-ab-") as tmp:
        try:
            for index, checkout in enumerate(args.checkouts):
                directory = Path(tmp) / str(index)
                directory.mkdir()
                python = checkout.resolve() / args.venv / "bin" / "python"
                process = subprocess.Popen([str(python), "-c", SERVE, str(directory), args.case], cwd=checkout,
                                           stdout=subprocess.PIPE, text=True)
                assert process.stdout is not None
                url, pid = process.stdout.readline().split()
                worker = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
                servers.append((checkout, process, url, worker, directory))
                cpu[checkout], rate[checkout] = [], []
            for round_ in range(args.rounds):
                for checkout, _, url, worker, directory in servers if round_ % 2 == 0 else servers[::-1]:
                    before = worker_cpu(worker)
                    out = subprocess.run(["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.seconds}s", "-s",
                                          str(directory / "review.lua"), url],
                                         capture_output=True, text=True, check=True).stdout
                    requests = int(next(line for line in out.splitlines() if line.startswith("RESULT")).split()[1])
                    cpu[checkout].append((worker_cpu(worker) - before) / requests * 1e6)
                    rate[checkout].append(requests / args.seconds)
        finally:
            for _, process, *_ in servers:
                process.terminate()
                process.wait(30)
    print(f"{args.case} c={args.concurrency}, {args.rounds} interleaved rounds of {args.seconds}s, venv {args.venv}")
    for checkout in args.checkouts:
        print(f"{checkout!s:<28} CPU per review median {statistics.median(cpu[checkout]):6.0f} µs "
              f"(rounds {', '.join(f'{x:.0f}' for x in cpu[checkout])}); "
              f"{statistics.median(rate[checkout]):.0f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
