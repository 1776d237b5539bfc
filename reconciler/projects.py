"""Reading an Application's Project (``driftguard.io/v1alpha1``, in the Projects' namespace), once per full sync.

One GET per full sync (a no-op poll reads nothing); a change of a Project is heard through the
controller's watch, which forces a full sync of the Applications naming it, so the change takes
effect at once. The decisions are ``driftguard.core.projects``'; this module only finds the Project:

* a Project of the Application's ``spec.project`` name, parsed (an unreadable one is ``InvalidProject``);
* none, and the name is ``default``: the built-in default (safe for tenants);
* none otherwise (or the Project CRD not installed): ``ProjectNotFound`` — nothing is applied or pruned.
"""

from __future__ import annotations

from typing import Final

from driftguard.core import projects
from driftguard.core.projects import Project, ProjectError
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.crd import PROJECTS
from reconciler.status import Problem

CONDITION: Final = "ProjectPermitted"


class ProjectUnavailable(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class ProjectSource:
    """The Projects of one reconciler: ``namespace`` holds them; ``system_namespace`` is driftguard's own."""

    def __init__(self, cluster: Cluster, namespace: str, system_namespace: str) -> None:
        self.cluster, self.namespace, self.system_namespace = cluster, namespace, system_namespace

    def get(self, name: str) -> Project:
        """The Project ``name``; ``ProjectUnavailable`` with the problem to report otherwise."""
        try:
            live = self.cluster.get(PROJECTS, self.namespace, name)
        except ResourceError as e:
            raise ProjectUnavailable(Problem(CONDITION, "ProjectUnreadable", (
                f"Project {self.namespace}/{name} (spec.project) could not be read: {e}; nothing applied or "
                "pruned"))) from e
        if live is None:
            if name == projects.DEFAULT:
                return projects.builtin_default(self.system_namespace)
            raise ProjectUnavailable(Problem(CONDITION, "ProjectNotFound", (
                f"Project {name} (spec.project) does not exist in namespace {self.namespace}; nothing applied or "
                f"pruned. Create it (kind: Project, namespace {self.namespace}) or name an existing project")))
        try:
            return projects.parse_project(live)
        except ProjectError as e:
            raise ProjectUnavailable(Problem(CONDITION, "InvalidProject", f"{e}; nothing applied or pruned")) from e
