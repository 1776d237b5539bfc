"""The Application resource: its wire shape, and a validated, defaulted view of its spec.

The spec is Argo CD's (``project``, ``source``, ``destination``, ``syncPolicy``) plus driftguard's
``enforcement``, ``refreshInterval`` and ``source.secretRef``. Parsing never raises: whatever is
wrong becomes a *problem* (the Application cannot be synced; a condition says why) or a *warning*
(ignored, and said so). Defaults follow Argo CD where it has one: no ``automated`` means nothing is
applied (status shows what would be), ``prune`` and ``selfHeal`` default to false.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NotRequired, TypedDict, cast

from driftguard.core import ignore
from driftguard.core.contract import ENFORCEMENTS, PREFIX, Enforcement
from driftguard.core.signatures import VerifyError, VerifySpec, parse_verify
from reconciler.revision import redact_url
from reconciler.semver import ConstraintError, parse_constraint
from reconciler.sources import RenderOptions, parse_options

GROUP: Final = "driftguard.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Application"
IN_CLUSTER: Final = "https://kubernetes.default.svc"
IN_CLUSTER_NAME: Final = "in-cluster"
DEFAULT_REFRESH: Final = 3.0
DEFAULT_HISTORY: Final = 10  # Argo CD's revisionHistoryLimit default
MIN_REFRESH: Final = 0.2

# Sync options that name what driftguard always does (accepted, no effect) and those it implements.
NOOP_SYNC_OPTIONS: Final = frozenset({
    "ServerSideApply=true", "ApplyOutOfSyncOnly=true", "Validate=true", "PruneLast=false",
    "CreateNamespace=false", "PrunePropagationPolicy=background",
})
IMPLEMENTED_SYNC_OPTIONS: Final = frozenset({"CreateNamespace=true", "PruneLast=true", "RespectIgnoreDifferences=true",
                                              "RespectIgnoreDifferences=false"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SAFE_REVISION = re.compile(r"^[A-Za-z0-9._/@+-]+$")


class SourceWire(TypedDict):
    repoURL: str
    targetRevision: NotRequired[str]
    path: NotRequired[str]
    secretRef: NotRequired[dict[str, str]]
    directory: NotRequired[dict[str, Any]]
    kustomize: NotRequired[dict[str, Any]]
    helm: NotRequired[dict[str, Any]]


class SyncPolicyWire(TypedDict, total=False):
    automated: dict[str, bool]
    allowEmpty: bool
    syncOptions: list[str]
    managedNamespaceMetadata: dict[str, dict[str, str]]
    retry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Retry:
    """``syncPolicy.retry``: how a failed sync is retried (Argo CD's fields and defaults)."""

    limit: int = -1  # attempts after the first; -1: no limit (driftguard's behaviour without retry)
    duration: float = 5.0
    factor: float = 2.0
    max_duration: float = 180.0

    def delay(self, failures: int) -> float:
        """Seconds before retry number ``failures`` (1: the first retry)."""
        return min(self.max_duration, self.duration * self.factor ** max(0, failures - 1))

    def exhausted(self, failures: int) -> bool:
        return 0 <= self.limit < failures


class SpecWire(TypedDict, total=False):
    project: str
    source: SourceWire
    sources: list[dict[str, Any]]
    destination: dict[str, str]
    syncPolicy: SyncPolicyWire
    enforcement: str
    refreshInterval: str
    revisionHistoryLimit: int
    serviceAccountName: str
    verify: dict[str, Any]
    ignoreDifferences: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, order=True)
class AppKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> AppKey:
        metadata = obj.get("metadata") or {}
        return cls(str(metadata.get("namespace", "")), str(metadata.get("name", "")))


@dataclass(frozen=True, slots=True)
class SourceSpec:
    repo_url: str
    target_revision: str
    path: str  # normalised: no leading/trailing "/", "" for the repository root
    secret_name: str  # a Secret in the Application's namespace, or ""
    render: RenderOptions = field(default_factory=RenderOptions)  # directory / kustomize / helm fields


