"""Finding (or building) a version-matched kube-apiserver, etcd and kubectl.

Resolution order, first hit wins, and an explicit choice that is broken is an error rather than a
silent fall-through:

1. ``DRIFTGUARD_BIN_DIR`` — a directory holding ``kube-apiserver`` and ``etcd`` (``kubectl`` optional);
2. ``KUBEBUILDER_ASSETS`` — the same layout controller-runtime's envtest uses;
3. the cache ``${XDG_CACHE_HOME:-~/.cache}/driftguard/bin-v<KUBERNETES_VERSION>/``;
4. a build from the Go modules under the repository's ``tools/`` (``GOTOOLCHAIN=local``,
   ``CGO_ENABLED=0``) into that cache — minutes the first time, never again.

Builds write to a temporary name and rename, so an interrupted build never leaves a half binary, and
take a lock so two processes never build at once. This module never downloads binaries.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.8"  # what k8s.io/apiserver v0.36.3 pins; fixed by tools/etcd/go.mod
REQUIRED = ("kube-apiserver", "etcd")
PROGRESS_EVERY = 30.0


class BinariesUnavailable(RuntimeError):
    """No usable control-plane binaries, and no way to build them here."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path | None
    source: str


@dataclass(frozen=True)
class _Target:
    name: str
    module_dir: str
    package: str
    versioned: bool
    ldflags: str = ""  # beyond -s -w and the Kubernetes version stamps


_TARGETS = (
    _Target("kube-apiserver", "controlplane", "./kube-apiserver", versioned=True),
    _Target("etcd", "etcd", "go.etcd.io/etcd/server/v3", versioned=False),
    _Target("kubectl", "controlplane", "./kubectl", versioned=True),
)

# The node and controllers of a real single-node cluster (`driftguard cluster up`), built on demand only:
# local mode and the integration tests never need them.
# ``pause`` is the pod sandbox's PID 1 (tools/pause), packed into an image so no registry is needed.
NODE_BINARIES = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause")
_NODE_TARGETS = (
    *(_Target(name, "controlplane", f"./{name}", versioned=True) for name in NODE_BINARIES if name != "pause"),
    _Target("pause", "pause", ".", versioned=False),
)


# The renderers the reconciler runs for Kustomize, Helm and Jsonnet sources, pinned by tools/<name>/go.mod.
RENDER_TOOLS = {"kustomize": "v5.8.1", "helm": "v4.3.2", "jsonnet": "v0.22.0"}
_RENDER_TARGETS = (
    _Target("kustomize", "kustomize", "sigs.k8s.io/kustomize/kustomize/v5", versioned=False),
    _Target("helm", "helm", "helm.sh/helm/v4/cmd/helm", versioned=False,
            ldflags=f"-X helm.sh/helm/v4/internal/version.version={RENDER_TOOLS['helm']}"),
    _Target("jsonnet", "jsonnet", "github.com/google/go-jsonnet/cmd/jsonnet", versioned=False),
)


# Tools only the tests run: the CNCF distribution registry (an OCI registry the chart tests push to), pinned by
# tools/registry/go.mod, cached under its version (``registry-v3.1.2``) so a bump rebuilds it.
TEST_TOOLS = {"registry": "v3.1.2"}
_TEST_TARGETS = tuple(
    _Target(f"{name}-{version}", name, "github.com/distribution/distribution/v3/cmd/registry", versioned=False,
            ldflags=f"-X github.com/distribution/distribution/v3/version.version={version}")
    for name, version in TEST_TOOLS.items()
)


def resolve_test_tools(
    *, env: Mapping[str, str] | None = None, progress: TextIO | None = None
) -> dict[str, Path]:
    """The tests' tools by name (the OCI registry), from the cache ``…/driftguard/tools-v1/<name>-<version>``,
    building the missing ones from tools/."""
    environ = os.environ if env is None else env
    directory = cache_dir(environ).parent / "tools-v1"
    if any(not _is_executable(directory / t.name) for t in _TEST_TARGETS):
        build_missing(directory, env=environ, progress=progress or sys.stderr, targets=_TEST_TARGETS)
    return {name: directory / f"{name}-{version}" for name, version in TEST_TOOLS.items()}


