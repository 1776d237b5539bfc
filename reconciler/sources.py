"""Which renderer a source needs, with which arguments: Argo CD's source fields, decided without I/O.

An Application's path is rendered by exactly one of four renderers, chosen as Argo CD chooses: an
explicit ``source.kustomize``/``source.helm``/``source.directory`` field wins; otherwise a
``kustomization.yaml``/``.yml``/``Kustomization`` at the path means Kustomize, a ``Chart.yaml`` Helm,
and anything else a directory of plain manifests (with ``*.jsonnet`` files evaluated by Jsonnet).

Parsing the fields never raises: what is wrong becomes a problem naming the field (the Application is
not synced). ``options_key`` is the canonical form of every field that changes the output, part of the
render cache's key. The argument builders return argv tails for the real tools; values are passed as
separate argv entries (never through a shell).

``check_kustomizations`` refuses, before kustomize runs, what the load restrictor alone would not make
clear or would let through: remote resources (a URL: kustomize would fetch it over the network) and
``resources``/``components``/``bases`` that leave the repository — with the kustomization file and line.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import yaml

from reconciler import ociref

Kind = Literal["plain", "kustomize", "helm", "jsonnet"]
KUSTOMIZATIONS: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CHART: Final = "Chart.yaml"
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)|\?ref=|//", re.I)
_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class DirectoryOptions:
    recurse: bool = False
    include: str = ""  # a glob, or "{a,b}" alternatives, matched against the path relative to the source path
    exclude: str = ""
    tlas: tuple[tuple[str, str, bool], ...] = ()  # (name, value, code)
    ext_vars: tuple[tuple[str, str, bool], ...] = ()
    libs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KustomizeOptions:
    name_prefix: str = ""
    name_suffix: str = ""
    namespace: str = ""
    images: tuple[str, ...] = ()
    common_labels: tuple[tuple[str, str], ...] = ()
    common_annotations: tuple[tuple[str, str], ...] = ()
    patches: tuple[str, ...] = ()  # each a patch entry (``patch``, ``path``, ``target``) as canonical JSON
    components: tuple[str, ...] = ()  # paths relative to the source path
    replicas: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class HelmOptions:
    release_name: str = ""
    value_files: tuple[str, ...] = ()
    values: str = ""  # a YAML document (``values`` string, or ``valuesObject`` serialised)
    parameters: tuple[tuple[str, str, bool], ...] = ()  # (name, value, forceString)
    file_parameters: tuple[tuple[str, str], ...] = ()
    skip_crds: bool = False
    ignore_missing_value_files: bool = False


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What ``spec.source`` says about rendering (``explicit``: the kind a field named, or None)."""

    explicit: Kind | None = None
    directory: DirectoryOptions = field(default_factory=DirectoryOptions)
    kustomize: KustomizeOptions = field(default_factory=KustomizeOptions)
    helm: HelmOptions = field(default_factory=HelmOptions)
    key: str = ""  # canonical JSON of the fields: part of the render cache key
    chart: str = ""  # source.chart: the chart's name in the Helm repository at repoURL


def parse_options(source: Mapping[str, Any], problems: list[str]) -> RenderOptions:
    """``spec.source``'s rendering fields; problems name the field."""
    given = [k for k in ("directory", "kustomize", "helm") if source.get(k) is not None]
    if len(given) > 1:
        problems.append(f"spec.source: {' and '.join(given)} exclude each other (one renderer per source)")
    if source.get("plugin") is not None:
        problems.append("spec.source.plugin is not supported (config management plugins run arbitrary code)")
    if source.get("ref") is not None:
        problems.append("spec.source.ref belongs to a source of spec.sources (multi-source)")
    chart = str(source.get("chart") or "")
    if chart:
        url = str(source.get("repoURL") or "")
        if ociref.is_oci(url, chart):
            try:
                ociref.parse_reference(url, chart)
            except ValueError as e:
                problems.append(f"spec.source.chart: {e}")
        elif not url.startswith(("https://", "http://")):
            problems.append(f"spec.source.chart {chart!r}: repoURL {url!r} must be an http(s) Helm repository or an "
                            "OCI registry (oci://host/path)")
        if any(source.get(k) is not None for k in ("directory", "kustomize")) or source.get("path"):
            problems.append("spec.source.chart takes only helm options (no path, directory or kustomize)")
    explicit: Kind | None = "helm" if chart else None
    if given:
        explicit = "plain" if given[0] == "directory" else given[0]  # type: ignore[assignment]
    directory = _directory(_mapping(source, "directory", problems), problems)
    kustomize = _kustomize(_mapping(source, "kustomize", problems), problems)
    helm = _helm(_mapping(source, "helm", problems), problems)
    key = json.dumps({k: source.get(k) for k in ("directory", "kustomize", "helm", "chart")}, sort_keys=True,
                     default=str)
    return RenderOptions(explicit, directory, kustomize, helm, key, chart)