@dataclass(frozen=True, slots=True)
class AppSpec:
    key: AppKey
    generation: int
    project: str
    source: SourceSpec
    destination_namespace: str
    automated: bool
    prune: bool
    self_heal: bool
    allow_empty: bool
    create_namespace: bool
    enforcement: Enforcement
    refresh_interval: float
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    refs: tuple[tuple[str, SourceSpec], ...] = ()  # spec.sources entries with ``ref``: files for ``$<ref>/…``
    # spec.sources: the first rendered source is ``source``; every further one, by its name (``sources[2]``),
    # is rendered by its own renderer and its objects combined with the others'
    extra_sources: tuple[tuple[str, SourceSpec], ...] = ()
    source_name: str = "spec.source"  # ``source``'s name in messages: spec.source, or spec.sources[i]
    history_limit: int = DEFAULT_HISTORY  # spec.revisionHistoryLimit: entries kept in status.history
    service_account: str = ""  # spec.serviceAccountName: apply as it (driftguard.core.actors)
    prune_last: bool = False  # syncOptions PruneLast=true: prune after the last wave
    namespace_labels: tuple[tuple[str, str], ...] = ()  # syncPolicy.managedNamespaceMetadata (CreateNamespace)
    namespace_annotations: tuple[tuple[str, str], ...] = ()
    retry: Retry | None = None  # syncPolicy.retry (None: retried with the reconciler's backoff, without limit)
    verify: VerifySpec | None = None  # spec.verify: the commit/tag signatures required (driftguard.core.signatures)
    ignore_rules: tuple[ignore.Rule, ...] = ()  # spec.ignoreDifferences
    respect_ignore_differences: bool = False  # syncOptions RespectIgnoreDifferences=true: apply live values there

    @property
    def valid(self) -> bool:
        return not self.problems


def parse_application(obj: Mapping[str, Any]) -> AppSpec:
    """The validated spec of an Application object (problems and warnings collected, never raised)."""
    problems: list[str] = []
    warnings: list[str] = []
    spec = cast(SpecWire, obj.get("spec") or {})
    source, refs, extra, source_name = _sources(spec, problems)
    destination = spec.get("destination") or {}
    server, dest_name = destination.get("server", ""), destination.get("name", "")
    if server not in ("", IN_CLUSTER) or dest_name not in ("", IN_CLUSTER_NAME):
        where = server or dest_name
        problems.append(
            f"destination {where!r} is not supported: only the in-cluster destination "
            f"({IN_CLUSTER}) is, for now"
        )
    policy = spec.get("syncPolicy") or {}
    automated = policy.get("automated")
    auto = automated or {}
    options = list(policy.get("syncOptions") or [])
    create_namespace = "CreateNamespace=true" in options
    prune_last = "PruneLast=true" in options
    ignored = [o for o in options if o not in IMPLEMENTED_SYNC_OPTIONS and o not in NOOP_SYNC_OPTIONS]
    if ignored:
        warnings.append(f"syncOptions {', '.join(ignored)} are not supported and are ignored")
    labels, annotations = _namespace_metadata(policy.get("managedNamespaceMetadata"), problems)
    if (labels or annotations) and not create_namespace:
        warnings.append("syncPolicy.managedNamespaceMetadata has no effect without syncOptions CreateNamespace=true")
    retry = _retry(policy.get("retry"), problems)
    enforcement = spec.get("enforcement", "deny")
    if enforcement not in ENFORCEMENTS:
        problems.append(f"enforcement {enforcement!r} must be one of {', '.join(ENFORCEMENTS)}")
        enforcement = "deny"
    interval = DEFAULT_REFRESH
    if "refreshInterval" in spec:
        try:
            interval = max(MIN_REFRESH, parse_duration(str(spec["refreshInterval"])))
        except ValueError as e:
            problems.append(str(e))
    history_limit = spec.get("revisionHistoryLimit", DEFAULT_HISTORY)
    if isinstance(history_limit, bool) or not isinstance(history_limit, int) or history_limit < 0:
        warnings.append(f"revisionHistoryLimit {history_limit!r} must be a whole number >= 0; "
                        f"{DEFAULT_HISTORY} is used")
        history_limit = DEFAULT_HISTORY
    account = spec.get("serviceAccountName", "")
    if not isinstance(account, str):
        problems.append("serviceAccountName must be a string (a ServiceAccount in the Application's namespace)")
        account = ""
    verify = None
    try:
        verify = parse_verify(spec.get("verify"), "spec.verify")
    except VerifyError as e:
        problems.append(str(e))
    rules, rule_problems = ignore.parse_rules(spec.get("ignoreDifferences"))
    problems.extend(rule_problems)
    metadata = obj.get("metadata") or {}
    return AppSpec(
        key=AppKey.of(obj),
        generation=int(metadata.get("generation") or 0),
        project=str(spec.get("project") or "default"),
        source=source,
        destination_namespace=str(destination.get("namespace") or ""),
        automated=automated is not None,
        prune=bool(auto.get("prune", False)),
        self_heal=bool(auto.get("selfHeal", False)),
        allow_empty=bool(policy.get("allowEmpty", auto.get("allowEmpty", False))),
        create_namespace=create_namespace,
        prune_last=prune_last,
        namespace_labels=labels,
        namespace_annotations=annotations,
        retry=retry,
        enforcement=cast(Enforcement, enforcement),
        refresh_interval=interval,
        problems=tuple(problems),
        warnings=tuple(warnings),
        refs=refs,
        extra_sources=extra,
        source_name=source_name,
        history_limit=history_limit,
        service_account=account.strip(),
        verify=verify,
        ignore_rules=rules,
        respect_ignore_differences="RespectIgnoreDifferences=true" in options,
    )


