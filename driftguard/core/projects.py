"""Projects: what an Application may deploy, from where, and where it may live. Pure; no I/O.

The shape is Argo CD's ``AppProject`` (``driftguard.io/v1alpha1`` ``Project``), and so are the rules:

* ``sourceRepos`` — repoURL patterns an Application may take its source from;
* ``destinations`` — ``{server, namespace}`` patterns; an object's namespace (and a ``Namespace``
  object's own name) must match one;
* ``clusterResourceWhitelist`` / ``clusterResourceBlacklist`` — ``{group, kind}`` patterns for
  cluster-scoped objects: an empty or missing whitelist permits **none** (as in Argo CD);
* ``namespaceResourceWhitelist`` / ``namespaceResourceBlacklist`` — for namespaced objects: a
  *missing* whitelist permits all, an empty one none (as in Argo CD);
* ``sourceNamespaces`` — namespaces an Application of this project may live in, besides the namespace
  the Projects themselves live in (an Application there is always permitted, as in Argo CD's
  control-plane namespace);
* driftguard's own ``permitDriftguardServiceAccounts`` (default false): without it no pod template
  (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) may run as a ServiceAccount of
  driftguard's namespace — a pod holding the reconciler's token would be the reconciler.

Patterns are shell-style globs matched against the whole value (``*`` any run of characters, ``/``
included; ``?`` one character; ``[abc]`` one of them). A pattern starting with ``!`` denies: a value
matching any negated pattern is refused whatever else matches (Argo CD's rule for ``sourceRepos`` and
``destinations``). repoURLs are compared without a trailing ``/`` or ``.git``.

The built-in ``default`` project (``builtin_default``) is used when no Project named ``default``
exists: any repo, any destination but ``kube-system`` and driftguard's own namespace, every kind except
cluster-scoped RBAC, admission (webhook and admission-policy) configurations and driftguard's own
kinds. An admin widens it by creating a Project named ``default``, which then replaces it entirely.

Parsing raises ``ProjectError`` naming the field; evaluation returns the violated rule (a
``Violation``) or None, and never raises.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core.names import NAMESPACE
from driftguard.core.signatures import VerifyError, VerifySpec, parse_verify

GROUP: Final = "driftguard.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Project"
PLURAL: Final = "projects"
DEFAULT: Final = "default"
IN_CLUSTER: Final = "https://kubernetes.default.svc"
IN_CLUSTER_NAME: Final = "in-cluster"

# (group, kind) of objects carrying a pod template, and where its pod spec is.
POD_SPEC_PATHS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


class ProjectError(ValueError):
    """A Project that cannot be read; the message names the Project and the field."""


@dataclass(frozen=True, slots=True)
class GroupKind:
    group: str  # pattern; "" is the core group
    kind: str  # pattern

    def matches(self, group: str, kind: str) -> bool:
        return _glob(group, self.group) and _glob(kind, self.kind)

    def __str__(self) -> str:
        return f"{self.group or '(core)'}/{self.kind}"


@dataclass(frozen=True, slots=True)
class Destination:
    server: str  # pattern
    namespace: str  # pattern; "!" prefix denies

    def __str__(self) -> str:
        return f"{self.server} {self.namespace}"


@dataclass(frozen=True, slots=True)
class ServiceAccountPin:
    """``destinationServiceAccounts[i]``: writes to a destination ``namespace`` (pattern) go out as ServiceAccount
    ``sa_namespace``/``name`` (``sa_namespace`` "": the destination namespace itself)."""

    namespace: str  # pattern
    sa_namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule of ``project`` that something breaks: ``rule`` is the spec field, ``message`` says what and how."""

    project: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} (Project {self.project}, {self.rule})"


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    source_repos: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()
    cluster_whitelist: tuple[GroupKind, ...] = ()
    cluster_blacklist: tuple[GroupKind, ...] = ()
    namespace_whitelist: tuple[GroupKind, ...] | None = None  # None: every namespaced kind
    namespace_blacklist: tuple[GroupKind, ...] = ()
    source_namespaces: tuple[str, ...] = ()
    permit_driftguard_service_accounts: bool = False
    service_accounts: tuple[ServiceAccountPin, ...] = ()  # destinationServiceAccounts, in order
    builtin: bool = False
    resource_version: str = ""
    verify: VerifySpec | None = None  # spec.verify: signatures every Application of the project must carry

    @property
    def described(self) -> str:
        return f"{self.name} (built in)" if self.builtin else self.name


