"""The ``driftguard suggest`` command line a denial or warning ends with, and the ``--set`` form it reads.

The webhook writes the line, ``driftguard suggest`` reads it, so both live here (pure). A request becomes a
command only when suggest can really make the git change: the object is of a kind suggest knows, its stamp
names a plain YAML file (not ``kustomize build …``/``helm template …``/jsonnet output), it is not a Secret, and
every changed field gets a one-line scalar (nothing removed, no lists or maps, no control characters). The
command is the kubectl verb when one says it (``-- scale deployment/web -n prod --replicas=9``, ``-- label``,
``-- annotate``) and otherwise the generic form, one ``--set PATH=VALUE`` per field: PATH as the denial
writes it (``spec.template.spec.containers[name=web].image``: list elements by their merge key), VALUE as
``fields.parse_scalar`` reads it (JSON — ``9``, ``true``, ``"9"`` — else the bare string). Every word is
shell-quoted, so the line pastes as it is; it is never longer than ``limit`` (a line that would be is not given).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Final

from driftguard.core import fields
from driftguard.core.contract import Stamp
from driftguard.core.fields import MISSING, FieldDrift
from driftguard.core.objects import ObjectRef

# kubectl's names for the kinds suggest edits (apiVersion, kind); the first name of each kind is the one written
KINDS: Final[Mapping[str, tuple[str, str]]] = {
    "deployment": ("apps/v1", "Deployment"), "deploy": ("apps/v1", "Deployment"),
    "statefulset": ("apps/v1", "StatefulSet"), "sts": ("apps/v1", "StatefulSet"),
    "daemonset": ("apps/v1", "DaemonSet"), "ds": ("apps/v1", "DaemonSet"),
    "replicaset": ("apps/v1", "ReplicaSet"), "rs": ("apps/v1", "ReplicaSet"),
    "configmap": ("v1", "ConfigMap"), "cm": ("v1", "ConfigMap"),
    "service": ("v1", "Service"), "svc": ("v1", "Service"),
}
PLURALS: Final[Mapping[str, str]] = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                                     "DaemonSet": "daemonsets", "ReplicaSet": "replicasets",
                                     "ConfigMap": "configmaps", "Service": "services"}
_NAMES: Final[Mapping[tuple[str, str], str]] = {
    (api_version.rpartition("/")[0], kind): name for name, (api_version, kind) in reversed(list(KINDS.items()))}
SCALABLE: Final = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})
PLAIN_SUFFIXES: Final = (".yaml", ".yml")
COMMENT: Final = "  # the git change instead: edits a clone, prints the diff"
LIMIT: Final = 256  # an admission warning's size (webhook.messages.WARNING_LIMIT): the line fits in one


def kind_name(ref: ObjectRef) -> str | None:
    """``deployment`` for an apps/v1 Deployment; None for a kind suggest does not edit."""
    return _NAMES.get((ref.group, ref.kind))


def plain_file(path: str) -> bool:
    """Whether a stamp's path is a YAML file in the repository (not a renderer's output)."""
    return path.endswith(PLAIN_SUFFIXES) and not path.startswith(("kustomize build ", "helm template "))


def command(ref: ObjectRef, stamp: Stamp, changes: Sequence[FieldDrift], *, limit: int = LIMIT) -> str | None:
    """The whole pasteable line (the command and a comment saying what it does), or None when suggest could
    not make this change in git (see the module docstring)."""
    kind = kind_name(ref)
    if kind is None or not changes or stamp.sensitive or not plain_file(stamp.source.path) or not ref.namespace:
        return None
    target = [f"{kind}/{ref.name}", "-n", ref.namespace]
    words = _verb(ref, target, changes)
    if words is None:
        values = [(c.path, fields.scalar_text(c.actual) if c.actual is not MISSING else None) for c in changes]
        if any(v is None for _, v in values):
            return None
        words = ["driftguard", "suggest", *(w for p, v in values for w in ("--set", f"{fields.render_path(p)}={v}")),
                 *target]
    line = shlex.join(words) + COMMENT
    return line if len(line) <= limit else None


def _verb(ref: ObjectRef, target: list[str], changes: Sequence[FieldDrift]) -> list[str] | None:
    """The kubectl verb's form when every change is one: scale (replicas of a scalable kind), label, annotate."""
    if (len(changes) == 1 and changes[0].path == ("spec", "replicas") and ref.kind in SCALABLE
            and isinstance(changes[0].actual, int) and not isinstance(changes[0].actual, bool)
            and changes[0].actual >= 0):
        return ["driftguard", "suggest", "--", "scale", *target, f"--replicas={changes[0].actual}"]
    for section, verb in (("labels", "label"), ("annotations", "annotate")):
        if all(len(c.path) == 3 and c.path[:2] == ("metadata", section) and isinstance(c.path[2], str)
               and "=" not in c.path[2] and isinstance(c.actual, str) and fields.scalar_text(c.actual) is not None
               for c in changes):
            return ["driftguard", "suggest", "--", verb, *target, *(f"{c.path[2]}={c.actual}" for c in changes)]
    return None


def parse_set(text: str) -> tuple[fields.Path, object]:
    """``PATH=VALUE`` (``--set``) → (path, value); ValueError saying what is wrong."""
    path, rest = fields.parse_path(text)
    if not rest.startswith("="):
        raise ValueError(f"--set {text!r}: write PATH=VALUE, e.g. "
                         "spec.template.spec.containers[name=web].image=nginx:1.27")
    return path, fields.parse_scalar(rest[1:])
