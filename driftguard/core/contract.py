"""The ownership contract: what the reconciler stamps and the webhook trusts.

Every object the reconciler applies carries

* the label ``driftguard.io/managed: "true"`` — the webhook configurations select on it,
  so unmanaged objects never reach the webhook;
* annotations naming the owning Application, the source (repo, commit, author, commit
  time, file path), the enforcement mode, and the *declared tree* — git's values for
  every field the manifest sets, compact JSON (zlib+base64 when large), Secret data and
  long strings only as SHA-256 digests.

The webhook decides from the *old* object's stamp, which only the reconciler can have
written (the webhook denies anyone else touching ``driftguard.io/`` keys, and denies a
CREATE that carries them). Two further annotations are written by the mutating webhook:
the drift mark (warn mode) and the break-glass grant.

This module defines the keys and their encodings once; nothing else spells them.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, cast, get_args

from driftguard.core import fields, frozen, jsontext
from driftguard.core.ignore import NOTHING, Ignore

PREFIX: Final = "driftguard.io/"
LABEL_MANAGED: Final = PREFIX + "managed"
ANN_APPLICATION: Final = PREFIX + "application"
ANN_REPO: Final = PREFIX + "repo"
ANN_COMMIT: Final = PREFIX + "commit"
ANN_AUTHOR: Final = PREFIX + "author"
ANN_COMMITTED_AT: Final = PREFIX + "committed-at"
ANN_PATH: Final = PREFIX + "path"
ANN_ENFORCEMENT: Final = PREFIX + "enforcement"
ANN_DECLARED: Final = PREFIX + "declared"
ANN_DRIFT: Final = PREFIX + "drift"
ANN_BREAK_GLASS: Final = PREFIX + "break-glass"
ANN_BREAK_GLASS_GRANTED: Final = PREFIX + "break-glass-granted"
# Optional, additive: the signer spec.verify accepted for the commit (identity and key fingerprint); absent when
# the Application verifies nothing. Not among STAMP_ANNOTATIONS: an object stamped before it existed still reads.
ANN_VERIFIED_BY: Final = PREFIX + "verified-by"
# The spec.ignoreDifferences rules that apply to this object (``driftguard.core.ignore``), written by the
# reconciler with the stamp when there are any; trusted, like the stamp, only from the old object.
ANN_IGNORE: Final = PREFIX + "ignore-differences"

# An existing object driftguard did not create is taken over by an Application only when its owner says
# so on the live object: ``driftguard.io/adopt: "<app namespace>/<app name>"`` (consumed when adopted).
ANN_ADOPT: Final = PREFIX + "adopt"

# Marks the reconciler sets on a Namespace or CustomResourceDefinition that holds managed objects
# (including namespaces it created): the webhook denies their DELETE, and anyone but the reconciler
# adding, changing or removing them. The annotation names the Applications, comma-separated, for messages.
LABEL_HOLDS_MANAGED: Final = PREFIX + "holds-managed"
ANN_HOLDS_MANAGED: Final = PREFIX + "holds-managed-by"

# Finalizers on an Application that make deleting it delete what it manages (reconciler.deletion acts
# on them; the webhook admits adding one only from git or an admin). Argo CD's /background and
# /foreground variants only choose the propagation policy, so all three mean "cascade".
PRUNE_ON_DELETE: Final = PREFIX + "prune-on-delete"
ARGO_RESOURCES_FINALIZER: Final = "resources-finalizer.argocd.argoproj.io"
CASCADE_FINALIZERS: Final = (PRUNE_ON_DELETE, ARGO_RESOURCES_FINALIZER, f"{ARGO_RESOURCES_FINALIZER}/background",
                             f"{ARGO_RESOURCES_FINALIZER}/foreground")

FIELD_MANAGER: Final = "driftguard"
COMPRESS_ABOVE: Final = 4096
_COMPRESSED: Final = "z:"

Enforcement = Literal["deny", "warn", "off"]
ENFORCEMENTS: Final[tuple[str, ...]] = get_args(Enforcement)

# Stamp annotations are written together by the reconciler and read together by the webhook.
STAMP_ANNOTATIONS: Final = (
    ANN_APPLICATION, ANN_REPO, ANN_COMMIT, ANN_AUTHOR, ANN_COMMITTED_AT, ANN_PATH, ANN_ENFORCEMENT, ANN_DECLARED,
)


class ContractError(ValueError):
    """An object claims to be managed but its stamp cannot be read."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where in git an object's declared state comes from."""

    repo: str
    commit: str
    author: str
    committed_at: str
    path: str
    verified_by: str = ""  # the verified signer of the commit ("" when the Application verifies none)

    @property
    def short_commit(self) -> str:
        return self.commit[:7]