def _namespace_metadata(wire: object, problems: list[str]
                        ) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``managedNamespaceMetadata``: the labels and annotations put on the Namespace CreateNamespace creates."""
    if wire is None:
        return (), ()
    if not isinstance(wire, Mapping):
        problems.append("syncPolicy.managedNamespaceMetadata must be an object with labels and annotations")
        return (), ()
    out: list[tuple[tuple[str, str], ...]] = []
    for key in ("labels", "annotations"):
        values = wire.get(key) or {}
        if not isinstance(values, Mapping) or not all(isinstance(v, str) for v in values.values()):
            problems.append(f"syncPolicy.managedNamespaceMetadata.{key} must map names to strings")
            values = {}
        own = sorted(k for k in values if str(k).startswith(PREFIX))
        if own:
            problems.append(f"syncPolicy.managedNamespaceMetadata.{key}: {', '.join(own)} are driftguard's own "
                            "keys, which only the reconciler writes")
        out.append(tuple(sorted((str(k), str(v)) for k, v in values.items() if not str(k).startswith(PREFIX))))
    return out[0], out[1]


def _retry(wire: object, problems: list[str]) -> Retry | None:
    """``syncPolicy.retry``: ``limit`` (attempts after the first; negative: unlimited) and ``backoff``
    (``duration``, ``factor``, ``maxDuration``; Argo CD's defaults 5s, 2, 3m)."""
    if wire is None:
        return None
    if not isinstance(wire, Mapping):
        problems.append("syncPolicy.retry must be an object (limit, backoff)")
        return None
    default = Retry()
    backoff = wire.get("backoff") or {}
    try:
        limit = int(wire.get("limit", 0) if wire.get("limit") is not None else 0)
        if not isinstance(backoff, Mapping):
            raise ValueError("syncPolicy.retry.backoff must be an object (duration, factor, maxDuration)")
        duration = parse_duration(str(backoff.get("duration", "5s")), what="syncPolicy.retry.backoff.duration")
        max_duration = parse_duration(str(backoff.get("maxDuration", "3m")),
                                      what="syncPolicy.retry.backoff.maxDuration")
        factor = float(backoff.get("factor", default.factor))
    except (TypeError, ValueError) as e:
        problems.append(str(e) if "syncPolicy" in str(e) else f"syncPolicy.retry: {e}")
        return None
    if factor < 1 or duration <= 0 or max_duration < duration:
        problems.append("syncPolicy.retry.backoff: factor must be at least 1, duration positive, and maxDuration no "
                        "shorter than duration")
        return None
    return Retry(limit=-1 if limit < 0 else limit, duration=duration, factor=factor, max_duration=max_duration)


def _sources(spec: SpecWire, problems: list[str]) -> tuple[SourceSpec, tuple[tuple[str, SourceSpec], ...],
                                                          tuple[tuple[str, SourceSpec], ...], str]:
    """``spec.source``, or Argo CD's multi-source ``spec.sources``: one or more rendered sources (the first, and
    the others by name, ``sources[i]``), and any number of ``ref`` sources whose files their
    ``helm.valueFiles`` / ``fileParameters`` name as ``$<ref>/…``."""
    many = spec.get("sources")
    if many is None:
        return _source(spec.get("source") or cast(SourceWire, {}), problems), (), (), "spec.source"
    if spec.get("source"):
        problems.append("spec.source and spec.sources exclude each other")
    if not isinstance(many, list) or not many:
        problems.append("spec.sources must be a non-empty list")
        return _source(cast(SourceWire, {}), problems), (), (), "spec.source"
    rendered: list[tuple[str, SourceSpec]] = []
    refs: list[tuple[str, SourceSpec]] = []
    for i, wire in enumerate(many):
        if not isinstance(wire, Mapping):
            problems.append(f"spec.sources[{i}] must be an object")
            continue
        ref = str(wire.get("ref") or "")
        parsed = _source(cast(SourceWire, {k: v for k, v in wire.items() if k != "ref"}), problems)
        if not ref:
            rendered.append((f"sources[{i}]", parsed))
        elif wire.get("path") or any(wire.get(k) is not None for k in ("helm", "kustomize", "directory")):
            problems.append(f"spec.sources[{i}] (ref {ref!r}): a ref source that is also rendered is not supported "
                            "yet; split it into a ref source and a rendered one")
        elif not _REF_NAME.match(ref) or ref in dict(refs):
            problems.append(f"spec.sources[{i}].ref {ref!r} must be a unique name of letters, digits, '-' and '_'")
        else:
            refs.append((ref, parsed))
    if not rendered:
        problems.append("spec.sources: no source without ref, so nothing is rendered (a ref source only lends its "
                        "files to a rendered one)")
    source = rendered[0][1] if rendered else _source(cast(SourceWire, {"repoURL": "-"}), [])
    for name, each in rendered:
        helm = each.render.helm
        for path in (*helm.value_files, *(f for _, f in helm.file_parameters)):
            if path.startswith("$") and path[1:].split("/", 1)[0] not in dict(refs):
                problems.append(f"spec.{name}: {path!r} names no ref source (declared: "
                                f"{', '.join(dict(refs)) or 'none'})")
    name = f"spec.{rendered[0][0]}" if rendered else "spec.sources"
    return source, tuple(refs), tuple(rendered[1:]), name


def _source(source: SourceWire, problems: list[str]) -> SourceSpec:
    url = str(source.get("repoURL") or "").strip()
    if not url:
        problems.append("spec.source.repoURL is required")
    revision = str(source.get("targetRevision") or "HEAD").strip()
    if source.get("chart"):
        try:
            parse_constraint(revision)
        except ConstraintError as e:
            problems.append(f"spec.source.targetRevision {e}: give a chart version (1.2.3) or a range (1.2.*, "
                            "^1.2, >=1.2.0 <2.0.0)")
    elif not _SAFE_REVISION.match(revision) or revision.startswith("-") or ".." in revision:
        problems.append(f"spec.source.targetRevision {revision!r} is not a branch, tag or commit")
    path = normalize_path(str(source.get("path") or ""))
    if path is None:
        problems.append(f"spec.source.path {source.get('path')!r} must be relative and stay inside the repository")
        path = ""
    secret = source.get("secretRef") or {}
    return SourceSpec(url, revision, path, str(secret.get("name") or ""), parse_options(source, problems))


_REF_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_REMOTE = re.compile(r"^(https?|ssh|git)://[^/]|^[^/:]+:(?!//)")  # a URL with a host, or scp-like user@host:path


def is_local_url(url: str) -> bool:
    """Whether git would read ``url`` from this machine's filesystem (``file://``, a path, anything not remote)."""
    return not _REMOTE.match(url.strip())


LOGIN_KEYS: Final = ("password", "token", "sshPrivateKey", "identity")


def credentials_refusal(data: Mapping[str, str], *, secret: str, repo_url: str, project: str) -> str:
    """Why the repository Secret ``secret`` (its ``data``, base64) may not be used for ``repo_url`` by an
    Application of ``project`` ("" when it may). Argo CD's repo-creds model: a Secret holding a login names
    the URL prefixes it serves (``url``, several separated by commas or newlines) and, optionally, the
    projects that may use it (``project``/``projects``, comma-separated; none listed: any). A login is never
    sent over plain ``http://``. A Secret holding only a CA (``ca.crt``) is not a credential and is unscoped."""
    def get(key: str) -> str:
        try:
            return base64.b64decode(data.get(key) or "").decode()
        except (ValueError, UnicodeDecodeError):
            return ""

    if not any(data.get(key) for key in LOGIN_KEYS):
        return ""
    where = f"Secret {secret} (spec.source.secretRef)"
    if repo_url.strip().lower().startswith("http://"):
        return (f"{where} holds a login and repoURL {redact_url(repo_url)} is plain http://: credentials are never "
                "sent unencrypted; use an https:// URL")
    served = [u for u in re.split(r"[,\s]+", get("url")) if u]
    if not served:
        return (f"{where} does not name the repositories it serves: add the key url with the URL prefix its login "
                "is for (e.g. https://git.example.com/team-a/); it is sent to no other URL")
    if not any(_under(repo_url, prefix) for prefix in served):
        return (f"repoURL {redact_url(repo_url)} is not under the URLs {where} serves ({', '.join(served)}): its "
                "login is sent to those only")
    projects = [p for p in re.split(r"[,\s]+", get("project") + "," + get("projects")) if p]
    if projects and project not in projects:
        return f"{where} serves projects {', '.join(projects)} only, not project {project}"
    return ""


def _under(url: str, prefix: str) -> bool:
    """``url`` is ``prefix`` or below it (at a path boundary; userinfo in ``url`` ignored; an OCI registry's
    ``oci://`` is optional on either side, as Argo CD writes registry URLs without it)."""
    url, prefix = _without_userinfo(url.strip()).rstrip("/"), prefix.strip().rstrip("/")
    url, prefix = re.sub(r"^oci://", "", url, flags=re.I), re.sub(r"^oci://", "", prefix, flags=re.I)
    return url == prefix or url.startswith(prefix + "/") or (prefix.endswith(":") and url.startswith(prefix))


def _without_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def normalize_path(path: str) -> str | None:
    """``./services/a/`` → ``services/a``; ``.``/empty → ``""``; None when absolute or escaping."""
    if path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def parse_duration(text: str, *, what: str = "refreshInterval") -> float:
    """Seconds in a Go-style duration (``3s``, ``1m30s``, ``500ms``) or a bare number of seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{what} {text!r} is not a duration such as 3s, 1m or 500ms")
    return total


def format_duration(seconds: float) -> str:
    return f"{seconds:.3f}s"
