"""What verifying signatures (``spec.verify``) costs a sync: OpenPGP vs SSH, HEAD vs Tag vs TagAndHEAD, cold vs cached.

    .venv/bin/python bench/bench_verify.py [--rounds 20]

Real keys (gpg, ssh-keygen), a real git repository with a signed commit and a signed annotated tag per key, the
reconciler's own git cache (``reconciler.gitsource.GitSource``, fetched once) and the pipeline step a sync runs
(``reconciler.verification.SourceVerification.check``: the Secret's keys read and parsed, the commit and tag
objects read from the cache, the verdict). The Secret comes from an in-memory cluster, so no API server time is
in the figures. "cold" is a new revision's first sync (a fresh verdict cache: gpg or ssh-keygen runs once per
signed object); "cached" is every later sync of the same revision (a periodic resync: no tool runs). For scale,
the no-op fetch every poll does anyway is printed too. Medians of ``--rounds`` syncs, and the slowest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.fake_cluster import FakeCluster
from support.signing_keys import GpgKey, SshKey, git, gpg_key, secret_data, signed_commit, ssh_key

from driftguard.core import signatures
from driftguard.core.signatures import Policy
from reconciler.application import AppSpec, parse_application
from reconciler.gitsource import GitSource
from reconciler.revision import Revision
from reconciler.signing import Verifier
from reconciler.verification import SourceVerification

MODES = ("HEAD", "Tag", "TagAndHEAD")


def _repo(directory: Path, key: GpgKey | SshKey) -> str:
    directory.mkdir()
    git(directory, "init", "-q", "-b", "main")
    (directory / "app").mkdir()
    (directory / "app" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    signed_commit(directory, "one", key)
    git(directory, "tag", "-s", "-m", "release 1", "v1", key=key)
    return str(directory)


def _app(url: str, mode: str) -> dict[str, object]:
    return {"apiVersion": "driftguard.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "bench", "namespace": "team", "generation": 1},
            "spec": {"project": "default", "destination": {"namespace": "team"},
                     "source": {"repoURL": url, "targetRevision": "main" if mode == "HEAD" else "v1", "path": "app"},
                     "verify": {"mode": mode, "keys": {"secretRef": {"name": "trusted"}}}}}


def _times(call: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def _sync(step: SourceVerification, *, spec: AppSpec, policy: Policy, revision: Revision) -> str:
    """One sync's signature check of ``revision``: who signed it."""
    return step.check(spec, policy, revision, lambda _: None).verified_by


def _shown(seconds: list[float]) -> str:
    median, worst = statistics.median(seconds), max(seconds)
    if worst < 0.001:
        return f"{median * 1e6:7.0f} µs (max {worst * 1e6:.0f})"
    return f"{median * 1e3:7.1f} ms (max {worst * 1e3:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dg-bench-verify-") as scratch:
        root = Path(scratch)
        gpg = gpg_key("Alice <alice@example.com>")
        try:
            keys: dict[str, GpgKey | SshKey] = {"OpenPGP": gpg, "SSH": ssh_key(root, "bob", "bob@example.com")}
            assert isinstance(keys["SSH"], SshKey)
            cluster = FakeCluster()
            cluster.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "trusted", "namespace": "team"},
                         "data": secret_data({"alice.asc": gpg.public(), "bob.pub": keys["SSH"].public()})})
            source = GitSource(root / "cache")
            print(f"{args.rounds} syncs each; one Secret holding both keys\n")
            print(f"{'key':8s} {'mode':11s} {'cold (first sync of a revision)':>34s} {'cached (resync)':>26s} "
                  f"{'tool runs':>10s}")
            fetches = []
            for name, key in keys.items():
                url = _repo(root / name, key)
                for mode in MODES:
                    spec = parse_application(_app(url, mode))
                    assert spec.verify is not None and not spec.problems, spec.problems
                    policy = signatures.policy(spec.verify, None, app_namespace="team", project_name="default",
                                               project_namespace="driftguard-system")
                    assert policy is not None
                    revision = source.resolve(url, spec.source.target_revision)
                    fetches += _times(partial(source.resolve, url, spec.source.target_revision), 3)
                    sync = partial(_sync, spec=spec, policy=policy, revision=revision)
                    cold_steps = [SourceVerification(cluster, source, Verifier())  # type: ignore[arg-type]
                                  for _ in range(args.rounds)]
                    cold = [t for step in cold_steps for t in _times(partial(sync, step), 1)]
                    warm = SourceVerification(cluster, source, Verifier())  # type: ignore[arg-type]
                    signer = sync(warm)
                    assert signer, f"{name} {mode}: not verified"
                    cached = _times(partial(sync, warm), args.rounds)
                    runs = cold_steps[0].verifier.runs
                    print(f"{name:8s} {mode:11s} {_shown(cold):>34s} {_shown(cached):>26s} {runs:>10d}")
            print(f"\nfor scale: the no-op fetch of every poll (GitSource.resolve, local repository): "
                  f"{_shown(fetches)}")
        finally:
            gpg.close()


if __name__ == "__main__":
    main()
