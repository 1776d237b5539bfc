"""``driftguard diff``'s comparison, purely: per object, a unified diff of the fields git declares.

Only declared fields are compared, with the same semantics as the webhook and the reconciler
(``driftguard.core.fields.diff``: keyed lists by key, quantities by value): server defaults and other
managers' fields never show. The *live* side is the live object projected onto git's declared tree (each
declared field's live value, each declared keyed-list element matched by its key); the *git* side is
the declared tree. A value git keeps only as a digest (Secret data, very long strings) is shown as its
digest on both sides, never in clear. Fields ``spec.ignoreDifferences`` names are on neither side.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

import yaml

from driftguard.core import ignore
from driftguard.core.fields import (
    DIGEST_KEY,
    KEY_DEFAULTS,
    MISSING,
    ListKey,
    Path,
    diff,
    digest_of,
    leaf_equal,
    list_keys_for,
)
from driftguard.core.objects import ObjectRef

DIGEST_PREFIX: Final = "sha256:"


def object_diff(ref: ObjectRef, declared: Mapping[str, Any], live: Mapping[str, Any] | None,
                rules: ignore.Ignore = ignore.NOTHING, identity: Mapping[str, Any] | None = None) -> str:
    """The unified diff (live → git) of ``ref``'s declared fields; ``""`` when git's values are all live. What
    ``rules`` (``spec.ignoreDifferences``) names is left out of both sides, as the reconciler and the webhook
    leave it out (``identity``: the desired object, for expressions written against the whole object)."""
    if rules:
        masked = ignore.mask(rules, declared, live, identity=identity)
        declared, live = masked.declared, masked.obj
    name = f"{ref.kind}/{ref.namespace + '/' if ref.namespace else ''}{ref.name}"
    want = _text(_shown(declared))
    if live is None:
        return "".join(difflib.unified_diff([], want, f"live/{name} (absent: the sync creates it)", f"git/{name}"))
    if not diff(dict(declared), dict(live)):
        return ""
    have = _text(project(declared, live))
    return "".join(difflib.unified_diff(have, want, f"live/{name}", f"git/{name}"))


def pruned_diff(ref: ObjectRef) -> str:
    """An object the Application applied that git no longer declares."""
    name = f"{ref.kind}/{ref.namespace + '/' if ref.namespace else ''}{ref.name}"
    return (f"--- live/{name}\n+++ git/{name} (no longer in git: a sync with prune deletes it)\n"
            "@@ -1 +0,0 @@\n-(the whole object)\n")


def project(declared: object, live: object, path: Path = ()) -> object:
    """``live`` cut down to the shape of ``declared``: only what git declares, in git's order. A field the live
    object lacks is left out; a digest leaf becomes the digest of the live value; a leaf equal to git's by the
    comparison's rules (``1000m`` is ``1``) is shown as git writes it."""
    if isinstance(declared, Mapping) and DIGEST_KEY in declared and len(declared) == 1:
        return MISSING if live is MISSING else DIGEST_PREFIX + digest_of(live)
    if isinstance(declared, Mapping) and declared:
        if not isinstance(live, Mapping):
            return live
        out: dict[str, Any] = {}
        for key, value in declared.items():
            have = live.get(key, MISSING)
            if have is MISSING:
                continue
            keys = list_keys_for(str(key), value)
            at = (*path, str(key))
            shown = _project_keyed(value, have, keys, at) if keys is not None else project(value, have, at)
            if shown is not MISSING:
                out[key] = shown
        return out
    return declared if leaf_equal(path, declared, live) else live


def _project_keyed(declared: list[Any], live: object, keys: tuple[str, ...], path: Path) -> object:
    if not isinstance(live, list):
        return live
    out = []
    for element in declared:
        wanted = {k: element.get(k, KEY_DEFAULTS.get(k)) for k in keys}
        match = [e for e in live if isinstance(e, Mapping)
                 and all(e.get(k, KEY_DEFAULTS.get(k)) == v for k, v in wanted.items())]
        if len(match) == 1:
            out.append(project(element, match[0], (*path, ListKey(tuple(wanted.items())))))
    return out


def _shown(declared: object) -> object:
    """The declared tree with digests shown as ``sha256:<hex>``."""
    if isinstance(declared, Mapping):
        if DIGEST_KEY in declared and len(declared) == 1:
            return DIGEST_PREFIX + str(declared[DIGEST_KEY])
        return {k: _shown(v) for k, v in declared.items()}
    if isinstance(declared, list):
        return [_shown(v) for v in declared]
    return declared


def _text(tree: object) -> list[str]:
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False, width=1000).splitlines(keepends=True)