def detect(paths: Iterable[str], root: str, options: RenderOptions) -> Kind:
    """The renderer for the files at repository ``paths`` under ``root``."""
    names = {_relative(p, root) for p in paths}
    if options.explicit == "plain":
        return "jsonnet" if any(_jsonnet_file(n, options.directory) for n in names) else "plain"
    if options.explicit is not None:
        return options.explicit
    if any(k in names for k in KUSTOMIZATIONS):
        return "kustomize"
    if CHART in names:
        return "helm"
    return "jsonnet" if any(_jsonnet_file(n, options.directory) for n in names) else "plain"


@dataclass(frozen=True, slots=True)
class Selection:
    """A plain directory's files: what is rendered, and what is not and why (never silently)."""

    manifests: tuple[str, ...]
    jsonnet: tuple[str, ...]
    unrendered: tuple[str, ...]  # neither manifests nor a source type: named when the render is empty
    deeper: tuple[str, ...]  # manifests in subdirectories, not rendered without directory.recurse
    nested_kustomizations: tuple[str, ...]  # a kustomization below the path: never applied as plain YAML


def select(paths: Iterable[str], root: str, options: DirectoryOptions) -> Selection:
    manifests, jsonnet, unrendered, deeper, nested = [], [], [], [], []
    for path in sorted(paths):
        relative = _relative(path, root)
        parts = relative.split("/")
        if any(p.startswith(".") for p in parts):
            continue  # .github/, .gitignore...
        if parts[-1] in KUSTOMIZATIONS:  # at the path only with an explicit directory field: not a manifest
            if len(parts) > 1:
                nested.append(path)
            continue
        if not _wanted(relative, options):
            continue
        if len(parts) > 1 and not options.recurse:
            if parts[-1].endswith(MANIFEST_SUFFIXES):
                deeper.append(path)
            continue
        if parts[-1].endswith(MANIFEST_SUFFIXES):
            manifests.append(path)
        elif parts[-1].endswith(".jsonnet"):
            jsonnet.append(path)
        elif not parts[-1].endswith(".libsonnet"):
            unrendered.append(path)
    return Selection(tuple(manifests), tuple(jsonnet), tuple(unrendered), tuple(deeper), tuple(nested))


# ---------------------------------------------------------------- tool arguments

def kustomize_args(directory: str) -> list[str]:
    """``kustomize build``: files only from inside each kustomization's root, no plugins, no helm, no exec."""
    return ["build", directory, "--load-restrictor", "LoadRestrictionsRootOnly"]