@dataclass(frozen=True, slots=True)
class Stamp:
    """The ownership record carried by a managed object."""

    application: str  # "<namespace>/<name>" of the Application
    source: Source
    enforcement: Enforcement
    declared: dict[str, Any] = field(repr=False)
    sensitive: bool = False  # declared values must never be rendered (Secrets)
    ignore: Ignore = NOTHING  # spec.ignoreDifferences for this object: left out of every comparison

    def drift(self, obj: Mapping[str, Any]) -> list[fields.FieldDrift]:
        """Declared fields whose value in ``obj`` is not git's (ignored fields are never drift)."""
        if not self.ignore:
            return fields.diff(self.declared, obj)
        from driftguard.core import ignore

        return ignore.diff(self.ignore, self.declared, obj)[0]


@dataclass(frozen=True, slots=True)
class DriftMark:
    """Written by the mutating webhook when a warn-mode edit changes declared fields."""

    user: str
    at: str
    fields: tuple[str, ...]

    def encode(self) -> str:
        return json.dumps({"user": self.user, "at": self.at, "fields": list(self.fields)}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> DriftMark | None:
        data = _json_object(text)
        if data is None:
            return None
        return cls(str(data.get("user", "")), str(data.get("at", "")), tuple(map(str, data.get("fields", []))))


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """Written by the mutating webhook when an authorised user makes an emergency change.

    The reconciler leaves the object alone while ``commit`` is still the object's
    stamped commit and ``expires_at`` has not passed.
    """

    user: str
    at: str
    reason: str
    commit: str
    expires_at: str

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> BreakGlass | None:
        data = _json_object(text)
        if data is None:
            return None
        try:
            return cls(**{k: str(data[k]) for k in ("user", "at", "reason", "commit", "expires_at")})
        except KeyError:
            return None


# ---------------------------------------------------------------- writing (reconciler)

def is_sensitive(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("kind") == "Secret" and manifest.get("apiVersion") == "v1"


def normalize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite what the API server would rewrite, so git and the cluster compare equal.

    Secret ``stringData`` is folded into base64 ``data`` (the server never stores it).
    """
    out = dict(manifest)
    if is_sensitive(out) and isinstance(out.get("stringData"), Mapping):
        data = dict(out.get("data") or {})
        for key, value in out.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        out["data"] = data
    return out


def stamp(manifest: Mapping[str, Any], *, application: str, source: Source, enforcement: Enforcement,
          ignore: Ignore = NOTHING) -> dict[str, Any]:
    """The object to apply: the normalised manifest plus the ownership stamp (and the ignoreDifferences rules
    that apply to it, when there are any)."""
    obj = normalize(manifest)
    declared = fields.compact(
        fields.declared_tree(obj, own_prefix=PREFIX),
        sensitive_roots=frozenset({"data"}) if is_sensitive(obj) else frozenset(),
    )
    metadata = dict(obj.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if not k.startswith(PREFIX)}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(PREFIX)}
    labels[LABEL_MANAGED] = "true"
    annotations.update({
        ANN_APPLICATION: application,
        ANN_REPO: source.repo,
        ANN_COMMIT: source.commit,
        ANN_AUTHOR: source.author,
        ANN_COMMITTED_AT: source.committed_at,
        ANN_PATH: source.path,
        ANN_ENFORCEMENT: enforcement,
        ANN_DECLARED: encode_declared(declared),
    })
    if source.verified_by:
        annotations[ANN_VERIFIED_BY] = source.verified_by
    if ignore:
        annotations[ANN_IGNORE] = ignore.encode()
    metadata["labels"] = labels
    metadata["annotations"] = annotations
    obj["metadata"] = metadata
    return obj


def encode_declared(tree: Mapping[str, Any]) -> str:
    text = fields.canonical_json(tree)
    if len(text) <= COMPRESS_ABOVE:
        return text
    return _COMPRESSED + base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def decode_declared(text: str) -> dict[str, Any]:
    try:
        if text.startswith(_COMPRESSED):
            text = zlib.decompress(base64.b64decode(text[len(_COMPRESSED):], validate=True)).decode()
        value = jsontext.loads(text)
    except (ValueError, zlib.error, binascii.Error) as e:
        raise ContractError(f"annotation {ANN_DECLARED} is not valid: {e}") from e
    if not isinstance(value, dict):
        raise ContractError(f"annotation {ANN_DECLARED} must hold a JSON object")
    return value


# ---------------------------------------------------------------- reading (webhook, reconciler)

def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return cast(Mapping[str, str], ((obj or {}).get("metadata") or {}).get("labels") or {})


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return cast(Mapping[str, str], ((obj or {}).get("metadata") or {}).get("annotations") or {})


def is_managed(obj: Mapping[str, Any] | None) -> bool:
    return labels_of(obj).get(LABEL_MANAGED) == "true"


def read_stamp(obj: Mapping[str, Any] | None) -> Stamp | None:
    """The object's stamp; None when unmanaged; ContractError when managed but unreadable."""
    if not is_managed(obj):
        return None
    annotations = annotations_of(obj)
    missing = [key for key in STAMP_ANNOTATIONS if key not in annotations]
    if missing:
        raise ContractError(f"managed object lacks annotation(s) {', '.join(missing)}")
    enforcement = annotations[ANN_ENFORCEMENT]
    if enforcement not in ENFORCEMENTS:
        raise ContractError(f"annotation {ANN_ENFORCEMENT}={enforcement!r} is not one of {', '.join(ENFORCEMENTS)}")
    return Stamp(
        application=annotations[ANN_APPLICATION],
        source=Source(
            repo=annotations[ANN_REPO],
            commit=annotations[ANN_COMMIT],
            author=annotations[ANN_AUTHOR],
            committed_at=annotations[ANN_COMMITTED_AT],
            path=annotations[ANN_PATH],
            verified_by=annotations.get(ANN_VERIFIED_BY, ""),
        ),
        enforcement=cast(Enforcement, enforcement),
        declared=decode_declared(annotations[ANN_DECLARED]),
        sensitive=is_sensitive(obj or {}),
        ignore=_read_ignore(annotations),
    )


class StampCache:
    """``read_stamp`` for a reader that sees the same stamps over and over (the webhook: every edit of an object
    carries its stamp): each distinct stamp is decoded once and the same ``Stamp`` given back for it, with its
    declared tree read-only (``driftguard.core.frozen``), since every request shares it. Keyed by everything
    ``read_stamp`` reads (the stamp annotations and what makes an object sensitive), so the answer is always
    ``read_stamp``'s; an unreadable stamp raises each time and is not kept. Bounded by the stamps' text:
    beyond ``budget`` characters, the oldest entries go."""

    def __init__(self, budget: int = 2 * 1024 * 1024) -> None:
        self.budget = budget
        self._entries: dict[tuple[object, ...], tuple[Stamp, int]] = {}
        self._size = 0
        self._lock = threading.Lock()

    def read(self, obj: Mapping[str, Any] | None) -> Stamp | None:
        if not is_managed(obj):
            return None
        annotations = annotations_of(obj)
        key = (*(annotations.get(k) for k in _STAMP_KEYS), is_sensitive(obj or {}))
        try:
            entry = self._entries.get(key)
        except TypeError:  # an annotation value that is not a string: read_stamp says what it makes of it
            return read_stamp(obj)
        if entry is not None:
            return entry[0]
        stamp = read_stamp(obj)
        if stamp is None:  # not reached: managed, checked above
            return None
        stamp = Stamp(stamp.application, stamp.source, stamp.enforcement, frozen.freeze(stamp.declared),
                      stamp.sensitive, stamp.ignore)
        size = sum(len(v) for v in key if isinstance(v, str))
        with self._lock:
            if size <= self.budget and key not in self._entries:
                self._entries[key] = (stamp, size)
                self._size += size
                while self._size > self.budget:
                    self._size -= self._entries.pop(next(iter(self._entries)))[1]
        return stamp

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


_STAMP_KEYS: Final = (*STAMP_ANNOTATIONS, ANN_VERIFIED_BY, ANN_IGNORE)


def _read_ignore(annotations: Mapping[str, str]) -> Ignore:
    text = annotations.get(ANN_IGNORE)
    if text is None:
        return NOTHING
    try:
        return Ignore.decode(text)
    except ValueError as e:
        raise ContractError(f"annotation {ANN_IGNORE} is not valid: {e}") from e


def holds_managed(obj: Mapping[str, Any] | None) -> bool:
    """Whether a Namespace or CRD carries the reconciler's "holds managed objects" mark."""
    return labels_of(obj).get(LABEL_HOLDS_MANAGED) == "true"


def holders_of(obj: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The Applications a marked Namespace or CRD names (may be empty)."""
    text = annotations_of(obj).get(ANN_HOLDS_MANAGED, "")
    return tuple(name.strip() for name in text.split(",") if name.strip())


def own_metadata(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """Every ``driftguard.io/`` label and annotation, keyed ``label:<k>`` / ``annotation:<k>``."""
    out = {f"label:{k}": v for k, v in labels_of(obj).items() if k.startswith(PREFIX)}
    out.update({f"annotation:{k}": v for k, v in annotations_of(obj).items() if k.startswith(PREFIX)})
    return out


def has_own_metadata(obj: Mapping[str, Any] | None) -> bool:
    """Whether ``obj`` carries any ``driftguard.io/`` label or annotation (``bool(own_metadata(obj))``, cheaper)."""
    return any(k.startswith(PREFIX) for k in labels_of(obj)) or any(k.startswith(PREFIX) for k in annotations_of(obj))


def changed_own_metadata(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """The driftguard label/annotation keys that differ between two versions of an object."""
    changed: list[str] = []
    for name, bag in (("label", labels_of), ("annotation", annotations_of)):
        before, after = bag(old), bag(new)
        if before == after:  # the common case (one C comparison): nothing of ours moved either
            continue
        changed += [f"{name}:{k}" for k in before.keys() | after.keys()
                    if k.startswith(PREFIX) and before.get(k) != after.get(k)]
    return sorted(changed)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
