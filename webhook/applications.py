"""driftguard's own objects: what makes a change to an Application risky. No I/O.

An Application says what the reconciler deploys and how hard driftguard guards it, so a change to it
is a change to everything it manages. Its changes come from three places only: git (an Application
deployed by an app-of-apps Application is a managed object, judged by the ordinary rules), the
reconciler (its status and its finalizer bookkeeping; trusted by credential), and members of
``--admin-groups``. Anyone else is denied. Even an admin's change is recorded when it weakens the
guard or widens what the reconciler may delete:

* a downgrade of ``spec.enforcement`` (deny → warn → off; a missing field is ``deny``);
* removing ``spec.syncPolicy.automated``, or turning its ``prune``/``selfHeal`` off;
* any change of ``spec.source`` (where the desired state comes from);
* any change of ``metadata.finalizers`` (a cascading-delete finalizer makes deleting the Application
  delete what it manages), and deleting the Application.

And whoever makes it, a CREATE, or an UPDATE that changes ``spec.project``, ``spec.source.repoURL`` or
``spec.destination``, is judged against the Application's Project (``driftguard.core.projects``, the
rules the reconciler enforces at every sync), so a violation is seen at ``kubectl apply`` time: the HTTP
layer reads the Project (``needs_project``) and passes it in as a ``ProjectRead``; a Project that does
not exist (but ``default``, which is built in), cannot be parsed or could not be read is a denial (fail
closed), as is a repoURL, destination or namespace the project does not permit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from driftguard.core import contract, projects
from driftguard.core.names import NAMESPACE
from webhook.reviews import KubeObject, Request

GROUP: Final = "driftguard.io"
KIND: Final = "Application"
_RANK: Final = {"off": 0, "warn": 1, "deny": 2}
_COMPARED_METADATA: Final = ("labels", "annotations", "finalizers", "ownerReferences")


def is_application(request: Request) -> bool:
    kind = request["kind"]
    return kind["group"] == GROUP and kind["kind"] == KIND


@dataclass(frozen=True, slots=True)
class ProjectRead:
    """The Project an Application names, as read: ``obj`` None when it does not exist, ``error`` when unread."""

    name: str
    obj: KubeObject | None
    error: str = ""


def project_name(obj: Mapping[str, Any] | None) -> str:
    return str(_spec(obj).get("project") or projects.DEFAULT)


def needs_project(request: Request) -> bool:
    """Whether the request is judged against the Application's Project: a CREATE, or an UPDATE changing its
    project, repoURL or destination (an unrelated edit of an Application is never held against it)."""
    if not is_application(request) or request.get("subResource") or request["operation"] not in ("CREATE", "UPDATE"):
        return False
    if contract.is_managed(request.get("oldObject")):
        return False  # an app-of-apps' Application: judged as a managed object, and by the reconciler
    return request["operation"] == "CREATE" or _placement(request.get("oldObject")) != _placement(request.get("object"))


def project_denial(app: Mapping[str, Any], read: ProjectRead | None, *, project_namespace: str = NAMESPACE) -> str:
    """Why ``app`` may not be created this way under its Project ("" when it may)."""
    metadata = app.get("metadata") or {}
    where = f"Application {metadata.get('namespace')}/{metadata.get('name')}"
    name = project_name(app)
    if read is None:
        return f"{where}: its Project {name} could not be checked (the webhook has no cluster access configured)"
    if read.error:
        return f"{where}: its Project {project_namespace}/{name} could not be read ({read.error}); try again"
    if read.obj is None and name != projects.DEFAULT:
        return (f"{where}: Project {name} (spec.project) does not exist in namespace {project_namespace}; create it "
                "(kind: Project) or name an existing project")
    try:
        project = projects.parse_project(read.obj) if read.obj is not None else projects.builtin_default()
    except projects.ProjectError as e:
        return f"{where}: its project cannot be used: {e}; an admin must fix the Project"
    spec = _spec(app)
    destination = spec.get("destination")
    violation = None
    for repo_url in _repo_urls(spec) or [""]:
        violation = violation or projects.check_application(
            project, repo_url=repo_url, app_namespace=str(metadata.get("namespace") or ""),
            project_namespace=project_namespace,
            destination_namespace=str((destination if isinstance(destination, Mapping) else {}).get("namespace") or ""))
    if violation is None:
        return ""
    fix = "; choose a permitted namespace, or ask an admin to add it to the Project" \
        if violation.rule == "destinations" else ""
    return f"{where} violates its project: {violation}{fix}"


def _placement(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    spec = _spec(obj)
    return (project_name(obj), tuple(_repo_urls(spec)), spec.get("destination"))


def _repo_urls(spec: Mapping[str, Any]) -> list[str]:
    """Every repository an Application reads: ``spec.source``'s, or each of multi-source ``spec.sources``."""
    many = spec.get("sources")
    listed = many if isinstance(many, list) else [spec.get("source")]
    return [str(s.get("repoURL") or "") for s in listed if isinstance(s, Mapping)]


def changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether the request changes anything an Application means (not resourceVersion, managedFields…)."""
    return _meaning(old) != _meaning(new)


def risky_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """The changes that are always recorded, in words (``old`` None: a CREATE; ``new`` None: a DELETE)."""
    if new is None:
        return ["deletes the Application" + _cascade_note(old)]
    risky: list[str] = []
    before, after = _spec(old), _spec(new)
    was, now = _enforcement(before), _enforcement(after)
    if old is not None and _RANK.get(now, 0) < _RANK.get(was, 0):
        risky.append(f"downgrades spec.enforcement from {was} to {now}")
    risky += _automation_changes(before, after) if old is not None else []
    if old is not None and (before.get("source"), before.get("sources")) != (after.get("source"), after.get("sources")):
        risky.append("changes spec.source" if after.get("sources") is None else "changes spec.sources")
    added, removed = _finalizer_delta(old, new)
    if added:
        cascading = [f for f in added if f in contract.CASCADE_FINALIZERS]
        note = " (a cascading delete: deleting the Application then deletes what it manages)" if cascading else ""
        risky.append(f"adds finalizer {', '.join(added)}{note}")
    if removed:
        risky.append(f"removes finalizer {', '.join(removed)}")
    return risky


def _automation_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    was, now = _automated(before), _automated(after)
    if was is None:
        return []
    if now is None:
        return ["removes spec.syncPolicy.automated (no more automatic sync, prune or self-heal)"]
    return [f"turns spec.syncPolicy.automated.{key} off" for key in ("prune", "selfHeal")
            if was.get(key) is True and now.get(key) is not True]


def _automated(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    policy = spec.get("syncPolicy")
    automated = policy.get("automated") if isinstance(policy, Mapping) else None
    return automated if isinstance(automated, Mapping) else None


def _enforcement(spec: Mapping[str, Any]) -> str:
    value = spec.get("enforcement")
    return value if isinstance(value, str) and value in _RANK else "deny"


def _finalizer_delta(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    before, after = _finalizers(old), _finalizers(new)
    return [f for f in after if f not in before], [f for f in before if f not in after]


def _finalizers(obj: Mapping[str, Any] | None) -> list[str]:
    values = ((obj or {}).get("metadata") or {}).get("finalizers")
    return [str(v) for v in values] if isinstance(values, list) else []


def _cascade_note(obj: Mapping[str, Any] | None) -> str:
    cascading = [f for f in _finalizers(obj) if f in contract.CASCADE_FINALIZERS]
    return f" with finalizer {', '.join(cascading)} (a cascading delete of what it manages)" if cascading else ""


def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = (obj or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _meaning(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    if obj is None:
        return (None,)
    metadata = obj.get("metadata") or {}
    return (obj.get("spec"), *(metadata.get(key) or None for key in _COMPARED_METADATA))