def kustomize_overlay(options: KustomizeOptions, target: str) -> dict[str, Any] | None:
    """A kustomization over ``target`` (the source path, relative to the overlay's directory) applying
    ``spec.source.kustomize`` (None when it sets nothing), the way Argo CD's ``kustomize edit set …`` does
    without editing the user's files. Component and patch paths are relative to the source path."""
    overlay: dict[str, Any] = {}
    if options.components:
        overlay["components"] = [posixpath.normpath(posixpath.join(target, c)) for c in options.components]
    if options.patches:
        patches = [json.loads(p) for p in options.patches]
        for patch in patches:
            if "path" in patch:
                patch["path"] = posixpath.normpath(posixpath.join(target, patch["path"]))
        overlay["patches"] = patches
    if options.replicas:
        overlay["replicas"] = [{"name": name, "count": count} for name, count in options.replicas]
    if options.name_prefix:
        overlay["namePrefix"] = options.name_prefix
    if options.name_suffix:
        overlay["nameSuffix"] = options.name_suffix
    if options.namespace:
        overlay["namespace"] = options.namespace
    if options.images:
        overlay["images"] = [_image(i) for i in options.images]
    if options.common_labels:
        overlay["labels"] = [{"pairs": dict(options.common_labels), "includeSelectors": True}]
    if options.common_annotations:
        overlay["commonAnnotations"] = dict(options.common_annotations)
    if not overlay:
        return None
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [target],
            **overlay}


def helm_args(release: str, chart: str, namespace: str, options: HelmOptions, *, values_file: str | None,
              present: Iterable[str]) -> list[str]:
    """``helm template``: offline, hooks included (``helm.sh/hook`` objects become driftguard's hooks, mapped as
    Argo CD maps them: ``driftguard.core.phases``); value files relative to the chart (missing ones skipped
    only with ignoreMissingValueFiles, else ``helm`` reports them)."""
    args = ["template", options.release_name or release, chart]
    if namespace:
        args += ["--namespace", namespace]
    args += ["--skip-crds"] if options.skip_crds else ["--include-crds"]
    existing = set(present)
    for value_file in options.value_files:
        if options.ignore_missing_value_files and value_file not in existing:
            continue
        args += ["--values", value_file]
    if values_file:
        args += ["--values", values_file]
    for name, value, force in options.parameters:
        args += ["--set-string" if force else "--set", f"{name}={value}"]
    for name, path in options.file_parameters:
        args += ["--set-file", f"{name}={path}"]
    return args


def jsonnet_args(file: str, options: DirectoryOptions, library_paths: Iterable[str]) -> list[str]:
    args: list[str] = []
    for path in library_paths:
        args += ["--jpath", path]
    for name, value, code in options.tlas:
        args += ["--tla-code" if code else "--tla-str", f"{name}={value}"]
    for name, value, code in options.ext_vars:
        args += ["--ext-code" if code else "--ext-str", f"{name}={value}"]
    return [*args, file]


def jsonnet_objects(value: object, where: str) -> list[dict[str, Any]]:
    """Jsonnet's output as objects: one object, a list of them, or a ``List``'s items (nested lists flattened)."""
    if isinstance(value, list):
        return [o for item in value for o in jsonnet_objects(item, where)]
    if isinstance(value, dict):
        if value.get("kind") == "List" and isinstance(value.get("items"), list):
            return jsonnet_objects(value["items"], where)
        if "kind" in value or "apiVersion" in value:
            return [value]
        raise ValueError(f"{where}: evaluates to an object that is no Kubernetes object (no kind or apiVersion); "
                         "return an object, a list of objects, or a List")
    raise ValueError(f"{where}: evaluates to {type(value).__name__}, not a Kubernetes object or a list of them")


# ---------------------------------------------------------------- kustomizations, before kustomize runs

def check_kustomizations(files: Mapping[str, bytes]) -> str:
    """The first reason not to run kustomize on this repository ("" if none): a remote resource, or a
    reference leaving the repository, in any kustomization file (named with its line)."""
    for path in sorted(files):
        if posixpath.basename(path) not in KUSTOMIZATIONS:
            continue
        text = files[path].decode("utf-8", "replace")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            return f"{path}: not YAML ({e})"
        if not isinstance(data, dict):
            continue
        base = posixpath.dirname(path)
        for key in ("resources", "components", "bases", "crds"):
            for entry in data.get(key) or []:
                if not isinstance(entry, str):
                    continue
                line = _line_of(text, entry)
                if _REMOTE.search(entry):
                    return (f"{path}:{line}: {key} entry {entry!r} is remote; driftguard renders offline — vendor it "
                            "into the repository")
                target = posixpath.normpath(posixpath.join(base, entry))
                if target == ".." or target.startswith("../") or posixpath.isabs(entry):
                    return f"{path}:{line}: {key} entry {entry!r} leaves the repository"
    return ""


