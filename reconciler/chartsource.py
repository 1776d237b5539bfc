"""Charts from a Helm repository (Argo CD's ``source.chart``): ``repoURL`` is the repository, ``targetRevision``
the chart version, or a wildcard (``17.*``, ``17.1.x``, ``*``) choosing the highest matching one.

The repository's ``index.yaml`` is read over HTTP(S) with a conditional request (an unchanged index costs a
304, so polling a large public index is cheap; a Last-Modified within two seconds of the answer is not trusted
as a validator, since the index may have been half-written then), bounded in size and time; the chosen
version's archive is downloaded, checked against the index's ``digest`` (sha256), and unpacked with tar's
``data`` filter (no links out, no devices, no absolute paths) for ``helm template``. The revision a chart
is stamped with is its digest: what was applied is exactly identified, as a commit identifies a git source.
OCI registries and repository credentials are not supported yet (refused with a condition by
``reconciler.sources``).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

import yaml

from reconciler.gitsource import SourceError
from reconciler.revision import Revision

MAX_INDEX_BYTES: Final = 64 * 1024 * 1024
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")


@dataclass(frozen=True, slots=True)
class ChartVersion:
    name: str
    version: str
    digest: str
    url: str  # absolute
    created: str


class ChartSource:
    def __init__(self, *, timeout: float = 60.0, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.timeout, self.max_bytes = timeout, max_bytes
        self._index: dict[str, tuple[str, dict[str, Any]]] = {}  # repository URL → (ETag or Last-Modified, index)
        self._lock = threading.Lock()

    def resolve(self, repo_url: str, chart: str, target: str) -> Revision:
        found = self.version(repo_url, chart, target)
        return Revision(found.digest[:40], "", found.created, f"chart {found.name} {found.version}")

    def version(self, repo_url: str, chart: str, target: str) -> ChartVersion:
        entries = (self._read_index(repo_url).get("entries") or {}).get(chart)
        if not isinstance(entries, list) or not entries:
            raise SourceError("RevisionNotFound", f"{repo_url}: no chart {chart!r} in the repository's index")
        candidates = [e for e in entries if isinstance(e, dict) and matches(str(e.get("version", "")), target)]
        if not candidates:
            raise SourceError("RevisionNotFound", f"{repo_url}: chart {chart} has no version matching "
                                                  f"{target!r} (spec.source.targetRevision)")
        best = max(candidates, key=lambda e: version_key(str(e["version"])))
        urls, digest = best.get("urls") or [], str(best.get("digest") or "")
        if not urls or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise SourceError("FetchFailed", f"{repo_url}: chart {chart} {best['version']} has no archive URL or no "
                                             "sha256 digest in the index; driftguard applies only verified charts")
        return ChartVersion(chart, str(best["version"]), digest, urllib.parse.urljoin(repo_url.rstrip("/") + "/",
                                                                                       str(urls[0])),
                            str(best.get("created") or ""))

    def unpack(self, repo_url: str, chart: str, target: str, dest: Path) -> str:
        """Download, verify and unpack the chart into ``dest``; the chart directory's name in it."""
        found = self.version(repo_url, chart, target)
        data = self._get(found.url, self.max_bytes)[1] or b""
        if hashlib.sha256(data).hexdigest() != found.digest:
            raise SourceError("FetchFailed", f"{found.url}: the archive does not match the index's sha256 digest")
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                archive.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise SourceError("FetchFailed", f"{found.url}: not a chart archive ({e})") from e
        if not (dest / chart / "Chart.yaml").is_file():
            raise SourceError("FetchFailed", f"{found.url}: the archive holds no {chart}/Chart.yaml")
        return chart

    def _read_index(self, repo_url: str) -> dict[str, Any]:
        url = repo_url.rstrip("/") + "/index.yaml"
        with self._lock:
            cached = self._index.get(url)
        validator, body = self._get(url, MAX_INDEX_BYTES, cached[0] if cached else "")
        if body is None and cached is not None:
            return cached[1]
        try:
            index = yaml.safe_load(body or b"") or {}
        except yaml.YAMLError as e:
            raise SourceError("FetchFailed", f"{url}: not YAML ({e})") from e
        if not isinstance(index, dict):
            raise SourceError("FetchFailed", f"{url}: not a Helm repository index")
        with self._lock:
            self._index[url] = (validator, index)
        return index

    def _get(self, url: str, limit: int, validator: str = "") -> tuple[str, bytes | None]:
        """(ETag or Last-Modified, body); body None when the server says the cached one is current."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise SourceError("FetchFailed", f"{url}: only http and https chart repositories are supported")
        request = urllib.request.Request(url, headers={"User-Agent": "driftguard"})  # noqa: S310 - checked above
        if validator.startswith('"') or validator.startswith("W/"):
            request.add_header("If-None-Match", validator)
        elif validator:
            request.add_header("If-Modified-Since", validator)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                body = response.read(limit + 1)
                if len(body) > limit:
                    raise SourceError("TooLarge", f"{url}: larger than {limit} bytes")
                return _validator(response.headers), body
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return validator, None
            raise SourceError("FetchFailed", f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise SourceError("FetchFailed", f"{url}: {getattr(e, 'reason', e)}") from e


def _validator(headers: Any) -> str:
    """What the next conditional request may send: the ETag, else Last-Modified — unless that is within two
    seconds of the response's Date (RFC 7232's weak validator: the file may still have been being written, and a
    second-granular If-Modified-Since would then keep a partial index for good)."""
    etag = headers.get("ETag") or ""
    if etag:
        return str(etag)
    modified, date = headers.get("Last-Modified") or "", headers.get("Date") or ""
    try:
        if not modified or not date:
            return ""
        if (parsedate_to_datetime(date) - parsedate_to_datetime(modified)).total_seconds() < 2:
            return ""
    except (TypeError, ValueError):
        return ""
    return str(modified)


def matches(version: str, target: str) -> bool:
    """Whether chart ``version`` is what ``targetRevision`` asks for: equal, or matching its ``*``/``x`` parts."""
    if target in ("", "*", "HEAD", "latest"):
        return _VERSION.match(version) is not None and "-" not in version  # no pre-releases unless named
    if "*" not in target and "x" not in target.lower().split("."):
        return version.lstrip("v") == target.lstrip("v")
    want = target.lstrip("v").split(".")
    have = version.lstrip("v").split("-", 1)[0].split(".")
    return "-" not in version and all(w in ("*", "x", "X") or (i < len(have) and have[i] == w)
                                      for i, w in enumerate(want))


def version_key(version: str) -> tuple[int, int, int, int]:
    m = _VERSION.match(version)
    if m is None:
        return (-1, -1, -1, -1)
    return (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), 0 if "-" in version else 1)