def resolve_render_tools(
    *, env: Mapping[str, str] | None = None, progress: TextIO | None = None
) -> dict[str, Path]:
    """kustomize, helm and jsonnet by name: from ``DRIFTGUARD_TOOLS_DIR`` when set (all three must be
    there), else from the cache ``…/driftguard/tools-v1/``, building the missing ones from tools/."""
    environ = os.environ if env is None else env
    explicit = environ.get("DRIFTGUARD_TOOLS_DIR")
    directory = Path(explicit) if explicit else cache_dir(environ).parent / "tools-v1"
    missing = [name for name in RENDER_TOOLS if not _is_executable(directory / name)]
    if missing and explicit:
        raise BinariesUnavailable(f"DRIFTGUARD_TOOLS_DIR={directory}: missing executable {', '.join(missing)}")
    if missing:
        build_missing(directory, env=environ, progress=progress or sys.stderr, targets=_RENDER_TARGETS)
    return {name: directory / name for name in RENDER_TOOLS}


def resolve_node_binaries(
    *, env: Mapping[str, str] | None = None, progress: TextIO | None = None
) -> dict[str, Path]:
    """Every binary of a real cluster (control plane, controllers, node agents, kubectl) by name, from
    the cache, building the missing ones from the repository's Go modules.

    ``DRIFTGUARD_BIN_DIR`` may point at a directory holding all of them; unlike the control plane there
    is no envtest fallback (envtest ships no kubelet).
    """
    environ = os.environ if env is None else env
    names = (*REQUIRED, "kubectl", *NODE_BINARIES)
    explicit = environ.get("DRIFTGUARD_BIN_DIR")
    directory = Path(explicit) if explicit else cache_dir(environ)
    missing = [name for name in names if not _is_executable(directory / name)]
    if missing and explicit:
        raise BinariesUnavailable(f"DRIFTGUARD_BIN_DIR={directory}: missing executable {', '.join(missing)}")
    if missing:
        build_missing(directory, env=environ, progress=progress or sys.stderr, targets=(*_TARGETS, *_NODE_TARGETS))
    return {name: directory / name for name in names}