# ---------------------------------------------------------------- parsing the fields

def _mapping(source: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    value = source.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"spec.source.{key} must be an object")
        return {}
    return value


def _directory(d: Mapping[str, Any], problems: list[str]) -> DirectoryOptions:
    jsonnet = d.get("jsonnet") or {}
    if not isinstance(jsonnet, Mapping):
        problems.append("spec.source.directory.jsonnet must be an object")
        jsonnet = {}
    return DirectoryOptions(
        recurse=bool(d.get("recurse", False)), include=str(d.get("include") or ""), exclude=str(d.get("exclude") or ""),
        tlas=_variables(jsonnet.get("tlas"), "spec.source.directory.jsonnet.tlas", problems),
        ext_vars=_variables(jsonnet.get("extVars"), "spec.source.directory.jsonnet.extVars", problems),
        libs=tuple(_strings(jsonnet.get("libs"), "spec.source.directory.jsonnet.libs", problems)),
    )


def _kustomize(k: Mapping[str, Any], problems: list[str]) -> KustomizeOptions:
    if k.get("version"):
        problems.append("spec.source.kustomize.version is not supported: driftguard runs the kustomize it was "
                        "given (--kustomize)")
    patches: list[str] = []
    for i, patch in enumerate(k.get("patches") or []):
        if not isinstance(patch, Mapping) or not (patch.get("patch") or patch.get("path")):
            problems.append(f"spec.source.kustomize.patches[{i}] needs a patch or a path")
            continue
        if patch.get("path") and (str(patch["path"]).startswith("/") or "://" in str(patch["path"])):
            problems.append(f"spec.source.kustomize.patches[{i}].path must be relative to spec.source.path")
            continue
        patches.append(json.dumps(dict(patch), sort_keys=True))
    replicas: list[tuple[str, int]] = []
    for i, entry in enumerate(k.get("replicas") or []):
        count = entry.get("count") if isinstance(entry, Mapping) else None
        if not isinstance(entry, Mapping) or not entry.get("name") or not isinstance(count, int) or count < 0:
            problems.append(f"spec.source.kustomize.replicas[{i}] needs a name and a count (a whole number ≥ 0)")
            continue
        replicas.append((str(entry["name"]), count))
    components = _strings(k.get("components"), "spec.source.kustomize.components", problems)
    for component in components:
        if component.startswith("/") or "://" in component:
            problems.append(f"spec.source.kustomize.components: {component!r} must be relative to spec.source.path")
    return KustomizeOptions(
        patches=tuple(patches), components=tuple(components), replicas=tuple(replicas),
        name_prefix=str(k.get("namePrefix") or ""), name_suffix=str(k.get("nameSuffix") or ""),
        namespace=str(k.get("namespace") or ""),
        images=tuple(_strings(k.get("images"), "spec.source.kustomize.images", problems)),
        common_labels=_pairs(k.get("commonLabels"), "spec.source.kustomize.commonLabels", problems),
        common_annotations=_pairs(k.get("commonAnnotations"), "spec.source.kustomize.commonAnnotations", problems),
    )


