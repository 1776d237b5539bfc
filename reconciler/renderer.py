"""Running the render tools — kustomize, helm, jsonnet — as bounded child processes.

Each tool runs in its own process group with a wall-clock limit (``--render-timeout``), an address-space
limit (``--render-memory``; Go tools reserve most of a GiB at start, so this bounds runaways, not working
sets — in a cluster the container's memory limit is the hard wall, and the kernel kills the tool, not
the reconciler), and an output limit (``--render-max-output``, enforced by the kernel as the file-size
limit of the file its standard output goes to). It runs offline: its HOME and every Helm directory are
a scratch directory of its own, and its environment carries nothing of the reconciler's (no
credentials, no proxies). Nothing it writes is read except its standard output, which the core's
bounded parser reads (``driftguard.core.manifests``). Any failure is a ``RenderError`` naming the tool
and what it said; the caller turns it into a condition, and nothing from that revision is applied.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from driftguard.core.manifests import DEFAULT_LIMITS, Limits, Manifest, ManifestError, check_unique, parse_documents
from reconciler import sources
from reconciler.gitsource import Credentials
from reconciler.render import MAX_OBJECTS
from reconciler.sources import Kind, RenderOptions

TOOLS: Final = ("kustomize", "helm", "jsonnet")
STDERR_SHOWN: Final = 2000  # characters of a tool's error output shown in a condition
MiB: Final = 1024 * 1024


class RenderError(Exception):
    """A render failed; ``transient`` when retrying the same input may succeed (a timeout)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class RenderLimits:
    timeout: float = 60.0
    memory: int = 2048 * MiB  # address space of one tool process
    max_output: int = 64 * MiB
    parse: Limits = DEFAULT_LIMITS
    max_objects: int = MAX_OBJECTS


@dataclass
class RenderTools:
    """Where each tool is (a path, or a name looked up on PATH); versions are asked once, on first use."""

    paths: Mapping[str, str] = field(default_factory=lambda: {t: t for t in TOOLS})
    _versions: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def path(self, tool: str) -> str:
        found = shutil.which(self.paths.get(tool, tool))
        if found is None:
            raise RenderError(f"{tool} is not installed: this source needs it (set --{tool} to its path; the "
                              "container image carries it)")
        return found

    def version(self, tool: str) -> str:
        with self._lock:
            if tool not in self._versions:
                self._versions[tool] = self._ask_version(tool)
            return self._versions[tool]

    def _ask_version(self, tool: str) -> str:
        argv = [self.path(tool), "--version" if tool == "jsonnet" else "version"]
        if tool == "helm":
            argv.append("--short")
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=_clean_env(None),
                                 stdin=subprocess.DEVNULL).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.rsplit(" ", 1)[-1] if out else "unknown"


@dataclass(frozen=True)
class Rendered:
    manifests: list[Manifest]
    by: str  # "kustomize v5.8.1", "helm v4.3.2", "jsonnet v0.22.0", "plain"


