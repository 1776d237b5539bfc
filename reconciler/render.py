"""Render a plain directory: its manifest files → the objects git declares.

Which files is ``reconciler.sources.select``'s decision (Argo CD's ``directory`` semantics: the path's
own files unless ``recurse``, ``include``/``exclude`` globs; Kustomize, Helm and Jsonnet sources go
to ``reconciler.renderer``); this module parses the files it is given, in path order. Parsing is the
core's (``parse_documents``): a revision is all or nothing, so the first bad document — invalid YAML, no
kind, no name, a duplicate — raises a ``ManifestError`` naming the file and line, and nothing from that
revision is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from driftguard.core.manifests import DEFAULT_LIMITS, Limits, Manifest, ManifestError, check_unique, parse_documents

MAX_OBJECTS: Final = 50_000


def render(files: Iterable[tuple[str, bytes]], *, limits: Limits = DEFAULT_LIMITS,
           max_objects: int = MAX_OBJECTS) -> list[Manifest]:
    """The manifests in ``files`` ((repository path, content) pairs, as ``sources.select`` chose them), all or
    nothing."""
    manifests: list[Manifest] = []
    for path, content in sorted(files):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ManifestError(path, 1, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
        manifests.extend(parse_documents(text, path, limits))
        if len(manifests) > max_objects:
            raise ManifestError(path, 1, f"the path declares more than {max_objects} objects (--max-objects)")
    check_unique(manifests)
    return manifests
