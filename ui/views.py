"""What the pages show, computed purely from API objects: rows, trees, words, colours and redaction.

The same words and colours for sync and health everywhere (``badge``); Secret values never leave
``redact`` (data and stringData become ``<redacted>``, and so does every annotation that could carry
them: last-applied-configuration, driftguard's declared tree).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from driftguard.core import contract
from driftguard.core.clock import parse_time

REDACTED: Final = "<redacted>"
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# one colour per word, everywhere (the CSS classes are the lower-cased words)
SYNC_WORDS: Final = ("Synced", "OutOfSync", "Error", "Unknown")
HEALTH_WORDS: Final = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
CONDITION_WORDS: Final = {
    "Ready": "Ready",
    "SpecValid": "The spec is valid",
    "ProjectPermitted": "The project permits it",
    "SourceReady": "Git fetched",
    "RenderReady": "Manifests rendered",
    "Applied": "Applied to the cluster",
    "Pruned": "Objects no longer in git pruned",
    "Fighting": "Another writer keeps changing objects",
    "Deleting": "Being deleted",
}
OWNED_KINDS: Final = ("ReplicaSet", "Pod", "Job", "ControllerRevision", "EndpointSlice")
_WEB_REPO: Final = re.compile(r"^https?://[^\s/@]+/[^\s]+$")


def badge(word: str | None) -> str:
    """The CSS class of a sync or health word (unknown words share Unknown's colour)."""
    text = word or "Unknown"
    return text.lower() if text in SYNC_WORDS or text in HEALTH_WORDS else "unknown"


def age(timestamp: str | None, now: dt.datetime) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since an RFC 3339 time; ``-`` when absent or unreadable."""
    if not timestamp:
        return "-"
    try:
        seconds = int((now - parse_time(timestamp)).total_seconds())
    except ValueError:
        return "-"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


# ---------------------------------------------------------------- the Applications page

@dataclass(frozen=True, slots=True)
class AppRow:
    namespace: str
    name: str
    project: str
    sync: str
    health: str
    health_message: str
    enforcement: str
    automated: bool
    revision: str
    author: str
    subject: str
    committed: str  # age of the commit
    objects: int
    drift: int
    denials: int  # in the last 24 h
    last_sync: str  # age of the last sync

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def app_row(app: Mapping[str, Any], *, denials: int, now: dt.datetime) -> AppRow:
    spec = app.get("spec") or {}
    status = app.get("status") or {}
    sync = status.get("sync") or {}
    health = status.get("health") or {}
    policy = spec.get("syncPolicy") or {}
    drift = [d for d in status.get("drift") or [] if isinstance(d, Mapping) and d.get("state") != "Reverted"]
    return AppRow(
        namespace=str(_meta(app).get("namespace") or ""),
        name=str(_meta(app).get("name") or ""),
        project=str(spec.get("project") or "default"),
        sync=str(sync.get("status") or "Unknown"),
        health=str(health.get("status") or "Unknown"),
        health_message=str(health.get("message") or ""),
        enforcement=str(spec.get("enforcement") or "deny"),
        automated=policy.get("automated") not in (None, False),  # as the reconciler reads it: present means on
        revision=str(sync.get("shortRevision") or str(sync.get("revision") or "")[:7] or "-"),
        author=str(sync.get("author") or "-"),
        subject=str(sync.get("message") or ""),
        committed=age(sync.get("committedAt"), now),
        objects=int(status.get("inventoryCount") or len(status.get("inventory") or [])),
        drift=len(drift),
        denials=denials,
        last_sync=age(status.get("lastSyncTime"), now),
    )


def filter_rows(rows: Iterable[AppRow], *, project: str = "", namespace: str = "", status: str = "",
                search: str = "") -> list[AppRow]:
    """Rows matching every given filter; ``status`` is a sync or a health word; ``search`` any text of the row."""
    needle = search.strip().lower()
    out = []
    for row in rows:
        if project and row.project != project:
            continue
        if namespace and row.namespace != namespace:
            continue
        if status and status not in (row.sync, row.health):
            continue
        if needle and needle not in " ".join((row.key, row.project, row.author, row.subject, row.revision)).lower():
            continue
        out.append(row)
    return sorted(out, key=lambda r: (r.namespace, r.name))


# ---------------------------------------------------------------- the Application page

@dataclass(slots=True)
class Node:
    kind: str
    namespace: str
    name: str
    api_version: str
    sync: str
    health: str
    health_message: str = ""
    drift: tuple[str, ...] = ()  # drifted fields
    managed: bool = True  # declared in git (False: owned by a declared object)
    children: list[Node] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def inventory_refs(app: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(apiVersion, kind, namespace, name, group) of every object in status.inventory, sorted."""
    out = []
    for entry in (app.get("status") or {}).get("inventory") or []:
        try:
            namespace, name, group, kind = _split_key(str(entry["id"]))
        except (KeyError, ValueError, TypeError):
            continue
        out.append((str(entry.get("v") or ""), kind, namespace, name, group))
    return sorted(out, key=lambda r: (r[1], r[2], r[3]))


def _split_key(key: str) -> tuple[str, str, str, str]:
    parts = key.split("_")
    if len(parts) != 4:
        raise ValueError(key)
    return parts[0], parts[1], parts[2], parts[3]


def drift_by_object(app: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """"Kind ns/name" → the fields currently drifted (not the reverted ones)."""
    out: dict[str, tuple[str, ...]] = {}
    for d in (app.get("status") or {}).get("drift") or []:
        if isinstance(d, Mapping) and d.get("state") != "Reverted":
            out[str(d.get("object"))] = tuple(str(f) for f in d.get("fields") or ())
    return out


def tree(app: Mapping[str, Any], live: Mapping[tuple[str, str, str], Mapping[str, Any]],
         owned: Sequence[Mapping[str, Any]], assess: Any) -> list[Node]:
    """The resource tree: each inventory object (``live`` keyed by kind, namespace, name; absent: Missing)
    and under it what it owns by ownerReferences (``owned``: ReplicaSets, Pods, ..., recursively)."""
    drift = drift_by_object(app)
    by_owner: dict[str, list[Mapping[str, Any]]] = {}
    for obj in owned:
        for owner in _meta(obj).get("ownerReferences") or []:
            by_owner.setdefault(str(owner.get("uid")), []).append(obj)
    roots = []
    for api_version, kind, namespace, name, _group in inventory_refs(app):
        found = live.get((kind, namespace, name))
        label = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        fields = drift.get(label, ())
        if found is None and kind == "Secret" and not _group:
            roots.append(Node(kind, namespace, name, api_version, "-", "Unknown",
                              "the UI does not read Secrets: no page shows their values"))
            continue
        if found is None:
            roots.append(Node(kind, namespace, name, api_version, "OutOfSync", "Missing", "not in the cluster"))
            continue
        health, message = assess(found)
        node = Node(kind, namespace, name, api_version, "OutOfSync" if fields else "Synced", str(health), message,
                    fields)
        node.children = _owned_nodes(found, by_owner, assess, depth=0)
        roots.append(node)
    return roots


def _owned_nodes(obj: Mapping[str, Any], by_owner: Mapping[str, list[Mapping[str, Any]]], assess: Any, *,
                 depth: int) -> list[Node]:
    if depth > 4:
        return []
    out = []
    for child in sorted(by_owner.get(str(_meta(obj).get("uid")), ()), key=lambda o: str(_meta(o).get("name"))):
        health, message = assess(child)
        node = Node(str(child.get("kind")), str(_meta(child).get("namespace") or ""), str(_meta(child).get("name")),
                    str(child.get("apiVersion")), "-", str(health), message, managed=False)
        node.children = _owned_nodes(child, by_owner, assess, depth=depth + 1)
        out.append(node)
    return out


def flatten(nodes: Sequence[Node], depth: int = 0) -> list[tuple[int, Node]]:
    out = []
    for node in nodes:
        out.append((depth, node))
        out.extend(flatten(node.children, depth + 1))
    return out


@dataclass(frozen=True, slots=True)
class ConditionRow:
    type: str
    words: str
    holds: bool  # status True
    ok: bool  # the good state (Fighting and Deleting are good when they do not hold)
    reason: str
    message: str
    since: str


def conditions(app: Mapping[str, Any], now: dt.datetime) -> list[ConditionRow]:
    """Each condition in plain words: what it means, whether it holds (Fighting and Deleting hold when False)."""
    out = []
    for c in (app.get("status") or {}).get("conditions") or []:
        type_ = str(c.get("type"))
        status = str(c.get("status"))
        good = status == "False" if type_ in ("Fighting", "Deleting") else status == "True"
        out.append(ConditionRow(type_, CONDITION_WORDS.get(type_, type_), status == "True", good,
                                str(c.get("reason") or ""),
                                str(c.get("message") or ""), age(c.get("lastTransitionTime"), now)))
    return out


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: str
    revision: str
    author: str
    committed: str
    started: str
    result: str
    initiator: str
    duration: str
    message: str


def history(app: Mapping[str, Any], now: dt.datetime) -> list[HistoryRow]:
    """status.history, newest first, with each sync's duration."""
    out = []
    for h in reversed((app.get("status") or {}).get("history") or []):
        duration = "-"
        try:
            seconds = (parse_time(str(h.get("finishedAt"))) - parse_time(str(h.get("startedAt")))).total_seconds()
            duration = f"{seconds:.1f}s"
        except ValueError:
            pass
        out.append(HistoryRow(str(h.get("id", "")), str(h.get("revision") or "")[:7], str(h.get("author") or "-"),
                              age(h.get("commitTime"), now), age(h.get("startedAt"), now), str(h.get("result") or ""),
                              str(h.get("initiator") or ""), duration, str(h.get("message") or "")))
    return out


@dataclass(frozen=True, slots=True)
class DriftRow:
    object: str
    fields: str
    state: str
    by: str
    manager: str
    at: str


def drift_rows(app: Mapping[str, Any], now: dt.datetime) -> list[DriftRow]:
    return [DriftRow(str(d.get("object")), ", ".join(str(f) for f in d.get("fields") or ()), str(d.get("state")),
                     str(d.get("by") or "unknown"), str(d.get("manager") or ""), age(d.get("at"), now))
            for d in (app.get("status") or {}).get("drift") or [] if isinstance(d, Mapping)]


@dataclass(frozen=True, slots=True)
class GrantRow:
    object: str
    user: str
    reason: str
    granted: str
    expires: str


def grant_row(obj: Mapping[str, Any], now: dt.datetime) -> GrantRow | None:
    """The break-glass grant an object carries, as written (the reconciler verifies its seal, not the UI)."""
    text = contract.annotations_of(obj).get(contract.ANN_BREAK_GLASS_GRANTED)
    if not text:
        return None
    grant = contract.BreakGlass.decode(text)
    if grant is None:
        return GrantRow(_label(obj), "?", "unreadable grant", "-", "-")
    return GrantRow(_label(obj), grant.user, grant.reason, age(grant.at, now), until(grant.expires_at, now))


def until(timestamp: str, now: dt.datetime) -> str:
    """``in 42m`` for a time ahead, ``expired 5m ago`` for one past, ``-`` when unreadable."""
    try:
        when = parse_time(timestamp)
    except ValueError:
        return "-"
    if when <= now:
        return f"expired {age(timestamp, now)} ago"
    ahead = (now - (when - now)).strftime("%Y-%m-%dT%H:%M:%SZ")  # as far behind now as `when` is ahead
    return f"in {age(ahead, now)}"


def _label(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
    return f"{obj.get('kind')} {where}"


# ---------------------------------------------------------------- the Object page

def is_secret(obj: Mapping[str, Any] | None) -> bool:
    return bool(obj) and obj.get("kind") == "Secret" and str(obj.get("apiVersion")) == "v1"  # type: ignore[union-attr]


def redact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as shown: no managedFields; for a Secret every data and stringData value, and every
    annotation that could repeat them, is ``<redacted>``; driftguard's declared tree is shown apart."""
    out = {k: v for k, v in obj.items()}
    meta = dict(_meta(obj))
    meta.pop("managedFields", None)
    annotations = dict(meta.get("annotations") or {})
    if contract.ANN_DECLARED in annotations:
        annotations[contract.ANN_DECLARED] = "(shown as git's manifest)"
    if is_secret(obj):
        if LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = REDACTED
        for section in ("data", "stringData"):
            if isinstance(out.get(section), Mapping):
                out[section] = {k: REDACTED for k in out[section]}
    elif LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = "(omitted)"
    if annotations:
        meta["annotations"] = annotations
    out["metadata"] = meta
    return out


def declared_paths(tree: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves git declares (``spec.replicas``, ``spec.template.spec.containers``...)."""
    out: set[str] = set()
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            out |= declared_paths(value, path)
    return out


def yaml_lines(obj: Any, declared: set[str], prefix: str = "", indent: int = 0) -> list[tuple[str, bool]]:
    """The object as YAML-ish lines, each flagged when its path is declared in git (highlighted)."""
    out: list[tuple[str, bool]] = []
    pad = "  " * indent
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            marked = path in declared
            if isinstance(value, Mapping | list) and value:
                out.append((f"{pad}{key}:", marked))
                out.extend(yaml_lines(value, declared, path, indent + 1))
            else:
                out.append((f"{pad}{key}: {_scalar(value)}", marked))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, Mapping) and item:
                lines = yaml_lines(item, declared, prefix, indent + 1)
                first, flag = lines[0]
                out.append((f"{pad}- {first.lstrip()}", flag))
                out.extend(lines[1:])
            else:
                out.append((f"{pad}- {_scalar(item)}", prefix in declared))
    return out


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return str(value)


def repo_link(repo: str, commit: str, path: str) -> str | None:
    """A browsable link to the commit's directory when the repository is a web URL (GitHub/GitLab style)."""
    if not _WEB_REPO.match(repo or ""):
        return None
    base = repo[:-4] if repo.endswith(".git") else repo
    return f"{base.rstrip('/')}/tree/{commit}/{path.strip('/')}" if commit else base
