"""``driftguard render --local DIR``: print what the reconciler would apply from a checkout, to diff before a push.

The same choice of renderer and the same tools and bounds as the reconciler (``reconciler.sources``,
``reconciler.renderer``); the checkout is copied to a scratch directory first (without ``.git``), so a
``spec.source.kustomize`` overlay is never written into it. ``--application FILE`` reads the source
fields, destination namespace and release name from an Application manifest. The tools are those of
``make tools`` unless ``--kustomize``/``--helm``/``--jsonnet`` name others. Objects go to standard
output as a YAML stream, problems to standard error with exit status 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from driftguard.core.manifests import Manifest, ManifestError, parse_documents
from driftguard.local.controlplane.binaries import BinariesUnavailable, resolve_render_tools
from reconciler import sources
from reconciler.application import normalize_path, parse_application
from reconciler.render import render
from reconciler.renderer import Renderer, RenderError, RenderTools


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("render", help="print the objects a checkout renders to, as the reconciler would")
    parser.add_argument("--local", type=Path, required=True, metavar="DIR", help="a checkout of the repository")
    parser.add_argument("--path", default=None, help="the path in it (default: the Application's, else the root)")
    parser.add_argument("--application", type=Path, default=None, metavar="FILE",
                        help="an Application manifest: its source fields, destination namespace and name")
    for tool in ("kustomize", "helm", "jsonnet"):
        parser.add_argument(f"--{tool}", default=None, help=f"the {tool} binary (default: make tools' build)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifests, by = render_checkout(args)
    except (ManifestError, RenderError, ValueError, OSError, BinariesUnavailable) as e:
        print(f"driftguard render: {e}", file=sys.stderr)
        return 1
    print(f"# {len(manifests)} objects, rendered by {by}", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump_all([m.obj for m in manifests], sort_keys=False))
    return 0


def render_checkout(args: argparse.Namespace, application: dict[str, Any] | None = None) -> tuple[list[Manifest], str]:
    """The manifests ``args.local`` renders to (``application``: the Application object, instead of
    ``args.application``'s file), and which renderer made them."""
    app = application if application is not None else _application(args.application)
    spec = parse_application(app)
    if spec.problems and (args.application is not None or application is not None):
        raise ValueError(f"{args.application or spec.key}: " + "; ".join(spec.problems))
    root = normalize_path(args.path) if args.path is not None else spec.source.path
    if root is None:
        raise ValueError(f"--path {args.path!r} must be relative and stay inside the checkout")
    with tempfile.TemporaryDirectory(prefix="driftguard-render-local-") as scratch:
        tree = Path(scratch) / "repo"
        shutil.copytree(args.local, tree, symlinks=False, ignore=shutil.ignore_patterns(".git"))
        paths = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
        under = [p for p in paths if not root or p.startswith(root + "/")]
        if not under:
            raise ValueError(f"{args.local}: no files under {root or '.'}")
        kind = sources.detect(under, root, spec.source.render)
        if kind == "plain":
            chosen = sources.select(under, root, spec.source.render.directory)
            if chosen.nested_kustomizations:
                raise ValueError(f"{', '.join(chosen.nested_kustomizations)}: a kustomization below the path")
            return render([(p, (tree / p).read_bytes()) for p in chosen.manifests]), "plain"
        rendered = _renderer(args).render(kind, tree, root, spec.source.render, release=spec.key.name or "release",
                                          namespace=spec.destination_namespace, paths=paths)
        return rendered.manifests, rendered.by


def _application(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"metadata": {"name": "local"}, "spec": {"source": {"repoURL": "local"}}}
    [manifest] = parse_documents(path.read_text(), str(path))
    return manifest.obj


def _renderer(args: argparse.Namespace) -> Renderer:
    given = {tool: getattr(args, tool) for tool in ("kustomize", "helm", "jsonnet") if getattr(args, tool)}
    paths = given if len(given) == 3 else {**{k: str(v) for k, v in resolve_render_tools().items()}, **given}
    return Renderer(RenderTools(paths))