def resolve_binaries(
    *, build: bool = True, env: Mapping[str, str] | None = None, progress: TextIO | None = None
) -> Binaries:
    """Find the binaries, building them into the cache when allowed and needed."""
    environ = os.environ if env is None else env
    for variable in ("DRIFTGUARD_BIN_DIR", "KUBEBUILDER_ASSETS"):
        if environ.get(variable):
            return _from_directory(Path(environ[variable]), variable)
    cache = cache_dir(environ)
    complete = all(_is_executable(cache / name) for name in (*REQUIRED, "kubectl"))
    if complete or (not build and all(_is_executable(cache / name) for name in REQUIRED)):
        return _from_directory(cache, "cache")
    if not build:
        raise BinariesUnavailable(_missing_message(cache, "building was not allowed"))
    return build_binaries(cache, env=environ, progress=progress or sys.stderr)


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    base = Path(environ.get("XDG_CACHE_HOME") or Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return base / "driftguard" / f"bin-v{KUBERNETES_VERSION}"


def tools_dir() -> Path:
    """The repository's Go tools modules, found from this package's location."""
    return Path(__file__).resolve().parents[3] / "tools"


def build_binaries(
    destination: Path,
    *,
    env: Mapping[str, str] | None = None,
    progress: TextIO = sys.stderr,
    targets: tuple[_Target, ...] = _TARGETS,
) -> Binaries:
    """Build every missing binary into ``destination`` from the repository's Go modules."""
    build_missing(destination, env=env, progress=progress, targets=targets)
    return _from_directory(destination, "built")


def build_missing(
    destination: Path, *, env: Mapping[str, str] | None = None, progress: TextIO = sys.stderr,
    targets: tuple[_Target, ...] = _TARGETS,
) -> None:
    """Build each of ``targets`` that ``destination`` lacks, under a lock, from tools/."""
    environ = dict(os.environ if env is None else env)
    go = shutil.which("go", path=environ.get("PATH"))
    tools = tools_dir()
    if go is None:
        raise BinariesUnavailable(_missing_message(destination, "no `go` on PATH"))
    if not (tools / "controlplane" / "go.mod").is_file():
        raise BinariesUnavailable(_missing_message(destination, f"no Go tools modules at {tools}"))
    destination.mkdir(parents=True, exist_ok=True)
    builder = _Builder(go, tools, destination, _go_env(environ), progress)
    with _build_lock(destination):
        for target in targets:
            if not _is_executable(destination / target.name):
                builder.build(target)


@dataclass(frozen=True)
class _Builder:
    go: str
    tools: Path
    destination: Path
    env: dict[str, str]
    progress: TextIO

    def build(self, target: _Target) -> None:
        final = self.destination / target.name
        partial = self.destination / f".{target.name}.{os.getpid()}.partial"
        version = (f"v{KUBERNETES_VERSION}" if target.versioned else f"v{ETCD_VERSION}" if target.name == "etcd"
                   else RENDER_TOOLS.get(target.name, TEST_TOOLS.get(target.module_dir, "")))
        argv = [self.go, "build", "-trimpath", "-ldflags", _ldflags(target), "-o", str(partial), target.package]
        _say(self.progress, f"building {target.name} {version} from Go modules (first time, takes several minutes)…")
        started = time.monotonic()
        try:
            self._run(argv, self.tools / target.module_dir, target.name)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        _say(self.progress, f"built {target.name} in {_elapsed(started)} → {final}")

    def _run(self, argv: list[str], cwd: Path, name: str) -> None:
        started = time.monotonic()
        log_path = self.destination / f"build-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            try:
                while process.poll() is None:
                    try:
                        process.wait(timeout=PROGRESS_EVERY)
                    except subprocess.TimeoutExpired:
                        _say(self.progress, f"  still building {name}… {_elapsed(started)} elapsed")
            except BaseException:
                process.kill()
                process.wait()
                raise
        if process.returncode != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise BinariesUnavailable(
                f"building {name} failed (exit {process.returncode}; full log {log_path}):\n" + "\n".join(tail)
            )
        log_path.unlink()  # kept only when the build failed


def _ldflags(target: _Target) -> str:
    flags = ["-s", "-w", *([target.ldflags] if target.ldflags else [])]
    if target.versioned:
        major, minor, _ = KUBERNETES_VERSION.split(".")
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {package}.gitVersion=v{KUBERNETES_VERSION}"]
            flags += [f"-X {package}.gitMajor={major}", f"-X {package}.gitMinor={minor}"]
    return " ".join(flags)


def _go_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


@contextmanager
def _build_lock(destination: Path) -> Iterator[None]:
    with (destination / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _from_directory(directory: Path, source: str) -> Binaries:
    missing = [name for name in REQUIRED if not _is_executable(directory / name)]
    if missing:
        raise BinariesUnavailable(
            f"{source}={directory}: missing executable {', '.join(missing)} "
            "(expected kube-apiserver and etcd, optionally kubectl)"
        )
    kubectl = directory / "kubectl"
    return Binaries(
        kube_apiserver=directory / "kube-apiserver",
        etcd=directory / "etcd",
        kubectl=kubectl if _is_executable(kubectl) else None,
        source=source,
    )


def _missing_message(cache: Path, why: str) -> str:
    return (
        f"no kube-apiserver/etcd binaries found ({why}). Either install Go ≥ 1.26 "
        f"(https://go.dev/dl/) and run from a driftguard checkout so they are built into {cache}, "
        "or point DRIFTGUARD_BIN_DIR (or KUBEBUILDER_ASSETS) at a directory holding "
        f"kube-apiserver v{KUBERNETES_VERSION} and etcd v{ETCD_VERSION} (kubectl optional)."
    )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _say(progress: TextIO, line: str) -> None:
    print(line, file=progress, flush=True)


def stage_render_tools(directory: Path) -> list[Path]:
    """Copy kustomize, helm and jsonnet into ``directory`` (an image build's context: the Dockerfile
    copies ``.render-tools/`` into the image), building them first if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = []
    for name, path in resolve_render_tools().items():
        target = directory / name
        if not target.exists() or target.stat().st_size != path.stat().st_size or \
                target.stat().st_mtime < path.stat().st_mtime:
            shutil.copy2(path, target)
        staged.append(target)
    return staged


def main(argv: list[str] | None = None) -> int:
    """``python -m driftguard.local.controlplane [tools [--stage DIR] | test-tools]``: resolve (build if needed)
    and print the paths of the control plane, or with ``tools`` of the renderers (kustomize, helm, jsonnet),
    copied into DIR with ``--stage``, or with ``test-tools`` of the tools only tests run (the OCI registry)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["test-tools"]:
            for name, path in resolve_test_tools().items():
                print(f"{name + ':':<15} {path} ({TEST_TOOLS[name]})")
            return 0
        if args[:1] == ["tools"]:
            if args[1:2] == ["--stage"] and len(args) == 3:
                for path in stage_render_tools(Path(args[2])):
                    print(f"staged {path}")
                return 0
            for name, path in resolve_render_tools().items():
                print(f"{name + ':':<15} {path} ({RENDER_TOOLS[name]})")
            return 0
        binaries = resolve_binaries()
    except BinariesUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"kube-apiserver: {binaries.kube_apiserver}")
    print(f"etcd:           {binaries.etcd}")
    print(f"kubectl:        {binaries.kubectl or '(not available)'}")
    print(f"source:         {binaries.source}")
    return 0

