"""A resolved git revision: what the stamp records about the commit that declared an object."""

from __future__ import annotations

import re
from dataclasses import dataclass

_USERINFO = re.compile(r"^(https?://)[^/@]*@", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Revision:
    sha: str
    author: str  # e-mail when the commit has one, else the name
    committed_at: str  # RFC 3339, UTC
    subject: str = ""
    refs: tuple[tuple[str, str], ...] = ()  # (ref name, commit sha) of spec.sources' ref sources
    # spec.sources' further rendered sources (AppSpec.extra_sources), each resolved; their shas are in refs too,
    # named sources[i], so a change to any of them is a new revision
    sources: tuple[Revision, ...] = ()
    verified_by: str = ""  # the signer spec.verify accepted (key fingerprint and identity); "": not verified

    @property
    def short(self) -> str:
        return self.sha[:7]


def redact_url(url: str) -> str:
    """A repository URL safe to log and stamp: ``https://user:token@host/x`` → ``https://host/x``.

    SSH addresses (``git@github.com:org/repo``, ``ssh://git@host/x``) carry a user name, not a secret,
    and stay as they are.
    """
    return _USERINFO.sub(r"\1", url)