# ---------------------------------------------------------------- the built-in default

DEFAULT_CLUSTER_BLACKLIST: Final = (
    GroupKind("rbac.authorization.k8s.io", "ClusterRole"),
    GroupKind("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    GroupKind("admissionregistration.k8s.io", "*"),  # webhook configurations, admission policies, bindings
    GroupKind(GROUP, "*"),
)
DEFAULT_NAMESPACE_BLACKLIST: Final = (GroupKind(GROUP, "*"),)  # Application, Project


def builtin_default(system_namespace: str = NAMESPACE) -> Project:
    """The ``default`` project when none is declared: safe for a tenant, wide for everything else."""
    return Project(
        name=DEFAULT,
        source_repos=("*",),
        destinations=(Destination("*", "*"), Destination("*", "!kube-system"),
                      Destination("*", f"!{system_namespace}")),
        cluster_whitelist=(GroupKind("*", "*"),),
        cluster_blacklist=DEFAULT_CLUSTER_BLACKLIST,
        namespace_whitelist=None,
        namespace_blacklist=DEFAULT_NAMESPACE_BLACKLIST,
        builtin=True,
    )


# ---------------------------------------------------------------- parsing

def parse_project(obj: Mapping[str, Any]) -> Project:
    """The Project in ``obj`` (a live ``driftguard.io/v1alpha1`` Project); ``ProjectError`` naming the field."""
    metadata = obj.get("metadata")
    name = str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""
    where = f"Project {name or '(unnamed)'}"
    if not name:
        raise ProjectError(f"{where}: metadata.name is required")
    spec = obj.get("spec", {})
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ProjectError(f"{where}: spec must be an object")
    whitelist = spec.get("namespaceResourceWhitelist")
    permit = spec.get("permitDriftguardServiceAccounts", False)
    if not isinstance(permit, bool):
        raise ProjectError(f"{where}: spec.permitDriftguardServiceAccounts must be true or false")
    try:
        verify = parse_verify(spec.get("verify"), "spec.verify")
    except VerifyError as e:
        raise ProjectError(f"{where}: {e}") from e
    return Project(
        name=name,
        source_repos=_patterns(spec, "sourceRepos", where),
        destinations=_destinations(spec, where),
        cluster_whitelist=_group_kinds(spec, "clusterResourceWhitelist", where),
        cluster_blacklist=_group_kinds(spec, "clusterResourceBlacklist", where),
        namespace_whitelist=None if whitelist is None else _group_kinds(spec, "namespaceResourceWhitelist", where),
        namespace_blacklist=_group_kinds(spec, "namespaceResourceBlacklist", where),
        source_namespaces=_patterns(spec, "sourceNamespaces", where),
        permit_driftguard_service_accounts=permit,
        service_accounts=_service_accounts(spec, where),
        resource_version=str(metadata.get("resourceVersion") or "") if isinstance(metadata, Mapping) else "",
        verify=verify,
    )


def _list(spec: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = spec.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProjectError(f"{where}: spec.{field} must be a list")
    return value


def _patterns(spec: Mapping[str, Any], field: str, where: str) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_list(spec, field, where)):
        if not isinstance(item, str) or not item.strip() or item.strip() == "!":
            raise ProjectError(f"{where}: spec.{field}[{i}] must be a non-empty string pattern, not {item!r}")
        out.append(item.strip())
    return tuple(out)


def _destinations(spec: Mapping[str, Any], where: str) -> tuple[Destination, ...]:
    out = []
    for i, item in enumerate(_list(spec, "destinations", where)):
        field = f"spec.destinations[{i}]"
        if not isinstance(item, Mapping):
            raise ProjectError(f"{where}: {field} must be an object with server (or name) and namespace")
        for key in ("server", "name", "namespace"):
            if key in item and not isinstance(item[key], str):
                raise ProjectError(f"{where}: {field}.{key} must be a string")
        namespace = str(item.get("namespace") or "").strip()
        if not namespace or namespace == "!":
            raise ProjectError(f"{where}: {field}.namespace is required (a pattern, e.g. team-a-* or *)")
        # Only the in-cluster destination exists: server (or Argo CD's name) defaults to any, i.e. it.
        server = str(item.get("server") or "").strip() or str(item.get("name") or "").strip() or "*"
        out.append(Destination(server, namespace))
    return tuple(out)


def _service_accounts(spec: Mapping[str, Any], where: str) -> tuple[ServiceAccountPin, ...]:
    out = []
    for i, item in enumerate(_list(spec, "destinationServiceAccounts", where)):
        field = f"spec.destinationServiceAccounts[{i}]"
        if not isinstance(item, Mapping):
            raise ProjectError(f"{where}: {field} must be an object with namespace and defaultServiceAccount")
        namespace, account = item.get("namespace"), item.get("defaultServiceAccount")
        if not isinstance(namespace, str) or not namespace.strip() or namespace.strip().startswith("!"):
            raise ProjectError(f"{where}: {field}.namespace is required (a destination namespace pattern, e.g. team-a)")
        if not isinstance(account, str) or not account.strip() or account.count(":") > 1:
            raise ProjectError(f"{where}: {field}.defaultServiceAccount is required: name (in the destination "
                               f"namespace) or namespace:name, not {account!r}")
        sa_namespace, _, name = account.strip().rpartition(":")
        out.append(ServiceAccountPin(namespace.strip(), sa_namespace, name))
    return tuple(out)


def _group_kinds(spec: Mapping[str, Any], field: str, where: str) -> tuple[GroupKind, ...]:
    out = []
    for i, item in enumerate(_list(spec, field, where)):
        at = f"spec.{field}[{i}]"
        if not isinstance(item, Mapping):
            raise ProjectError(f"{where}: {at} must be an object with group and kind")
        group, kind = item.get("group", ""), item.get("kind")
        if not isinstance(group, str):
            raise ProjectError(f"{where}: {at}.group must be a string (\"\" for the core group, * for any)")
        if not isinstance(kind, str) or not kind:
            raise ProjectError(f"{where}: {at}.kind is required (a kind such as Deployment, or *)")
        out.append(GroupKind(group.strip(), kind.strip()))
    return tuple(out)


# ---------------------------------------------------------------- evaluation

def check_application(
    project: Project, *, repo_url: str, app_namespace: str, destination_namespace: str, project_namespace: str,
) -> Violation | None:
    """Whether an Application (in ``app_namespace``) may use ``project`` with this source and destination."""
    if app_namespace != project_namespace and not permitted(app_namespace, project.source_namespaces):
        return Violation(project.described, "sourceNamespaces", (
            f"Applications in namespace {app_namespace} may not use this project: its sourceNamespaces "
            f"({_listed(project.source_namespaces)}) do not include it; add the namespace to the Project's "
            f"spec.sourceNamespaces, or create the Application in {project_namespace}"))
    if not permitted(normalize_repo(repo_url), [_repo_pattern(p) for p in project.source_repos]):
        return Violation(project.described, "sourceRepos", (
            f"repoURL {repo_url} is not one of the project's sourceRepos ({_listed(project.source_repos)}); "
            "use a permitted repository, or ask an admin to add it to the Project"))
    if destination_namespace:
        return check_namespace(project, destination_namespace, what=f"destination namespace {destination_namespace}")
    return None


def check_object(
    project: Project, *, group: str, kind: str, namespace: str, service_account: str | None = None,
    system_namespace: str = NAMESPACE,
) -> Violation | None:
    """Whether an object of ``group``/``kind`` (cluster-scoped iff ``namespace`` is "") is permitted.

    ``service_account``: the pod template's ServiceAccount (``pod_service_account``), None when the object
    has no pod template. A ``Namespace`` object is also judged as a destination (its own name).
    """
    gk = f"{kind}.{group}" if group else kind
    if namespace:
        violation = check_namespace(project, namespace, what=f"namespace {namespace}")
        if violation is not None:
            return violation
        if project.namespace_whitelist is not None and not any(
                p.matches(group, kind) for p in project.namespace_whitelist):
            return Violation(project.described, "namespaceResourceWhitelist",
                             f"kind {gk} is not in the project's namespaceResourceWhitelist "
                             f"({_listed(map(str, project.namespace_whitelist))})")
        blocked = next((p for p in project.namespace_blacklist if p.matches(group, kind)), None)
        if blocked is not None:
            return Violation(project.described, "namespaceResourceBlacklist",
                             f"kind {gk} is in the project's namespaceResourceBlacklist ({blocked})")
    else:
        if not any(p.matches(group, kind) for p in project.cluster_whitelist):
            return Violation(project.described, "clusterResourceWhitelist",
                             f"cluster-scoped kind {gk} is not in the project's clusterResourceWhitelist "
                             f"({_listed(map(str, project.cluster_whitelist))})")
        blocked = next((p for p in project.cluster_blacklist if p.matches(group, kind)), None)
        if blocked is not None:
            return Violation(project.described, "clusterResourceBlacklist",
                             f"cluster-scoped kind {gk} is in the project's clusterResourceBlacklist ({blocked})")
    if service_account is not None and namespace == system_namespace and not project.permit_driftguard_service_accounts:
        return Violation(project.described, "permitDriftguardServiceAccounts", (
            f"its pods would run as ServiceAccount {namespace}/{service_account}, one of driftguard's own "
            "(a pod holding that token acts as driftguard)"))
    return None


def check_namespace(project: Project, namespace: str, *, what: str) -> Violation | None:
    allowed = [d.namespace for d in project.destinations if _server_matches(d.server)]
    if permitted(namespace, allowed):
        return None
    return Violation(project.described, "destinations", (
        f"{what} is not one of the project's destinations ({_listed(str(d.namespace) for d in project.destinations)})"))


def check_manifest(project: Project, obj: Mapping[str, Any], *, system_namespace: str = NAMESPACE) -> Violation | None:
    """``check_object`` for a placed manifest (namespace set iff namespaced)."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    if (group, kind) == ("", "Namespace"):
        violation = check_namespace(project, str(metadata.get("name") or ""),
                                    what=f"Namespace {metadata.get('name')}")
        if violation is not None:
            return violation
    return check_object(project, group=group, kind=kind, namespace=namespace,
                        service_account=pod_service_account(obj), system_namespace=system_namespace)


def pod_service_account(obj: Mapping[str, Any]) -> str | None:
    """The ServiceAccount an object's pods run as ("default" when unset); None when it has no pod template."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    path = POD_SPEC_PATHS.get((group, str(obj.get("kind") or "")))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    spec = node if isinstance(node, Mapping) else {}
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    return str(name)


def permitted(value: str, patterns: Sequence[str]) -> bool:
    """Argo CD's rule: some pattern matches and no ``!``-pattern does."""
    allowed = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if _glob(value, pattern[1:]):
                return False
        elif _glob(value, pattern):
            allowed = True
    return allowed


def normalize_repo(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def _repo_pattern(pattern: str) -> str:
    negated = pattern.startswith("!")
    body = normalize_repo(pattern[1:] if negated else pattern)
    return f"!{body}" if negated else body


def _server_matches(server: str) -> bool:
    return _glob(IN_CLUSTER, server) or server == IN_CLUSTER_NAME


def _glob(value: str, pattern: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


def _listed(values: Iterable[str]) -> str:
    items = list(values)
    return ", ".join(items) if items else "none"
