"""``driftguard suggest``: turn a denied change into the git change that would make it legitimate.

From the same kubectl intent (``driftguard suggest -- scale deployment/my-service -n production --replicas=9``,
the object's stamp read from the live object), from fields set by path (``--set
'spec.template.spec.containers[name=web].image=nginx:1.27' deployment/web -n prod``: the form a denial's last line
gives for changes no kubectl verb says, ``driftguard.core.suggestion``) or from an audit record (``--record``: a
JSON line, a file, or ``-``), find the manifest file the stamp names in a local clone (``--repo-dir``, else the stamp's
repository cloned into a temporary directory), edit the object's document there with a round-trip YAML parser (comments,
key order, quoting and flow style kept), print the unified diff, and with ``--commit`` commit it on a new
branch (never pushed). A file that is a template, a kustomization's output or a chart's is said plainly to have
no clear mapping.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from driftguard.core import fields
from driftguard.core.contract import read_stamp
from driftguard.core.fields import MISSING, ListKey
from driftguard.core.suggestion import KINDS, PLURALS, parse_set
from driftguard.kube import Kube, KubeError

KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class SuggestError(Exception):
    """What cannot be turned into a git change, and why (the message names the object or file)."""


@dataclass(frozen=True, slots=True)
class Change:
    """Set ``path`` (keys; a keyed list's element by its ``ListKey``) of object ``kind``/``name`` to ``value``."""

    api_version: str
    kind: str
    namespace: str
    name: str
    sets: tuple[tuple[fields.Path, Any], ...]
    declared: tuple[Any, ...] = ()  # git's value of each field, where known (MISSING: not known)

    def was(self, i: int) -> Any:
        return self.declared[i] if i < len(self.declared) else MISSING


def parse_sets(texts: Sequence[str], target: Sequence[str], namespace: str | None) -> Change:
    """``--set PATH=VALUE``… of the one object ``target`` names (``KIND/NAME``) in ``namespace``."""
    if len(target) != 1:
        raise SuggestError(f"--set changes one object: name it once as KIND/NAME (got {' '.join(target) or 'none'})")
    api_version, kind, name = _target(target[0])
    sets = []
    for text in texts:
        try:
            sets.append(parse_set(text))
        except ValueError as e:
            raise SuggestError(str(e)) from None
    return Change(api_version, kind, namespace or "default", name, tuple(sets))


def _target(text: str) -> tuple[str, str, str]:
    kind_text, _, name = text.partition("/")
    if not name or kind_text.lower() not in KINDS:
        raise SuggestError(f"{text!r}: name the object as KIND/NAME (one of {', '.join(sorted(KINDS))})")
    api_version, kind = KINDS[kind_text.lower()]
    return api_version, kind, name


def parse_intent(argv: Sequence[str], namespace: str | None = None) -> Change:
    """A kubectl command line's intent: ``scale KIND/NAME --replicas=N``, ``label``/``annotate KIND/NAME k=v``
    (in ``namespace`` unless the line names one)."""
    words = list(argv)
    if words and words[0] == "kubectl":
        words = words[1:]
    namespace, rest = namespace or "default", []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-n", "--namespace") and i + 1 < len(words):
            namespace, i = words[i + 1], i + 2
            continue
        if word.startswith("--namespace="):
            namespace = word.split("=", 1)[1]
        else:
            rest.append(word)
        i += 1
    if len(rest) < 2 or rest[0] not in ("scale", "label", "annotate"):
        raise SuggestError(f"`{' '.join(argv)}`: suggest understands kubectl scale, label and annotate "
                           "(KIND/NAME and their arguments); change other fields in git by hand")
    verb, target, args = rest[0], rest[1], rest[2:]
    api_version, kind, name = _target(target)
    sets: list[tuple[fields.Path, Any]] = []
    if verb == "scale":
        replicas = [a.split("=", 1)[1] for a in args if a.startswith("--replicas=")]
        if len(replicas) != 1 or not replicas[0].isdigit():
            raise SuggestError("kubectl scale needs --replicas=N")
        sets.append((("spec", "replicas"), int(replicas[0])))
    else:
        section = "labels" if verb == "label" else "annotations"
        for arg in args:
            if arg.startswith("-") or "=" not in arg:
                raise SuggestError(f"kubectl {verb}: {arg!r} is not key=value (removing with key- is not supported)")
            key, _, value = arg.partition("=")
            sets.append((("metadata", section, key), value))
    return Change(api_version, kind, namespace, name, tuple(sets))


def parse_record(record: Mapping[str, Any]) -> tuple[Change, dict[str, str]]:
    """An audit record's change (its fields' requested values) and its stamp (repo, commit, path)."""
    kind, name = str(record.get("kind") or ""), str(record.get("name") or "")
    if not kind or not name or not record.get("path"):
        raise SuggestError("the record names no object and manifest (kind, name, path): it is not a denial of a "
                           "change to a managed object")
    sets, declared = [], []
    for item in record.get("fields") or []:
        field, requested = str(item.get("field", "")), str(item.get("requested", ""))
        if requested in ("<absent>", "<redacted>") or requested.startswith("<sha256:"):
            raise SuggestError(f"{field}: the record holds no value to write ({requested}); edit it in git by hand")
        if len(requested) >= 80 and requested.endswith("…"):  # fields.render_value's limit: the value was cut
            raise SuggestError(f"{field}: the record holds the value cut short; edit it in git by hand")
        try:
            path, rest = fields.parse_path(field)
        except ValueError as e:
            raise SuggestError(f"the record's field {e}") from None
        if rest:
            raise SuggestError(f"the record's field {field!r} is not a field path")
        sets.append((path, fields.parse_scalar(requested)))
        was = str(item.get("declared", ""))
        declared.append(MISSING if was.startswith("<") or was.endswith("…") else fields.parse_scalar(was))
    if not sets:
        raise SuggestError("the record changes no declared field: nothing to write in git")
    change = Change(str(record.get("api_version") or ""), kind, str(record.get("namespace") or ""), name, tuple(sets),
                    tuple(declared))
    return change, {k: str(record.get(k) or "") for k in ("repo", "commit", "path")}


def edit(text: str, change: Change, *, where: str) -> str:
    """``text`` (a manifest file) with ``change`` made to its document for the object, formatted as it was."""
    if "{{" in text:
        raise SuggestError(f"{where} is a template (it holds {{{{ … }}}}): the mapping from the live object to a line "
                           "in it is not clear; change the values that feed it by hand")
    def made(docs: list[Any]) -> None:
        target: Any = next((d for d in docs if isinstance(d, Mapping) and d.get("kind") == change.kind
                            and (d.get("metadata") or {}).get("name") == change.name), None)
        if target is None:
            raise SuggestError(f"{where} declares no {change.kind} {change.name}: the object is rendered from it "
                               "(Kustomize, Helm) and the mapping is not clear; change the overlay or values by hand")
        for path, value in change.sets:
            _set(target, path, value, where=f"{where}: {change.kind} {change.name}")

    return round_trip(text, made, where=where)


def round_trip(text: str, mutate: Callable[[list[Any]], None], *, where: str) -> str:
    """``text`` (YAML documents) changed by ``mutate`` and written back as it was formatted: comments, key order,
    quoting and flow style kept, in the indentation that changes fewest lines."""
    best = None
    for indent in ((2, 2, 0), (2, 4, 2)):
        parser = YAML()
        parser.preserve_quotes = True
        parser.width = 4096
        parser.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
        try:
            docs = list(parser.load_all(text))
        except YAMLError as e:
            raise SuggestError(f"{where} is not YAML: {e}") from e
        mutate(docs)
        out = io.StringIO()
        parser.dump_all(docs, out)
        result = out.getvalue()
        if best is None or _changed_lines(text, result) < _changed_lines(text, best):
            best = result
    assert best is not None
    return best


def _set(node: Any, path: fields.Path, value: Any, *, where: str) -> None:
    """``path`` = ``value`` in a parsed document: maps made where missing; a list element must be there, once."""
    for i, segment in enumerate(path):
        last = i == len(path) - 1
        if isinstance(segment, ListKey):
            found = [e for e in node if segment.matches(e)] if isinstance(node, list) else []
            if len(found) != 1 or last:
                shown = fields.render_path(path[:i + 1])
                raise SuggestError(f"{where} has {len(found)} {shown} (a list element is changed only where the file "
                                   "declares it exactly once); edit it by hand")
            node = found[0]
        elif not isinstance(node, MutableMapping):
            raise SuggestError(f"{where}: {fields.render_path(path[:i])} is not a map in the file; edit it by hand")
        elif last:
            node[segment] = value
        else:
            if node.get(segment) is None:
                node[segment] = {}
            node = node[segment]


def _changed_lines(a: str, b: str) -> int:
    return sum(1 for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---")))


def unified(before: str, after: str, path: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


# ---------------------------------------------------------------- the command

def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "suggest", help="turn a denied change into the git change that makes it legitimate",
        description="Edit the manifest named in the object's stamp (round-trip: comments and formatting kept) and "
                    "print the diff; --commit commits it on a new branch (never pushed). Exit 0: a diff; 2: no clear "
                    "mapping, or an error.")
    parser.add_argument("intent", nargs="*",
                        help="after --: the kubectl command that was denied; with --set: KIND/NAME")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="set a field (spec.template.spec.containers[name=web].image=nginx:1.27; VALUE is JSON "
                             "when it parses as JSON, else the string), as a denial's last line writes it")
    parser.add_argument("-n", "--namespace", default=None,
                        help="the object's namespace (default: default; a kubectl intent's -n wins)")
    parser.add_argument("--record", default=None, help="an audit record: a JSON line, a file holding one, or -")
    parser.add_argument("--repo-dir", type=Path, default=None, help="a local clone (default: clone the stamp's repo)")
    parser.add_argument("--commit", action="store_true", help="commit the change on a new branch (never pushed)")
    parser.add_argument("--branch", default=None, help="the branch name (default driftguard/suggest-<kind>-<name>)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    parser.add_argument("--context", default=None)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.record:
            change, source = parse_record(_read_record(args.record))
        elif args.set:
            change = parse_sets(args.set, args.intent, args.namespace)
            source = _live_source(args, change)
        else:
            change = parse_intent(args.intent, args.namespace)
            source = _live_source(args, change)
        if not args.record:
            change = dataclasses.replace(change, declared=tuple(source.pop("declared")))
        with tempfile.TemporaryDirectory(prefix="driftguard-suggest-") as scratch:
            repo = args.repo_dir or _clone(source["repo"], Path(scratch) / "repo")
            print(suggest(repo, change, source["path"], commit=args.commit, branch=args.branch), end="")
    except SuggestError as e:
        print(f"driftguard suggest: {e}", file=sys.stderr)
        return 2
    return 0


def suggest(repo: Path, change: Change, path: str, *, commit: bool = False, branch: str | None = None) -> str:
    """Edit the file that declares ``change`` in the clone ``repo`` — ``path`` (the stamp's) itself, or for a
    rendered object the overlay or values file (``propose``); the unified diff (and, with ``commit``, the branch)."""
    proposal = propose(repo, change, path)
    diff = unified(proposal.before, proposal.after, proposal.file)
    if not diff:
        return f"# {proposal.file} already declares that\n"
    (repo / proposal.file).write_text(proposal.after)
    out = "".join(f"# {line}\n" for line in proposal.note.splitlines()) + diff
    if commit:
        name = branch or f"driftguard/suggest-{change.kind.lower()}-{change.name}"
        what = ", ".join(f"{fields.render_path(p)}={v}" for p, v in change.sets)
        _git(repo, "checkout", "-q", "-b", name)
        _git(repo, "add", "--", proposal.file)
        _git(repo, "commit", "-q", "-m", f"{change.kind} {change.namespace}/{change.name}: {what} (driftguard suggest)")
        out += f"# committed on branch {name} ({_git(repo, 'rev-parse', '--short', 'HEAD')}); push it for review\n"
    return out


# ---------------------------------------------------------------- where a rendered object's field is set

@dataclass(frozen=True, slots=True)
class Proposal:
    """The edit of one file of the repository (``file``: its repository path) and why that file."""

    file: str
    before: str
    after: str
    note: str = ""


def propose(repo: Path, change: Change, path: str) -> Proposal:
    """The edit for ``change`` of the object the stamp's ``path`` names: the manifest file itself, a Kustomize
    overlay's entry or patch (``kustomize build DIR``), a chart's values key (``helm template DIR``); SuggestError
    saying so plainly when where the value comes from is not clear."""
    if path.startswith("kustomize build "):
        return kustomize(repo, path.removeprefix("kustomize build "), change)
    if path.startswith("helm template "):
        return helm(repo, path.removeprefix("helm template "), change)
    if path.endswith((".jsonnet", ".libsonnet")):
        raise SuggestError(f"{path}: the object is jsonnet's output, and which line of it makes the field is not "
                           "clear; change it by hand")
    return Proposal(path, before := _read(repo, path), edit(before, change, where=path))


def _read(repo: Path, path: str) -> str:
    file = repo / path
    if not file.is_file():
        raise SuggestError(f"{path} does not exist in {repo}: is it a clone of the stamp's repository, at its commit?")
    return file.read_text()


def _one_field(change: Change, source: str) -> tuple[fields.Path, Any, Any, str]:
    if len(change.sets) != 1:
        raise SuggestError(f"{source}: a rendered object's fields are proposed one at a time (this change sets "
                           f"{len(change.sets)}); run suggest once per field")
    (path, value), was = change.sets[0], change.was(0)
    return path, value, was, f"{fields.render_path(path)} of {change.kind} {change.name}"


def kustomize(repo: Path, root: str, change: Change) -> Proposal:
    """A Kustomize overlay's ``replicas:`` entry for the object, its ``images:`` entry for the image, or a patch
    file of the overlay that already sets the field."""
    directory = root.strip("/") or "."
    kfile = next((f"{directory}/{n}" for n in KUSTOMIZATIONS if (repo / directory / n).is_file()), None)
    if kfile is None:
        raise SuggestError(f"{directory} has no kustomization.yaml in {repo}: is it a clone of the stamp's repository?")
    kfile = kfile.removeprefix("./")
    path, value, was, what = _one_field(change, f"the Kustomize overlay {directory}")
    text = _read(repo, kfile)
    overlay = _safe(text, kfile)
    if not isinstance(overlay, Mapping):
        raise SuggestError(f"{kfile} is not a kustomization (a map)")
    if path == ("spec", "replicas") and isinstance(value, int):
        entries = [e for e in overlay.get("replicas") or [] if isinstance(e, Mapping) and e.get("name") == change.name]
        if len(entries) == 1:
            def count(docs: list[Any]) -> None:
                next(e for e in docs[0]["replicas"] if e.get("name") == change.name)["count"] = value
            return Proposal(kfile, text, round_trip(text, count, where=kfile),
                            f"{what}: the replicas: entry for {change.name} in {kfile}")
    if path[-1:] == ("image",) and len(path) > 1 and isinstance(path[-2], ListKey) and isinstance(value, str):
        proposal = _kustomize_image(kfile, text, overlay, value, was, what)
        if proposal is not None:
            return proposal
    for file, target in _patch_files(overlay, directory):
        proposal = _patch(repo, file, target, change, path, value, what)
        if proposal is not None:
            return proposal
    raise SuggestError(
        f"{what} is rendered by Kustomize from {directory}, and neither a replicas:/images: entry of {kfile} nor a "
        "patch file of the overlay sets it: where the value comes from (a base, a generator, the Application's "
        f"spec.source.kustomize) is not clear. Add a patch to {kfile} by hand")


def _kustomize_image(kfile: str, text: str, overlay: Mapping[str, Any], value: str, was: Any,  # noqa: PLR0917
                     what: str) -> Proposal | None:
    """The ``images:`` entry whose image (``newName`` or ``name``) is the requested one's or git's, once."""
    new_name, new_tag, new_digest = _split_image(value)
    names = {new_name} | ({_split_image(was)[0]} if isinstance(was, str) else set())
    entries = [i for i, e in enumerate(overlay.get("images") or [])
               if isinstance(e, Mapping) and (e.get("newName") or e.get("name")) in names]
    if len(entries) != 1:
        return None

    def retag(docs: list[Any]) -> None:
        entry = docs[0]["images"][entries[0]]
        if (entry.get("newName") or entry.get("name")) != new_name:
            entry["newName"] = new_name
        for key, new in (("newTag", new_tag), ("digest", new_digest)):
            if new:
                entry[key] = new
            elif key in entry:
                del entry[key]

    return Proposal(kfile, text, round_trip(text, retag, where=kfile),
                    f"{what}: the images: entry for {new_name} in {kfile} (it sets every container using that image)")


def _split_image(image: str) -> tuple[str, str, str]:
    """``registry:5000/web:1.4@sha256:…`` → (name, tag, digest)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest


def _patch_files(overlay: Mapping[str, Any], directory: str) -> list[tuple[str, Mapping[str, Any] | None]]:
    """The overlay's patch files (repository paths) with the target each names (None: the patch names it)."""
    out: list[tuple[str, Mapping[str, Any] | None]] = []
    for entry in [*(overlay.get("patches") or []), *(overlay.get("patchesJson6902") or [])]:
        if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
            target = entry.get("target")
            out.append((entry["path"], target if isinstance(target, Mapping) else None))
    out += [(f, None) for f in overlay.get("patchesStrategicMerge") or [] if isinstance(f, str) and "\n" not in f]
    return [(os.path.normpath(f"{directory}/{f}"), target) for f, target in out]


def _patch(repo: Path, file: str, target: Mapping[str, Any] | None, change: Change,  # noqa: PLR0917
           path: fields.Path, value: Any, what: str) -> Proposal | None:
    """The edit of patch ``file`` when it already sets ``path`` of the object (strategic merge, or a JSON 6902
    add/replace of exactly that pointer)."""
    if not (repo / file).is_file():
        return None
    text = (repo / file).read_text()
    docs = _safe_all(text, file)
    if target is not None and (target.get("kind") not in (None, change.kind)
                               or target.get("name") not in (None, change.name)):
        return None
    note = f"{what}: the patch {file} sets it"
    if len(docs) == 1 and isinstance(docs[0], list):
        if any(isinstance(s, ListKey) for s in path) or target is None:
            return None
        pointer = "/" + "/".join(str(s).replace("~", "~0").replace("/", "~1") for s in path)
        ops = [i for i, op in enumerate(docs[0]) if isinstance(op, Mapping) and op.get("path") == pointer
               and op.get("op") in ("add", "replace")]
        if len(ops) != 1:
            return None

        def operate(parsed: list[Any]) -> None:
            parsed[0][ops[0]]["value"] = value
        return Proposal(file, text, round_trip(text, operate, where=file), note)
    for i, doc in enumerate(docs):
        named = isinstance(doc, Mapping) and (target is not None or (
            doc.get("kind") == change.kind and (doc.get("metadata") or {}).get("name") == change.name))
        if named and fields.lookup(doc, path) is not fields.MISSING:
            def assign(parsed: list[Any], index: int = i) -> None:
                _set(parsed[index], path, value, where=file)
            return Proposal(file, text, round_trip(text, assign, where=file), note)
    return None


def helm(repo: Path, chart: str, change: Change) -> Proposal:
    """The chart's values key whose value is git's rendered value and appears once (for an image, its tag's key
    when only the tag changes)."""
    directory = chart.strip("/") or "."
    file = os.path.normpath(f"{directory}/values.yaml")
    _, value, was, what = _one_field(change, f"the chart {directory}")
    if was is MISSING:
        raise SuggestError(f"{what}: git's rendered value is not known, so which values key makes it is not clear")
    if not (repo / file).is_file():
        raise SuggestError(f"{file} does not exist in {repo}: a chart from a chart repository (spec.source.chart) has "
                           "no values in git — set the value in the Application's spec.source.helm — else pass a clone "
                           "of the stamp's repository")
    text = _read(repo, file)
    leaves = list(_scalars(_safe(text, file)))
    found = [keys for keys, v in leaves if fields.scalar_equal(v, was)]
    why = f"its value is the rendered {fields.render_value(was)}"
    if len(found) != 1 and isinstance(value, str) and isinstance(was, str):
        old, new = _split_image(was), _split_image(value)
        if old[0] == new[0] and old[1] and new[1] and not new[2]:
            found = [keys for keys, v in leaves if str(v) == old[1] and isinstance(v, str | int | float)]
            value, why = new[1], f"its value is the rendered image's tag {old[1]}"
    if len(found) != 1:
        held = ", ".join(".".join(k) for k in found[:5]) or "none"
        raise SuggestError(f"{what} is rendered by Helm from {directory}, and {len(found)} keys of {file} hold its "
                           f"value {fields.render_value(was)} ({held}): which one makes it is not clear; change the "
                           "values (or the Application's spec.source.helm) by hand")
    keys, new_value = found[0], value

    def assign(docs: list[Any]) -> None:
        node = docs[0]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = new_value

    return Proposal(file, text, round_trip(text, assign, where=file),
                    f"{what}: the values key {'.'.join(keys)} of {file} ({why}, and only it);\n"
                    "unless the Application's spec.source.helm values or parameters set it")


def _scalars(node: Any, keys: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _scalars(child, (*keys, str(key)))
    elif not isinstance(node, list) and keys:
        yield keys, node


def _safe(text: str, where: str) -> Any:
    docs = _safe_all(text, where)
    return docs[0] if docs else None


def _safe_all(text: str, where: str) -> list[Any]:
    try:
        return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]
    except YAMLError as e:
        raise SuggestError(f"{where} is not YAML: {e}") from e


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SuggestError(f"git {args[0]} in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def _clone(url: str, dest: Path) -> Path:
    done = subprocess.run(["git", "clone", "-q", "--", url, str(dest)], capture_output=True, text=True, check=False,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if done.returncode != 0:
        raise SuggestError(f"cannot clone {url}: {done.stderr.strip()}; pass a clone with --repo-dir")
    return dest


def _read_record(text: str) -> dict[str, Any]:
    raw = sys.stdin.read() if text == "-" else (Path(text).read_text() if Path(text).is_file() else text)
    line = next((s for s in raw.splitlines() if s.strip()), "")
    try:
        data = json.loads(line)
    except ValueError as e:
        raise SuggestError(f"--record is not an audit record (a JSON line): {e}") from e
    record = data.get("audit", data) if isinstance(data, dict) else None
    if not isinstance(record, dict):
        raise SuggestError("--record is not an audit record (a JSON object)")
    return record


def _live_source(args: argparse.Namespace, change: Change) -> dict[str, Any]:
    group_version = change.api_version
    base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    try:
        with Kube(args.kubeconfig, context=args.context) as kube:
            live = kube.request("GET", f"{base}/namespaces/{change.namespace}/{PLURALS[change.kind]}/{change.name}")
    except KubeError as e:
        raise SuggestError(f"cannot read {change.kind} {change.namespace}/{change.name}: {e}") from e
    stamp = read_stamp(live)
    if stamp is None:
        raise SuggestError(f"{change.kind} {change.namespace}/{change.name} is not managed by driftguard: nothing in "
                           "git declares it")
    return {"repo": stamp.source.repo, "commit": stamp.source.commit, "path": stamp.source.path,
            "declared": [fields.lookup(stamp.declared, path) for path, _ in change.sets]}
