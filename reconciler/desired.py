"""The desired state: rendered manifests, placed (namespace) and stamped with the ownership contract.

Placement needs each kind's scope. ``scope`` answers from discovery; kinds defined by a CRD in the
same render answer from that CRD (its custom resources are placed before the CRD is even applied).
A kind nobody knows is placed as namespaced and marked ``scope_known=False``: the apply step
re-checks it once its CRD is Established.

Stamping is the core's ``contract.stamp``; the declared tree is read back from the stamp, so the
fast drift test (``fields.diff``) compares against exactly what the webhook will read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from driftguard.core import ignore, phases
from driftguard.core.contract import ANN_DECLARED, ANN_PATH, PREFIX, Source, decode_declared, stamp
from driftguard.core.inventory import Entry, Inventory
from driftguard.core.manifests import Manifest, ManifestError
from driftguard.core.objects import ObjectRef, split_api_version
from reconciler.application import AppSpec
from reconciler.revision import Revision, redact_url

Scope = Callable[[str, str], bool | None]  # (apiVersion, kind) → namespaced? None when unknown

CRD_GROUP_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")
# On a hook (never a managed object): which Application's sync created it, at which commit, from which file.
# Not the managed label, so the webhook never sees a hook and never stands between it and its controllers.
ANN_HOOK_OF = PREFIX + "hook-of"
ANN_HOOK_COMMIT = PREFIX + "hook-commit"


@dataclass(frozen=True, slots=True)
class Desired:
    """One object as git declares it, ready to apply."""

    ref: ObjectRef
    api_version: str
    obj: dict[str, Any]  # stamped; namespace set iff namespaced
    declared: dict[str, Any]
    line: int
    scope_known: bool = True
    error: str = ""  # why it cannot be applied (e.g. no namespace to put it in)
    traits: phases.Traits = phases.RESOURCE  # hook, wave, sync options (driftguard.core.phases)
    source_path: str = ""  # the file it came from (a hook carries no stamp to read it from)
    ignore: ignore.Ignore = ignore.NOTHING  # spec.ignoreDifferences for it (also in its stamp)
    respect_ignore: bool = False  # RespectIgnoreDifferences=true: an update keeps the live value there

    @property
    def entry(self) -> Entry:
        return Entry(self.ref, self.api_version)

    @property
    def path(self) -> str:
        return self.source_path or str(self.obj["metadata"]["annotations"][ANN_PATH])

    @property
    def hook(self) -> bool:
        return self.traits.hook


def crd_scopes(manifests: Iterable[Manifest]) -> dict[tuple[str, str], bool]:
    """(group, kind) → namespaced, for every CustomResourceDefinition among ``manifests``."""
    scopes: dict[tuple[str, str], bool] = {}
    for m in manifests:
        if (m.ref.group, m.ref.kind) != CRD_GROUP_KIND:
            continue
        spec = m.obj.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        if isinstance(spec.get("group"), str) and isinstance(kind, str):
            scopes[(spec["group"], kind)] = spec.get("scope", "Namespaced") == "Namespaced"
    return scopes


def build(manifests: list[Manifest], *, app: AppSpec, revision: Revision, scope: Scope) -> list[Desired]:
    """Place and stamp every manifest for ``app`` at ``revision``; hooks are placed, not stamped (``Skip``
    objects are stamped like any other: the sync leaves them out). ``ManifestError`` (file and line) when an
    Argo CD annotation cannot be read."""
    defined = crd_scopes(manifests)
    repo = redact_url(app.source.repo_url)
    out = []
    for manifest in manifests:
        try:
            traits = phases.traits(manifest.obj)
        except phases.PhaseError as e:
            name = (manifest.obj.get("metadata") or {}).get("name") or "(generateName)"
            raise ManifestError(manifest.path, manifest.line, f"{manifest.obj['kind']} {name}: {e}") from None
        group, _ = split_api_version(str(manifest.obj["apiVersion"]))
        namespaced = defined.get((group, manifest.ref.kind))
        if namespaced is None:
            namespaced = scope(str(manifest.obj["apiVersion"]), manifest.ref.kind)
        source = Source(repo, revision.sha, revision.author, revision.committed_at, manifest.path,
                        verified_by=revision.verified_by)
        out.append(_desired(manifest, app, source, namespaced, traits))
    return out


def _desired(manifest: Manifest, app: AppSpec, source: Source, namespaced: bool | None,
             traits: phases.Traits = phases.RESOURCE) -> Desired:
    obj = dict(manifest.obj)
    metadata = dict(obj.get("metadata") or {})
    error = ""
    if namespaced is False:
        metadata.pop("namespace", None)
    elif not metadata.get("namespace"):
        if app.destination_namespace:
            metadata["namespace"] = app.destination_namespace
        else:
            error = (f"{manifest.path}:{manifest.line}: {obj['kind']} "
                     f"{metadata.get('name') or metadata.get('generateName')} has no namespace "
                     "and the Application sets no destination.namespace")
    obj["metadata"] = metadata
    if traits.hook:
        annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if not str(k).startswith(PREFIX)}
        labels = {k: v for k, v in (metadata.get("labels") or {}).items() if not str(k).startswith(PREFIX)}
        metadata["annotations"] = {**annotations, ANN_HOOK_OF: str(app.key), ANN_HOOK_COMMIT: source.commit}
        metadata["labels"] = labels
        return Desired(ref=ObjectRef.of(obj), api_version=str(obj["apiVersion"]), obj=obj, declared={},
                       line=manifest.line, scope_known=namespaced is not None, error=error, traits=traits,
                       source_path=manifest.path)
    group, _ = split_api_version(str(obj["apiVersion"]))
    rules = ignore.for_object(app.ignore_rules, group, str(obj["kind"]), str(metadata.get("name") or ""),
                              str(metadata.get("namespace") or ""))
    stamped = stamp(obj, application=str(app.key), source=source, enforcement=app.enforcement, ignore=rules)
    declared = decode_declared(stamped["metadata"]["annotations"][ANN_DECLARED])
    if rules and not error:  # a rule that cannot be evaluated on git's own object is never applied around
        problems = ignore.mask(rules, declared, stamped).problems
        if problems:
            error = (f"{manifest.path}:{manifest.line}: {obj['kind']} {metadata.get('name')}: "
                     f"spec.ignoreDifferences: {'; '.join(problems)}")
    return Desired(
        ref=ObjectRef.of(stamped), api_version=str(stamped["apiVersion"]), obj=stamped, declared=declared,
        line=manifest.line, scope_known=namespaced is not None, error=error, traits=traits, ignore=rules,
        respect_ignore=app.respect_ignore_differences,
    )


def inventory_of(desired: Iterable[Desired]) -> Inventory:
    return Inventory.of(d.entry for d in desired)


def index(desired: Iterable[Desired]) -> Mapping[ObjectRef, Desired]:
    return {d.ref: d for d in desired}