def _helm(h: Mapping[str, Any], problems: list[str]) -> HelmOptions:
    release = str(h.get("releaseName") or "")
    if release and not _RELEASE.match(release):
        problems.append(f"spec.source.helm.releaseName {release!r} is not a valid release name (lowercase "
                        "letters, digits and '-', at most 53 characters)")
    if h.get("values") and h.get("valuesObject"):
        problems.append("spec.source.helm: values and valuesObject exclude each other")
    values = h.get("values") or ""
    if h.get("valuesObject") is not None:
        if not isinstance(h["valuesObject"], Mapping):
            problems.append("spec.source.helm.valuesObject must be an object")
        else:
            values = yaml.safe_dump(dict(h["valuesObject"]), sort_keys=True)
    if not isinstance(values, str):
        problems.append("spec.source.helm.values must be a string (a YAML document); use valuesObject for an object")
        values = ""
    parameters: list[tuple[str, str, bool]] = []
    for i, p in enumerate(h.get("parameters") or []):
        if not isinstance(p, Mapping) or not p.get("name"):
            problems.append(f"spec.source.helm.parameters[{i}] needs a name")
            continue
        parameters.append((str(p["name"]), str(p.get("value", "")), bool(p.get("forceString", False))))
    files: list[tuple[str, str]] = []
    for i, p in enumerate(h.get("fileParameters") or []):
        if not isinstance(p, Mapping) or not p.get("name") or not p.get("path"):
            problems.append(f"spec.source.helm.fileParameters[{i}] needs a name and a path")
            continue
        files.append((str(p["name"]), str(p["path"])))
    value_files = _strings(h.get("valueFiles"), "spec.source.helm.valueFiles", problems)
    for path in [*value_files, *(f for _, f in files)]:
        if path.startswith("/") or "://" in path:
            problems.append(f"spec.source.helm: {path!r} must be a path inside the repository (relative to the chart)")
    return HelmOptions(release, tuple(value_files), values, tuple(parameters), tuple(files),
                       bool(h.get("skipCrds", False)), bool(h.get("ignoreMissingValueFiles", False)))


def _variables(value: object, where: str, problems: list[str]) -> tuple[tuple[str, str, bool], ...]:
    out = []
    items: list[object] = value if isinstance(value, list) else []
    if value is not None and not isinstance(value, list):
        problems.append(f"{where} must be a list")
    for i, v in enumerate(items):
        if not isinstance(v, Mapping) or not v.get("name"):
            problems.append(f"{where}[{i}] needs a name")
            continue
        out.append((str(v["name"]), str(v.get("value", "")), bool(v.get("code", False))))
    return tuple(out)


def _strings(value: object, where: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of strings")
        return []
    return list(value)


def _pairs(value: object, where: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append(f"{where} must be an object of strings")
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _image(text: str) -> dict[str, str]:
    """Argo CD's image override forms: ``name=new:tag``, ``name:tag``, ``name@digest``."""
    name, _, new = text.partition("=")
    target = new or name
    image: dict[str, str] = {"name": _image_name(name)}
    if "@" in target:
        new_name, digest = target.split("@", 1)
        image["digest"] = digest
    else:
        new_name, tag = _split_tag(target)
        if tag:
            image["newTag"] = tag
    if new and _image_name(new_name) != image["name"]:
        image["newName"] = _image_name(new_name)
    return image


def _image_name(text: str) -> str:
    return _split_tag(text.split("@", 1)[0])[0]


def _split_tag(text: str) -> tuple[str, str]:
    slash = text.rfind("/")
    colon = text.rfind(":")
    return (text[:colon], text[colon + 1:]) if colon > slash else (text, "")


def _relative(path: str, root: str) -> str:
    return path[len(root) + 1:] if root and path.startswith(root + "/") else path


def _jsonnet_file(relative: str, options: DirectoryOptions) -> bool:
    parts = relative.split("/")
    return relative.endswith(".jsonnet") and (options.recurse or len(parts) == 1) and _wanted(relative, options)


def _wanted(relative: str, options: DirectoryOptions) -> bool:
    if options.include and not _glob(relative, options.include):
        return False
    return not (options.exclude and _glob(relative, options.exclude))


def _glob(relative: str, pattern: str) -> bool:
    """Argo CD's include/exclude: a glob, or ``{a,b}`` alternatives; matched against the relative path and
    its file name."""
    alternatives = pattern[1:-1].split(",") if pattern.startswith("{") and pattern.endswith("}") else [pattern]
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p.strip()) or fnmatch.fnmatchcase(name, p.strip()) for p in alternatives)


def _line_of(text: str, entry: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if entry in line:
            return number
    return 1