class Renderer:
    def __init__(self, tools: RenderTools | None = None, limits: RenderLimits | None = None) -> None:
        self.tools = tools or RenderTools()
        self.limits = limits or RenderLimits()

    def label(self, kind: Kind) -> str:
        return "plain" if kind == "plain" else f"{kind} {self.tools.version(kind)}"

    def render(self, kind: Kind, tree: Path, root: str, options: RenderOptions, *, release: str, namespace: str,
               paths: Sequence[str], dependency_login: Callable[[str], Credentials | None] | None = None) -> Rendered:
        """Render ``root`` of the repository exported at ``tree`` (``paths``: every file in it, repository
        paths). ManifestError for unreadable output, RenderError for everything else. ``dependency_login(url)``:
        the login a chart dependency's repository is sent (None: none)."""
        with tempfile.TemporaryDirectory(prefix="driftguard-render-") as scratch:
            work = Path(scratch)
            try:
                if kind == "kustomize":
                    manifests = self._kustomize(tree, root, options, paths, work)
                elif kind == "helm":
                    manifests = self._helm(tree, root, options, release=release, namespace=namespace, work=work,
                                           dependency_login=dependency_login)
                elif kind == "jsonnet":
                    manifests = self._jsonnet(tree, root, options, paths, work)
                else:
                    raise RenderError(f"no tool renders {kind!r}")
            except RenderError as e:  # paths as the repository names them, not where it was exported to
                text = str(e).replace(f"{tree.resolve()}/", "").replace(f"{tree}/", "").replace(str(tree), ".")
                raise RenderError(text.replace(f"{work}/", ""), transient=e.transient) from None
        if len(manifests) > self.limits.max_objects:
            raise RenderError(f"{kind} produced {len(manifests)} objects, more than {self.limits.max_objects} "
                              "(--max-objects)")
        check_unique(manifests)
        return Rendered(manifests, self.label(kind))

    def pull_chart(self, url: str, digest: str, *, registry_config: Mapping[str, object], ca: str = "",
                   plain_http: bool = False) -> bytes:
        """The chart archive at OCI ``url`` (``oci://host/repository``) with manifest ``digest``, pulled by the
        real ``helm pull`` by digest (so it is exactly what was resolved), bounded like a render; the login is
        in a registry configuration of this pull's own scratch directory, gone when it ends."""
        with tempfile.TemporaryDirectory(prefix="driftguard-pull-") as scratch:
            work = Path(scratch)
            config = work / "registry.json"
            config.write_text(json.dumps(registry_config))
            config.chmod(0o600)
            out = work / "out"
            out.mkdir()
            argv = ["pull", f"{url}@{digest}", "--destination", str(out), "--registry-config", str(config)]
            if ca:
                (work / "ca.crt").write_text(ca)
                argv += ["--ca-file", str(work / "ca.crt")]
            if plain_http:
                argv.append("--plain-http")
            env = {"HELM_CACHE_HOME": str(work / "helm-cache"), "HELM_CONFIG_HOME": str(work / "helm-config"),
                   "HELM_DATA_HOME": str(work / "helm-data"), "HELM_REGISTRY_CONFIG": str(config),
                   "HELM_REPOSITORY_CONFIG": str(work / "helm-repositories.yaml")}
            try:
                self._run("helm", argv, cwd=work, work=work, env=env)
            except RenderError as e:
                raise RenderError(str(e).replace(f"{work}/", ""), transient=e.transient) from None
            archives = sorted(out.glob("*.tgz"))
            if len(archives) != 1:
                raise RenderError(f"helm pull {url}@{digest} left {len(archives)} chart archives, not one")
            return archives[0].read_bytes()

    # ------------------------------------------------------------ the tools

    def _kustomize(self, tree: Path, root: str, options: RenderOptions, paths: Sequence[str],
                   work: Path) -> list[Manifest]:
        kustomizations = {p: (tree / p).read_bytes() for p in paths if Path(p).name in sources.KUSTOMIZATIONS}
        problem = sources.check_kustomizations(kustomizations)
        if problem:
            raise RenderError(f"kustomize: {problem}")
        target = tree / root if root else tree
        overlay = sources.kustomize_overlay(options.kustomize, os.path.relpath(target, tree / ".driftguard-overlay"))
        if overlay is not None:
            directory = tree / ".driftguard-overlay"
            for patch in overlay.get("patches", []):  # a patch file is inlined: the overlay's root holds no files
                if "path" in patch:
                    file = (directory / patch.pop("path")).resolve()
                    if not file.is_relative_to(tree.resolve()) or not file.is_file():
                        raise RenderError("kustomize: a patch path of spec.source.kustomize.patches is not a file in "
                                          "the repository")
                    patch["patch"] = file.read_text()
            directory.mkdir()
            (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
            target = directory
        out = self._run("kustomize", sources.kustomize_args(str(target)), cwd=tree, work=work)
        return self._parse(out, f"kustomize build {root or '.'}")

    def _helm(self, tree: Path, root: str, options: RenderOptions, *, release: str, namespace: str,
              work: Path, dependency_login: Callable[[str], Credentials | None] | None = None) -> list[Manifest]:
        chart = (tree / root) if root else tree
        helm = options.helm
        for path in (*helm.value_files, *(p for _, p in helm.file_parameters)):
            resolved = (chart / path).resolve()
            if not resolved.is_relative_to(tree.resolve()):
                raise RenderError(f"helm: {path!r} (spec.source.helm) leaves the repository")
        values_file = None
        if helm.values:
            values_file = str(work / "values.yaml")
            Path(values_file).write_text(helm.values)
        present = [p for p in helm.value_files if (chart / p).is_file()]
        env = {"HELM_CACHE_HOME": str(work / "helm-cache"), "HELM_CONFIG_HOME": str(work / "helm-config"),
               "HELM_DATA_HOME": str(work / "helm-data"), "HELM_REGISTRY_CONFIG": str(work / "helm-registry.json"),
               "HELM_REPOSITORY_CONFIG": str(work / "helm-repositories.yaml")}
        if self._missing_dependencies(tree, chart, root):
            extra, entries = _dependency_logins(chart, work, dependency_login) if dependency_login else ([], False)
            if entries:  # a repository with a login is an entry of repositories.yaml: its index fetched first
                self._run("helm", ["repo", "update"], cwd=chart, work=work, env=env)
            self._run("helm", ["dependency", "build", ".", *extra], cwd=chart, work=work, env=env)
        argv = sources.helm_args(release, ".", namespace, helm, values_file=values_file, present=present)
        out = self._run("helm", argv, cwd=chart, work=work, env=env)
        return self._parse(out, f"helm template {root or '.'}")

    @staticmethod
    def _missing_dependencies(tree: Path, chart: Path, root: str) -> bool:
        """Whether ``Chart.yaml`` declares dependencies not vendored in ``charts/`` (then ``helm dependency
        build`` fetches them from the repositories the chart itself declares — by URL; a ``file://`` one
        must stay inside the repository). RenderError for a dependency that names a repository alias (none
        is configured here) or leaves the repository."""
        try:
            declared = yaml.safe_load((chart / sources.CHART).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise RenderError(f"helm: {root or '.'}/{sources.CHART}: {e}") from None
        if not isinstance(declared, dict):
            raise RenderError(f"helm: {root or '.'}/{sources.CHART} is not a mapping")
        missing = False
        for dep in declared.get("dependencies") or []:
            if not isinstance(dep, dict):
                continue
            name, version, repository = str(dep.get("name", "")), str(dep.get("version", "")), str(
                dep.get("repository", ""))
            if repository.startswith("file://"):
                if not (chart / repository.removeprefix("file://")).resolve().is_relative_to(tree.resolve()):
                    raise RenderError(f"helm: dependency {name} ({repository}) leaves the repository")
                continue
            if (chart / "charts" / name).is_dir() or list((chart / "charts").glob(f"{name}-*.tgz")):
                continue
            if repository.startswith(("https://", "http://", "oci://")):
                missing = True
            elif repository:
                raise RenderError(f"helm: dependency {name} {version} names the repository {repository!r}, an alias "
                                  "no configuration here defines: use its URL in Chart.yaml")
        return missing

    def _jsonnet(self, tree: Path, root: str, options: RenderOptions, paths: Sequence[str],
                 work: Path) -> list[Manifest]:
        base = (tree / root) if root else tree
        chosen = sources.select([p for p in paths if not root or p.startswith(root + "/")], root, options.directory)
        libraries = [str(base), *(str((tree / lib).resolve()) for lib in options.directory.libs)]
        for lib in libraries[1:]:
            if not Path(lib).is_relative_to(tree.resolve()):
                raise RenderError("jsonnet: a library path (spec.source.directory.jsonnet.libs) leaves the repository")
        manifests: list[Manifest] = []
        for path in chosen.jsonnet:
            out = self._run("jsonnet", sources.jsonnet_args(str(tree / path), options.directory, libraries),
                            cwd=base, work=work)
            try:
                objects = sources.jsonnet_objects(json.loads(out), path)
            except (ValueError, RecursionError) as e:
                raise RenderError(f"jsonnet: {e}") from None
            for obj in objects:
                manifests += parse_documents(json.dumps(obj), path, self.limits.parse)
        for path in chosen.manifests:
            text = (tree / path).read_bytes().decode("utf-8-sig", "replace")
            manifests += parse_documents(text, path, self.limits.parse)
        return manifests

    # ------------------------------------------------------------ one bounded process

    def _run(self, tool: str, args: Sequence[str], *, cwd: Path, work: Path,
             env: Mapping[str, str] | None = None) -> str:
        argv = [self.tools.path(tool), *args]
        stdout, stderr = work / f"{tool}.out", work / f"{tool}.err"
        limits = self.limits
        with stdout.open("wb") as out, stderr.open("wb") as err:
            try:
                process = subprocess.Popen(
                    argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env={**_clean_env(work), **(env or {})}, start_new_session=True,
                    preexec_fn=lambda: _limit(limits.memory, limits.max_output),  # noqa: PLW1509 - no threads after fork
                )
            except OSError as e:
                raise RenderError(f"{tool} could not start: {e}") from None
            try:
                code = process.wait(timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise RenderError(f"{tool} did not finish within {limits.timeout:.0f}s (--render-timeout)",
                                  transient=True) from None
        said = stderr.read_text(errors="replace").strip()
        if code == -signal.SIGXFSZ or stdout.stat().st_size >= limits.max_output:
            raise RenderError(f"{tool} wrote more than {limits.max_output // MiB} MiB (--render-max-output)")
        if code < 0:
            killed = code in (-signal.SIGKILL, -signal.SIGABRT)
            reason = "out of memory (--render-memory)" if killed else f"signal {-code}"
            raise RenderError(f"{tool} was killed: {reason}" + (f": {said[-STDERR_SHOWN:]}" if said else ""))
        if code != 0:
            message = said[-STDERR_SHOWN:] or f"exit status {code}"
            if "out of memory" in said:
                message = f"out of memory (--render-memory): {said[:200]}"
            raise RenderError(f"{tool}: {message}")
        return stdout.read_text(errors="replace")

    def _parse(self, text: str, where: str) -> list[Manifest]:
        try:
            return parse_documents(text, where, self.limits.parse)
        except ManifestError:
            raise
        except (ValueError, RecursionError) as e:
            raise RenderError(f"{where}: unreadable output: {e}") from None


def _dependency_logins(chart: Path, work: Path, login_for: Callable[[str], Credentials | None]
                       ) -> tuple[list[str], bool]:
    """Write the logins ``login_for`` gives the chart's dependency repositories where ``helm dependency build``
    reads them — an OCI registry's in the registry configuration, a Helm repository's as an entry of
    repositories.yaml (helm sends it to that repository's URLs only) — and return the flags it needs (the
    login's CA), and whether there are repository entries (whose indexes ``helm repo update`` must fetch)."""
    declared = yaml.safe_load((chart / sources.CHART).read_text()) or {}
    auths: dict[str, dict[str, str]] = {}
    repositories: list[dict[str, str]] = []
    ca = ""
    for i, dep in enumerate(declared.get("dependencies") or []):
        url = str(dep.get("repository", "")) if isinstance(dep, dict) else ""
        login = login_for(url) if url.startswith(("https://", "oci://")) else None
        if login is None:
            continue
        ca = ca or login.ca
        if not login.token:
            continue
        if url.startswith("oci://"):
            host = url.removeprefix("oci://").split("/", 1)[0]
            auths[host] = ({"auth": base64.b64encode(f"{login.username}:{login.token}".encode()).decode()}
                           if login.username else {"registrytoken": login.token})
        elif login.username:
            repositories.append({"name": f"dependency-{i}", "url": url.rstrip("/"), "username": login.username,
                                 "password": login.token, **({"caFile": str(work / "dependency-ca.crt")}
                                                             if login.ca else {})})
    for path, content in ((work / "helm-registry.json", json.dumps({"auths": auths})),
                          (work / "helm-repositories.yaml", yaml.safe_dump({"apiVersion": "", "repositories":
                                                                            repositories}))):
        path.write_text(content)
        path.chmod(0o600)
    if ca:
        (work / "dependency-ca.crt").write_text(ca)
    return (["--ca-file", str(work / "dependency-ca.crt")] if ca else []), bool(repositories)


def _limit(memory: int, max_output: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_output, max_output))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _clean_env(work: Path | None) -> dict[str, str]:
    """Nothing of the reconciler's environment but PATH and a locale; HOME in the scratch directory."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "GOMEMLIMIT": "512MiB"}
    if work is not None:
        env.update({"HOME": str(work), "XDG_CACHE_HOME": str(work / "cache"), "XDG_CONFIG_HOME": str(work / "config"),
                    "TMPDIR": str(work)})
    return env
