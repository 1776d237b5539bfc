"""One sync of one Application, as a pipeline that reads on one screen.

    load inventory → project → resolve revision → render → place & stamp → refuse what the project
    does not permit → record the inventory-to-be → apply in order → new inventory → prune stale in
    reverse → report

Safety rules live here, in plain sight: a spec, project, source or render problem stops the cycle
before anything is applied *or pruned* (the project is checked before git is even fetched: a repository
the project does not permit is never contacted); an object the project does not permit is neither
applied nor pruned (an inventory entry for it stays), and the report names each with its rule; an
empty render is a problem unless ``allowEmpty``; the inventory is saved (old plus new) *before*
anything new is created, so a reconciler killed mid-sync still knows, when it restarts, every object
it may have created; prune deletes only inventory entries (never objects found by label) and only
those still stamped as this Application's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driftguard.core import actors, phases, projects
from driftguard.core.changes import Action, ChangeSet
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.manifests import Manifest, ManifestError
from driftguard.core.names import NAMESPACE
from driftguard.core.objects import ObjectRef
from driftguard.kube.resources import NAMESPACES, Cluster, ResourceError, UnknownKind
from reconciler import desired as desired_set
from reconciler import sources
from reconciler.application import AppSpec, SourceSpec, credentials_refusal, is_local_url
from reconciler.apply import Applier, Mode, Outcome
from reconciler.chartsource import ChartSource, unpack_archive
from reconciler.desired import Desired
from reconciler.gitsource import Credentials, GitSource, SourceError
from reconciler.hooks import HookRun
from reconciler.ociref import is_oci, parse_reference
from reconciler.ocisource import OCISource, Resolved
from reconciler.projects import ProjectSource, ProjectUnavailable
from reconciler.render import render
from reconciler.renderer import Renderer, RenderError
from reconciler.revision import Revision, redact_url
from reconciler.sources import RenderOptions
from reconciler.status import Problem, SyncReport
from reconciler.verification import Refused, SourceVerification
from reconciler.waves import WaveResult, Waves

log = logging.getLogger(__name__)

SECRETS_V1 = ("v1", "Secret")
REFS_DIR = ".driftguard-refs"  # where spec.sources' ref sources are exported, inside the rendered tree
TRANSIENT = frozenset({"RenderTimeout", "FetchFailed"})  # render problems retried for the same revision


class Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(slots=True)
class Memory:
    """What the controller keeps about one Application between cycles."""

    inventory: Inventory = field(default_factory=Inventory)
    render_key: tuple[str, ...] = ()
    desired: list[Desired] = field(default_factory=list)
    renderer: str = ""  # what rendered ``desired``
    empty: str = ""  # why ``desired`` is empty, when it is
    failed_key: tuple[str, ...] = ()  # a render that failed for this key is not retried
    failed: Problem | None = None
    applier: Applier | None = None  # the last sync's (acting as its ServiceAccount): self-heal uses it too
    hooks: tuple[HookRun, ...] = ()  # the hooks of the last sync that ran any (status shows them)
    hooks_ran: bool = False  # whether the last sync ran them
    post_deleted: bool = False  # the PostDelete hooks ran (the Application is being deleted)


@dataclass(slots=True)
class Result:
    report: SyncReport
    outcomes: list[Outcome] = field(default_factory=list)
    desired: list[Desired] = field(default_factory=list)
    inventory: Inventory = field(default_factory=Inventory)


class Reconciler:
    def __init__(
        self, cluster: Cluster, source: GitSource, applier: Applier, *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        uncovered: Callable[[str], str] = lambda _: "", projects: ProjectSource | None = None,
        renderer: Renderer | None = None, rendered: Callable[[str, str, float], None] = lambda *_: None,
        allow_local: bool = False, oci_plain_http_loopback: bool = False, default_service_account: str = "",
        wave_timeout: float = 300.0,
    ) -> None:
        """``uncovered(namespace)``: why the webhook does not cover it ("" when it does); ``projects``: where
        Projects are read (default: in the namespace of the Application, driftguard's own as the system's);
        ``allow_local``: whether ``file://`` URLs and local paths are sources (``--allow-local-repos``);
        ``oci_plain_http_loopback``: whether OCI registries on loopback are spoken to over plain http;
        ``default_service_account``: what an Application names none applies as (``--default-service-account``)."""
        self.cluster, self.source, self.applier, self._clock = cluster, source, applier, clock
        self._uncovered = uncovered
        self.projects = projects
        self.renderer = renderer or Renderer()
        self.charts = ChartSource()
        self.oci = OCISource(plain_http_loopback=oci_plain_http_loopback)
        self._rendered = rendered  # (renderer, or the failure's reason; "ok" | "failed"; seconds): for metrics
        self.allow_local = allow_local
        self.default_service_account = default_service_account
        self.waves = Waves(timeout=wave_timeout, clock=clock)
        self.verification = SourceVerification(cluster, source)

    def reconcile(
        self, app: AppSpec, memory: Memory, *, save_inventory: Callable[[Inventory], None],
        on_desired: Callable[[list[Desired]], None] = lambda _: None, revision: Revision | None = None,
        project: projects.Project | None = None, on_demand: bool = False,
    ) -> Result:
        """Sync ``app`` once (at ``revision`` when already resolved, under ``project`` when already checked by
        ``project``); ``memory`` is updated in place. ``on_demand``: a sync someone asked for runs its hooks even
        when nothing is out of sync (Argo CD's manual sync); the automated one only when something is."""
        start = time.monotonic()
        report = SyncReport(target=app.source.target_revision, started=self._clock(), duration=0.0)
        old = memory.inventory
        result = Result(report, inventory=old)
        try:
            if app.problems:
                raise Stop(Problem("SpecValid", "InvalidSpec", "; ".join(app.problems)))
            project = project or self.project(app)
            report.project = project.described
            applier, actor = self.applier_for(app, project)
            memory.applier, report.actor = applier, f"{actor.namespace}/{actor.name}" if actor else ""
            self._refuse_local(app)
            credentials = self._credentials(app)  # one Secret read per full sync; its cache partition too
            report.revision = self._verify(app, project, report, revision or self._resolve(app, credentials),
                                           credentials)  # spec.verify: signatures checked before anything is read
            rendered = self._desired(app, report.revision, memory, credentials)
            report.renderer = memory.renderer
            desired, refused = self._permitted(project, rendered)
            report.refused = tuple((d.ref, str(v)) for d, v in refused)
            desired, hooks, skipped = _split(desired)
            self._refuse_uncovered(desired)
            report.rendered, result.desired = len(rendered), desired
            on_desired(desired)
            # A refused object is not applied, and not pruned either: an entry it already had is kept.
            new = desired_set.inventory_of(desired).merge(e for e in desired_set.inventory_of(
                [*(d for d, _ in refused if not d.hook), *skipped]).entries if e in old.entries)
            if app.automated and not new.entries <= old.entries:
                save_inventory(old.merge(new.entries))  # before creating anything
            if app.automated:
                self._ensure_namespace(app, applier.cluster)
            prunable, keep = self._stale(app, project, old, new, report, cluster=applier.cluster)
            mode = Mode(apply=app.automated, self_heal=app.self_heal)
            not_reached: set[ObjectRef] = set()
            if not app.automated:
                result.outcomes = applier.sync_all(desired, mode)
            else:
                waved = self._sync_waves(app, applier, desired, hooks, prunable, mode=mode, memory=memory,
                                         on_demand=on_demand)
                result.outcomes, not_reached = waved.outcomes, waved.not_reached
                keep += waved.keep
                report.pruned = ChangeSet([o.change for o in waved.pruned])
                report.problem = waved.problem
            report.hooks, report.hooks_ran = memory.hooks, bool(memory.hooks_ran)
            report.applied = ChangeSet([o.change for o in result.outcomes])
            report.out_of_sync = tuple(str(o.change) for o in result.outcomes
                                       if o.change.action is Action.SKIPPED and o.drift is None)
            result.inventory = memory.inventory = _kept(new, result.outcomes, old, not_reached).merge(keep)
        except Stop as e:
            report.problem = e.problem
        except ResourceError as e:
            report.problem = Problem("Applied", "ApiError", str(e))
        report.duration = time.monotonic() - start
        return result

    def _stale(self, app: AppSpec, project: projects.Project, old: Inventory, new: Inventory, report: SyncReport, *,
               cluster: Cluster) -> tuple[list[tuple[Entry, phases.Traits]], list[Entry]]:
        """What to prune (with its sync options), and the stale entries to keep; ``report`` names those kept."""
        stale, keep = old.stale(new), list[Entry]()
        # Nothing is pruned where the project no longer reaches: it stays, in the inventory, and is named.
        barred = [(e, v) for e in stale if (v := self._prune_violation(project, e)) is not None]
        if barred:
            report.refused += tuple((e.ref, f"no longer in git, not pruned: {v}") for e, v in barred)
            keep, stale = [e for e, _ in barred], [e for e in stale if e not in {b for b, _ in barred}]
        traits = self._live_traits(stale, cluster)
        if app.automated and app.prune:
            # Prune=false on the object: kept, and the Application stays OutOfSync (as in Argo CD).
            held = [e for e in stale if not traits[e].prune]
            prunable = [(e, traits[e]) for e in stale if traits[e].prune]
        else:
            held, prunable = stale, []
        report.pending_prune = tuple(e.ref for e in held if not traits[e].ignore_extraneous)  # IgnoreExtraneous
        return prunable, keep + held

    def _sync_waves(self, app: AppSpec, applier: Applier, desired: list[Desired], hooks: list[Desired],
                    prunable: list[tuple[Entry, phases.Traits]], *, mode: Mode, memory: Memory,
                    on_demand: bool = False) -> WaveResult:
        """Apply and prune phase by phase, wave by wave (``reconciler.waves``). A plan of one step without
        hooks is one pass, as it always was; otherwise hooks and waits happen only when something is out of
        sync (a resync of an Application in sync runs no hook and writes nothing)."""
        steps = phases.plan(((d, d.traits) for d in desired), ((h, h.traits) for h in hooks), prunable,
                            prune_last=app.prune_last)
        memory.hooks_ran = False
        if phases.phased(steps) and not on_demand and not prunable and not applier.out_of_sync(desired, mode):
            steps = [phases.Step(phases.Phase.SYNC, 0, apply=tuple(desired))]  # in sync: one pass, no hook
        if not steps:
            return WaveResult()
        waved = self.waves.sync(str(app.key), applier, steps, hooks, mode)
        if waved.hooks:
            memory.hooks, memory.hooks_ran = tuple(waved.hooks), True
        return waved

    def _live_traits(self, entries: list[Entry], cluster: Cluster) -> dict[Entry, phases.Traits]:
        """The sync options of stale objects, from their live annotations (git's last manifest of them); an
        object that cannot be read, or whose options cannot be, has the defaults."""
        out: dict[Entry, phases.Traits] = {}
        for entry in entries:
            traits = phases.RESOURCE
            try:
                rt = cluster.discovery.resolve(entry.api_version, entry.ref.kind)
                live = cluster.get(rt, entry.ref.namespace, entry.ref.name)
                traits = phases.traits(live) if live is not None else traits
            except (ResourceError, UnknownKind, phases.PhaseError):
                pass
            out[entry] = traits
        return out

    def project(self, app: AppSpec) -> projects.Project:
        """The Application's Project, checked against its source, namespace and destination (``Stop``
        with the rule broken otherwise)."""
        source = self.projects or ProjectSource(self.cluster, app.key.namespace, NAMESPACE)
        try:
            project = source.get(app.project)
        except ProjectUnavailable as e:
            raise Stop(e.problem) from e
        violation = None
        for repo_url in (app.source.repo_url, *(ref.repo_url for _, ref in (*app.refs, *app.extra_sources))):
            violation = violation or projects.check_application(
                project, repo_url=repo_url, app_namespace=app.key.namespace,
                destination_namespace=app.destination_namespace, project_namespace=source.namespace)
        if violation is not None:
            raise Stop(Problem("ProjectPermitted", "ProjectViolation", f"{violation}; nothing applied or pruned"))
        return project

    def applier_for(self, app: AppSpec, project: projects.Project) -> tuple[Applier, actors.Actor | None]:
        """The applier for ``app``'s objects: acting as its ServiceAccount (``driftguard.core.actors``) when it has
        one, else the reconciler's own (``Stop`` naming the rule when the choice is refused)."""
        actor = actors.choose(project, requested=app.service_account, app_namespace=app.key.namespace,
                              destination_namespace=app.destination_namespace,
                              default=self.default_service_account,
                              system_namespace=self.projects.system_namespace if self.projects else NAMESPACE)
        if actor is None:
            return self.applier, None
        if isinstance(actor, projects.Violation):
            raise Stop(Problem("ProjectPermitted", "ServiceAccountRefused", f"{actor}; nothing applied or pruned"))
        key = self.applier.marks.key
        if key is None:
            raise Stop(Problem("ProjectPermitted", "ServiceAccountRefused", (
                f"{actor} ({actor.by}) cannot be used: the webhook knows the reconciler's impersonated writes only by "
                "a seal under the mark key, and none is configured (--mark-key-file); nothing applied or pruned")))
        self._check_account(actor)
        return self.applier.acting_as(self.cluster.acting_as(
            actor.username, lambda: {actors.EXTRA: actors.seal(key, actor.username, self._clock())})), actor

    def _check_account(self, actor: actors.Actor) -> None:
        """A ServiceAccount that does not exist is named (impersonating it would succeed, every write fail)."""
        try:
            found = self.cluster.get(self.cluster.discovery.resolve("v1", "ServiceAccount"), actor.namespace,
                                     actor.name)
        except ResourceError as e:
            if e.status == 403:
                return  # not ours to read: the writes will say
            raise
        if found is None:
            raise Stop(Problem("ProjectPermitted", "ServiceAccountNotFound", (
                f"{actor} ({actor.by}) does not exist; create it, with RBAC for what git declares, in "
                f"{actor.namespace}; nothing applied or pruned")))

    def _permitted(self, project: projects.Project, desired: list[Desired]
                   ) -> tuple[list[Desired], list[tuple[Desired, projects.Violation]]]:
        """``desired`` split into what ``project`` permits and what it refuses (with the rule)."""
        system = self.projects.system_namespace if self.projects else NAMESPACE
        ok: list[Desired] = []
        refused: list[tuple[Desired, projects.Violation]] = []
        for d in desired:
            violation = projects.check_manifest(project, d.obj, system_namespace=system)
            if violation is None:
                ok.append(d)
            else:
                refused.append((d, violation))
        return ok, refused

    def _prune_violation(self, project: projects.Project, entry: Entry) -> projects.Violation | None:
        """Whether ``project`` bars deleting ``entry``'s object (its kind or namespace is outside the project)."""
        ref = entry.ref
        if (ref.group, ref.kind) == ("", "Namespace"):
            barred = projects.check_namespace(project, ref.name, what=f"Namespace {ref.name}")
            if barred is not None:
                return barred
        return projects.check_object(project, group=ref.group, kind=ref.kind, namespace=ref.namespace)

    def render_desired(self, app: AppSpec) -> tuple[Revision, list[Desired]]:
        """The revision git's target resolves to and the stamped desired set there, as a full sync would render
        it (``Stop`` with the problem otherwise); nothing is applied (``driftguard diff``)."""
        if app.problems:
            raise Stop(Problem("SpecValid", "InvalidSpec", "; ".join(app.problems)))
        self._refuse_local(app)
        credentials = self._credentials(app)
        revision = self._resolve(app, credentials)
        return revision, self._desired(app, revision, Memory(), credentials)

    def resolve(self, app: AppSpec) -> Revision:
        """Fetch the source and resolve the target revision (``Stop`` with the problem otherwise)."""
        self._refuse_local(app)
        return self._resolve(app, self._credentials(app))

    def _verify(self, app: AppSpec, project: projects.Project, report: SyncReport, resolved: Revision,
                credentials: Credentials | None) -> Revision:
        """``resolved`` with its verified signer when spec.verify (the Application's or its Project's) asks for
        signatures; ``Stop`` (SourceVerified) before anything is rendered, applied or pruned otherwise (the
        report names ``resolved`` either way)."""
        report.revision = resolved
        namespace = self.projects.namespace if self.projects else app.key.namespace
        policy = self.verification.policy(app, project, namespace)
        if policy is None:
            return resolved
        report.verification = policy.described
        try:
            return self.verification.check(app, policy, resolved, lambda ref: credentials if ref is None
                                           else self._credentials(app, ref))
        except Refused as e:
            raise Stop(e.problem) from e

    def _refuse_local(self, app: AppSpec, source: SourceSpec | None = None) -> None:
        url = (source or app.source).repo_url
        if (source or app.source).render.chart:
            return  # a chart repository or registry is always fetched over the network, never read from disk
        if is_local_url(url) and not self.allow_local:
            raise Stop(Problem("SourceReady", "LocalSourceRefused", (
                f"repoURL {url} is a file:// URL or a local path, which this reconciler does not "
                "read (one could read another Application's repository from its git cache); use an https or ssh "
                "URL, or run the reconciler with --allow-local-repos (local mode and tests); nothing applied or "
                "pruned")))

    def _resolve(self, app: AppSpec, credentials: Credentials | None) -> Revision:
        """The rendered source's revision, carrying the commit of each ``ref`` source and the revision of each
        further rendered source (spec.sources); for a chart, its archive's or manifest's digest."""
        try:
            revision = self._resolve_source(app.source, credentials)
            refs, extra = [], []
            for name, ref in app.refs:
                self._refuse_local(app, ref)
                resolved = self.source.resolve(ref.repo_url, ref.target_revision, self._credentials(app, ref))
                refs.append((name, resolved.sha))
            for name, source in app.extra_sources:
                self._refuse_local(app, source)
                extra.append(self._resolve_source(source, self._credentials(app, source)))
                refs.append((name, extra[-1].sha))
        except SourceError as e:
            raise Stop(Problem("SourceReady", e.reason, f"{e}; nothing applied or pruned")) from e
        return dataclasses.replace(revision, refs=tuple(refs), sources=tuple(extra)) if refs else revision

    def _resolve_source(self, source: SourceSpec, credentials: Credentials | None) -> Revision:
        chart, url = source.render.chart, source.repo_url
        if chart and is_oci(url, chart):
            return self.oci.resolve(parse_reference(url, chart), source.target_revision, credentials)
        if chart:
            return self.charts.resolve(url, chart, source.target_revision, credentials)
        return self.source.resolve(url, source.target_revision, credentials)

    def _desired(self, app: AppSpec, revision: Revision, memory: Memory,
                 credentials: Credentials | None = None) -> list[Desired]:
        """The stamped desired set, rendered once per (revision, placement-relevant spec, render options); a
        render that failed is not retried for the same key (unless it timed out)."""
        key = (revision.sha, str(app.key), app.source.repo_url, app.source.path, app.enforcement,
               app.destination_namespace, app.source.render.key, repr(revision.refs), repr(app.refs),
               repr(app.extra_sources),
               revision.verified_by)
        if memory.render_key != key:
            if memory.failed_key == key and memory.failed is not None:
                raise Stop(memory.failed)
            # read before rendering: a Secret that is refused now is retried, not remembered as a failed render
            logins = [self._credentials(app, source) for _, source in app.extra_sources]
            started = time.monotonic()
            try:
                manifests, memory.renderer, memory.empty = self._render(app, revision, credentials)
                desired = self._build(manifests, app, revision)
                if app.extra_sources:
                    desired, memory.renderer = self._combined(app, revision, desired, memory.renderer, logins)
            except Stop as e:
                self._rendered(e.problem.reason, "failed", time.monotonic() - started)
                if e.problem.reason not in TRANSIENT:
                    memory.failed_key, memory.failed = key, e.problem
                raise
            self._rendered(memory.renderer.split(" ", 1)[0], "ok", time.monotonic() - started)
            memory.render_key, memory.desired = (key, desired) if all(d.scope_known for d in desired) else ((), [])
        else:
            desired = memory.desired
        if not desired and not app.allow_empty:  # judged every cycle: allowEmpty may change, the render not
            raise Stop(Problem("RenderReady", "EmptyRender", memory.empty))
        return desired

    def _build(self, manifests: list[Manifest], app: AppSpec, revision: Revision) -> list[Desired]:
        try:
            return desired_set.build(manifests, app=app, revision=revision, scope=self._scope)
        except ManifestError as e:
            raise Stop(Problem("RenderReady", "InvalidManifest",
                               f"{e} (at {revision.short}; nothing from this revision applied or pruned)")) from e

    def _combined(self, app: AppSpec, revision: Revision, desired: list[Desired], by: str,
                  logins: list[Credentials | None]) -> tuple[list[Desired], str]:
        """``desired`` (the first rendered source's) with the objects of every further rendered source, each
        rendered by its own renderer at its own revision and stamped with its own repository; an object two
        sources declare is refused, naming both (Argo CD's RepeatedResourceWarning): nothing is applied."""
        origin = {d.ref: (app.source_name, app.source, d.path) for d in desired}
        combined, labels = list(desired), [by]
        for (name, source), resolved, login in zip(app.extra_sources, revision.sources, logins, strict=True):
            view = dataclasses.replace(app, source=source)
            at = dataclasses.replace(resolved, refs=revision.refs)
            manifests, label, _ = self._render(view, at, login)
            for d in self._build(manifests, view, resolved):
                if d.ref in origin:
                    first, where, path = origin[d.ref]
                    raise Stop(Problem("RenderReady", "RepeatedResource", (
                        f"{d.ref} is declared by {first} ({_where(where, path)}) and by spec.{name} "
                        f"({_where(source, d.path)}): an object has one source; remove it from one of them "
                        f"(Argo CD's RepeatedResourceWarning); nothing applied or pruned")))
                origin[d.ref] = (f"spec.{name}", source, d.path)
                combined.append(d)
            labels.append(label)
        return combined, ", ".join(dict.fromkeys(labels))

    def _render(self, app: AppSpec, revision: Revision,
                credentials: Credentials | None = None) -> tuple[list[Manifest], str, str]:
        """The manifests of ``app``'s path at ``revision``, which renderer made them, and what to say should
        they be none (``Stop`` otherwise)."""
        root, url, options = app.source.path, app.source.repo_url, app.source.render
        at = f"at {revision.short}; nothing from this revision applied or pruned"
        try:
            if options.chart:
                with tempfile.TemporaryDirectory(prefix="driftguard-chart-") as scratch:
                    tree = Path(scratch)
                    if is_oci(url, options.chart):
                        name = self._unpack_oci(app, revision, tree, credentials)
                    else:
                        name = self.charts.unpack(url, options.chart, app.source.target_revision, tree, credentials)
                    if (tree / REFS_DIR).exists():
                        raise RenderError(f"chart {options.chart}: the archive holds {REFS_DIR}/, where ref sources go")
                    options = self._with_refs(app, revision, tree, options, chart=tree / name)
                    rendered = self.renderer.render("helm", tree, name, options, release=app.key.name,
                                                    namespace=app.destination_namespace, paths=[])
                return rendered.manifests, rendered.by, "" if rendered.manifests else (
                    f"chart {options.chart} rendered no objects; nothing applied or pruned (at {revision.short})")
            paths = self.source.paths(url, revision.sha, root, credentials=credentials)
            kind = sources.detect(paths, root, options)
            if kind == "plain":
                manifests = self._plain(app, revision, paths, credentials)
                by = "plain"
            else:
                with tempfile.TemporaryDirectory(prefix="driftguard-tree-") as scratch:
                    tree = Path(scratch)
                    everything = self.source.export(url, revision.sha, tree, credentials=credentials)
                    options = self._with_refs(app, revision, tree, options)
                    rendered = self.renderer.render(kind, tree, root, options, release=app.key.name,
                                                    namespace=app.destination_namespace, paths=everything,
                                                    dependency_login=lambda url: self._dependency_login(app, url))
                manifests, by = rendered.manifests, rendered.by
        except SourceError as e:
            raise Stop(Problem("SourceReady", e.reason, f"{e}; nothing applied or pruned")) from e
        except ManifestError as e:
            raise Stop(Problem("RenderReady", "InvalidManifest", f"{e} ({at})")) from e
        except RenderError as e:
            raise Stop(Problem("RenderReady", "RenderTimeout" if e.transient else "RenderFailed",
                               f"{e} ({at})")) from e
        except (OSError, ValueError, RecursionError, MemoryError) as e:  # anything else: never escapes the cycle
            raise Stop(Problem("RenderReady", "RenderFailed", f"rendering {root or '/'} failed: {e!r} ({at})")) from e
        return manifests, by, "" if manifests else self._empty_message(app, revision, paths, kind, by)

    def _unpack_oci(self, app: AppSpec, revision: Revision, tree: Path, credentials: Credentials | None) -> str:
        """The OCI chart of ``revision`` unpacked into ``tree`` (pulled by digest by helm, or from the cache)."""
        ref = parse_reference(app.source.repo_url, app.source.render.chart)
        found = self.oci.resolved(ref, revision) or self.oci.find(ref, app.source.target_revision, credentials)
        if not found.digest.split(":", 1)[1].startswith(revision.sha):
            raise SourceError("FetchFailed", f"{ref.url}: {app.source.target_revision} moved to {found.digest} while "
                                             "syncing; retried")

        def pull(f: Resolved) -> bytes:
            try:
                return self.renderer.pull_chart(ref.url, f.digest, registry_config=self.oci.registry_config(
                    ref, credentials), ca=credentials.ca if credentials else "", plain_http=self.oci.plain_http(ref))
            except RenderError as e:  # a pull that failed is a fetch that failed: retried
                raise SourceError("FetchFailed", str(e)) from e
        data = self.oci.archive(found, pull)
        return unpack_archive(data, tree, ref.repository.rsplit("/", 1)[-1], f"{ref.url}@{found.digest}")

    def _with_refs(self, app: AppSpec, revision: Revision, tree: Path, options: RenderOptions, *,
                   chart: Path | None = None) -> RenderOptions:
        """Export each ref source at its resolved commit beside the tree (``.driftguard-refs/<ref>``) and point
        ``$<ref>/…`` value files and file parameters there, relative to the chart (``chart``: where a chart from
        a repository or registry was unpacked; else the source's path)."""
        if not app.refs:
            return options
        shas = dict(revision.refs)
        for name, ref in app.refs:
            self.source.export(ref.repo_url, shas[name], tree / REFS_DIR / name,
                               credentials=self._credentials(app, ref))
        chart = chart or (tree / app.source.path if app.source.path else tree)

        def local(path: str) -> str:
            if not path.startswith("$"):
                return path
            name, _, rest = path[1:].partition("/")
            return os.path.relpath(tree / REFS_DIR / name / rest, chart)
        helm = options.helm
        return dataclasses.replace(options, helm=dataclasses.replace(
            helm, value_files=tuple(local(f) for f in helm.value_files),
            file_parameters=tuple((n, local(f)) for n, f in helm.file_parameters)))

    def _plain(self, app: AppSpec, revision: Revision, paths: list[str],
               credentials: Credentials | None = None) -> list[Manifest]:
        root = app.source.path
        chosen = sources.select(paths, root, app.source.render.directory)
        if chosen.nested_kustomizations:
            raise Stop(Problem("RenderReady", "NestedKustomization", (
                f"{', '.join(chosen.nested_kustomizations[:3])}: a kustomization below spec.source.path "
                f"{root or '/'} would be applied as plain YAML (its patches as whole objects); point the path at it, "
                f"or exclude it with spec.source.directory.exclude; nothing from {revision.short} applied or pruned")))
        wanted = set(chosen.manifests)
        limits = self.renderer.limits
        return render(self.source.read(app.source.repo_url, revision.sha, root, wanted.__contains__,
                                       credentials=credentials), limits=limits.parse,
                      max_objects=limits.max_objects)

    def _empty_message(self, app: AppSpec, revision: Revision, paths: list[str], kind: str, by: str) -> str:
        root = app.source.path or "/"
        nothing = f"nothing applied or pruned (at {revision.short})"
        if kind == "plain":
            chosen = sources.select(paths, app.source.path, app.source.render.directory)
            if chosen.deeper:
                return (f"path {root} declares no objects at its top level; {', '.join(chosen.deeper[:3])} "
                        f"{'are' if len(chosen.deeper) > 1 else 'is'} in a subdirectory: set "
                        f"spec.source.directory.recurse: true; {nothing}")
            if chosen.unrendered:
                return (f"path {root} holds no manifests: {', '.join(chosen.unrendered[:5])} "
                        f"{'are' if len(chosen.unrendered) > 1 else 'is'} neither *.yaml/*.yml/*.json nor a source "
                        f"driftguard renders (kustomization.yaml, Chart.yaml, *.jsonnet); {nothing}")
        else:
            return f"{by} rendered no objects from {root}; {nothing}"
        return (f"path {root} at {revision.short} declares no objects; nothing applied or pruned (set "
                "syncPolicy.allowEmpty: true to delete everything)")

    def _refuse_uncovered(self, desired: list[Desired]) -> None:
        """Stop before anything is applied or pruned when an object would live where no webhook looks."""
        namespaces = sorted({d.ref.namespace or (d.ref.name if d.ref.kind == "Namespace" and not d.ref.group else "")
                             for d in desired} - {""})
        for namespace in namespaces:
            why = self._uncovered(namespace)
            if why:
                refs = [str(d.ref) for d in desired if namespace in (d.ref.namespace, d.ref.name)][:3]
                raise Stop(Problem("Applied", "NamespaceNotCovered",
                                   f"{why} ({', '.join(refs)}); nothing applied or pruned"))

    def _scope(self, api_version: str, kind: str) -> bool | None:
        try:
            return self.cluster.discovery.resolve(api_version, kind).namespaced
        except UnknownKind:
            return None

    def _credentials(self, app: AppSpec, source: SourceSpec | None = None) -> Credentials | None:
        """The credentials of ``source`` (default: the rendered one), from its secretRef in the Application's
        namespace, when the Secret serves its URL for the Application's project."""
        source = source or app.source
        if not source.secret_name:
            return None
        rt = self.cluster.discovery.resolve(*SECRETS_V1)
        secret = self.cluster.get(rt, app.key.namespace, source.secret_name)
        if secret is None:
            raise Stop(Problem("SourceReady", "CredentialsNotFound",
                               f"Secret {app.key.namespace}/{source.secret_name} (spec.source.secretRef) "
                               "not found; nothing applied or pruned"))
        data = secret.get("data") or {}
        refusal = credentials_refusal(data, secret=f"{app.key.namespace}/{source.secret_name}",
                                      repo_url=source.repo_url, project=app.project)
        if refusal:
            raise Stop(Problem("SourceReady", "CredentialsRefused", f"{refusal}; nothing fetched, applied or pruned"))
        return Credentials.from_secret_data(data)

    def _dependency_login(self, app: AppSpec, url: str) -> Credentials | None:
        """The login of the source's own Secret for a chart dependency's repository ``url``, when the Secret
        serves that URL for the Application's project (its ``url`` may list the chart repository or registry
        beside the git repository); else only its CA, or None: the dependency is fetched without a login."""
        if not app.source.secret_name:
            return None
        secret = self.cluster.get(self.cluster.discovery.resolve(*SECRETS_V1), app.key.namespace,
                                  app.source.secret_name)
        data = (secret or {}).get("data") or {}
        if not data:
            return None
        found = Credentials.from_secret_data(data)
        if credentials_refusal(data, secret=f"{app.key.namespace}/{app.source.secret_name}", repo_url=url,
                               project=app.project):
            return Credentials(ca=found.ca) if found.ca else None  # a CA is no secret: trusted, the login not sent
        return found

    def _ensure_namespace(self, app: AppSpec, cluster: Cluster) -> None:
        """CreateNamespace=true: create the destination namespace, with ``managedNamespaceMetadata``'s labels and
        annotations (put back on an existing one when they differ; nothing written when they do not)."""
        name = app.destination_namespace
        if not (app.create_namespace and name):
            return
        labels, annotations = dict(app.namespace_labels), dict(app.namespace_annotations)
        live = cluster.get(NAMESPACES, "", name)
        if live is None:
            metadata: dict[str, object] = {"name": name}
            metadata.update({k: v for k, v in (("labels", labels), ("annotations", annotations)) if v})
            try:
                cluster.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
            except ResourceError as e:
                if not e.conflict:
                    raise
            return
        have = live.get("metadata") or {}
        patch = {where: changed for where, want in (("labels", labels), ("annotations", annotations))
                 if (changed := {k: v for k, v in want.items() if (have.get(where) or {}).get(k) != v})}
        if patch:
            cluster.merge_patch(NAMESPACES, "", name, {"metadata": patch})


def _where(source: SourceSpec, path: str) -> str:
    what = f"chart {source.render.chart}" if source.render.chart else path
    return f"{redact_url(source.repo_url)} {what}"


def _split(desired: list[Desired]) -> tuple[list[Desired], list[Desired], list[Desired]]:
    """The objects to apply; the hooks (never stamped, inventoried, self-healed or pruned); the ``Skip`` ones (not
    applied, and not pruned either: an inventory entry they had is kept)."""
    return ([d for d in desired if d.traits.applied], [d for d in desired if d.hook],
            [d for d in desired if d.traits.skip and not d.hook])


def _kept(new: Inventory, outcomes: list[Outcome], old: Inventory, not_reached: set[ObjectRef] | None = None
          ) -> Inventory:
    """The desired entries that exist now: all but failures (and objects of waves never reached) that were
    never applied before."""
    failed = {o.ref for o in outcomes if o.change.action is Action.FAILED} | (not_reached or set())
    known = old.refs()
    return Inventory.of(e for e in new.entries if e.ref not in failed or e.ref in known)
