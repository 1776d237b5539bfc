"""What an OCI chart source names (pure, no I/O): the registry and repository of ``repoURL`` + ``chart`` (Argo
CD's ``oci://host/path`` or scheme-less ``host/path``), and the tags Helm stores versions under."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

_REPOSITORY: Final = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_REGISTRY: Final = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                              r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str  # host[:port]
    repository: str  # the path on the registry, ending in the chart's name

    @property
    def url(self) -> str:
        return f"oci://{self.registry}/{self.repository}"

    @property
    def host(self) -> str:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry
        return host.strip("[]")


def is_oci(repo_url: str, chart: str) -> bool:
    """Whether a ``source.chart`` source is an OCI registry: ``oci://``, or (Argo CD's form) no scheme at all."""
    url = repo_url.strip()
    return bool(chart) and (url.lower().startswith("oci://") or "://" not in url)


def parse_reference(repo_url: str, chart: str) -> Reference:
    """``oci://host/path`` (or ``host/path``) and ``chart`` as a Reference; ValueError naming the problem."""
    url = repo_url.strip()
    rest = url[len("oci://"):] if url.lower().startswith("oci://") else url
    if "://" in rest or "@" in rest.split("/", 1)[0]:
        raise ValueError(f"repoURL {url!r} is not an OCI registry URL (oci://host/path, no credentials in it)")
    if chart.endswith(":") or ":" in chart or "@" in chart:
        raise ValueError(f"spec.source.chart {chart!r}: the version goes in targetRevision, not in the chart name")
    registry, _, path = rest.rstrip("/").partition("/")
    if not _REGISTRY.match(registry):
        raise ValueError(f"repoURL {url!r}: {registry!r} is not a registry host[:port]")
    repository = "/".join(p for p in (path, chart.strip("/")) if p)
    if not _REPOSITORY.match(repository):
        raise ValueError(f"repoURL {url!r} with chart {chart!r}: {repository!r} is not an OCI repository name "
                         "(lowercase letters, digits, separators . _ - and /)")
    return Reference(registry.lower(), repository)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tag_of(version: str) -> str:
    """Helm stores version ``1.2.3+build`` under the tag ``1.2.3_build`` (``+`` is not allowed in tags)."""
    return version.replace("+", "_")


def version_of(tag: str) -> str:
    return tag.replace("_", "+")
