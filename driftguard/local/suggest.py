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
import difflib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from driftguard.core import fields
from driftguard.core.contract import read_stamp
from driftguard.core.fields import ListKey
from driftguard.core.suggestion import KINDS, PLURALS, parse_set
from driftguard.kube import Kube, KubeError


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


def parse_intent(argv: Sequence[str]) -> Change:
    """A kubectl command line's intent: ``scale KIND/NAME --replicas=N``, ``label``/``annotate KIND/NAME k=v``."""
    words = list(argv)
    if words and words[0] == "kubectl":
        words = words[1:]
    namespace, rest = "default", []
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
    sets = []
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
    if not sets:
        raise SuggestError("the record changes no declared field: nothing to write in git")
    change = Change(str(record.get("api_version") or ""), kind, str(record.get("namespace") or ""), name, tuple(sets))
    return change, {k: str(record.get(k) or "") for k in ("repo", "commit", "path")}


def edit(text: str, change: Change, *, where: str) -> str:
    """``text`` (a manifest file) with ``change`` made to its document for the object, formatted as it was."""
    if "{{" in text:
        raise SuggestError(f"{where} is a template (it holds {{{{ … }}}}): the mapping from the live object to a line "
                           "in it is not clear; change the values that feed it by hand")
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
        target: Any = next((d for d in docs if isinstance(d, Mapping) and d.get("kind") == change.kind
                            and (d.get("metadata") or {}).get("name") == change.name), None)
        if target is None:
            raise SuggestError(f"{where} declares no {change.kind} {change.name}: the object is rendered from it "
                               "(Kustomize, Helm) and the mapping is not clear; change the overlay or values by hand")
        for path, value in change.sets:
            _set(target, path, value, where=f"{where}: {change.kind} {change.name}")
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
    parser.add_argument("-n", "--namespace", default=None, help="with --set: the object's namespace (default: default)")
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
            change = parse_intent(args.intent)
            source = _live_source(args, change)
        with tempfile.TemporaryDirectory(prefix="driftguard-suggest-") as scratch:
            repo = args.repo_dir or _clone(source["repo"], Path(scratch) / "repo")
            print(suggest(repo, change, source["path"], commit=args.commit, branch=args.branch), end="")
    except SuggestError as e:
        print(f"driftguard suggest: {e}", file=sys.stderr)
        return 2
    return 0


def suggest(repo: Path, change: Change, path: str, *, commit: bool = False, branch: str | None = None) -> str:
    """Edit ``path`` in the clone ``repo``; the unified diff (and, with ``commit``, the branch it is on)."""
    file = repo / path
    if not file.is_file():
        raise SuggestError(f"{path} does not exist in {repo}: is it a clone of the stamp's repository, at its commit?")
    before = file.read_text()
    after = edit(before, change, where=path)
    diff = unified(before, after, path)
    if not diff:
        return f"# {path} already declares that\n"
    file.write_text(after)
    if commit:
        name = branch or f"driftguard/suggest-{change.kind.lower()}-{change.name}"
        what = ", ".join(f"{fields.render_path(p)}={v}" for p, v in change.sets)
        _git(repo, "checkout", "-q", "-b", name)
        _git(repo, "add", "--", path)
        _git(repo, "commit", "-q", "-m", f"{change.kind} {change.namespace}/{change.name}: {what} (driftguard suggest)")
        diff += f"# committed on branch {name} ({_git(repo, 'rev-parse', '--short', 'HEAD')}); push it for review\n"
    return diff


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


def _live_source(args: argparse.Namespace, change: Change) -> dict[str, str]:
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
    return {"repo": stamp.source.repo, "commit": stamp.source.commit, "path": stamp.source.path}
