"""Charts from a Helm repository (Argo CD's ``source.chart``): ``repoURL`` is the repository, ``targetRevision``
the chart version, or a wildcard (``17.*``, ``17.1.x``, ``*``) choosing the highest matching one.

The repository's ``index.yaml`` is read over HTTP(S) with a conditional request (an unchanged index costs a
304, so polling a large public index is cheap; a Last-Modified within two seconds of the answer is not trusted
as a validator, since the index may have been half-written then), bounded in size and time; the chosen
version's archive is downloaded, checked against the index's ``digest`` (sha256), and unpacked with tar's
``data`` filter (no links out, no devices, no absolute paths) for ``helm template``. The revision a chart
is stamped with is its digest: what was applied is exactly identified, as a commit identifies a git source.

A repository Secret's login (``username``/``password``; checked by ``credentials_refusal`` first: https only,
the repository URL under the Secret's ``url``) is sent as Basic auth only to URLs under ``repoURL`` — an
archive the index places on another host is fetched without it, as Helm does — and on no redirect; its
``ca.crt`` is trusted besides the system's CAs. Charts from OCI registries: ``reconciler.ocisource``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import ssl
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

from reconciler.gitsource import Credentials, SourceError
from reconciler.revision import Revision
from reconciler.semver import ConstraintError, Version, parse_constraint, parse_version

MAX_INDEX_BYTES: Final = 64 * 1024 * 1024


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

    def resolve(self, repo_url: str, chart: str, target: str, credentials: Credentials | None = None) -> Revision:
        found = self.version(repo_url, chart, target, credentials)
        return Revision(found.digest[:40], "", found.created, f"chart {found.name} {found.version}")

    def version(self, repo_url: str, chart: str, target: str, credentials: Credentials | None = None) -> ChartVersion:
        entries = (self._read_index(repo_url, credentials).get("entries") or {}).get(chart)
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

    def unpack(self, repo_url: str, chart: str, target: str, dest: Path,
               credentials: Credentials | None = None) -> str:
        """Download, verify and unpack the chart into ``dest``; the chart directory's name in it."""
        found = self.version(repo_url, chart, target, credentials)
        data = self._get(found.url, self.max_bytes, "", repo_url, credentials)[1] or b""
        if hashlib.sha256(data).hexdigest() != found.digest:
            raise SourceError("FetchFailed", f"{found.url}: the archive does not match the index's sha256 digest")
        return unpack_archive(data, dest, chart, found.url)

    def _read_index(self, repo_url: str, credentials: Credentials | None) -> dict[str, Any]:
        url = repo_url.rstrip("/") + "/index.yaml"
        with self._lock:
            cached = self._index.get(url)
        validator, body = self._get(url, MAX_INDEX_BYTES, cached[0] if cached else "", repo_url, credentials)
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

    def _get(self, url: str, limit: int, validator: str = "", repo_url: str = "",
             credentials: Credentials | None = None) -> tuple[str, bytes | None]:
        """(ETag or Last-Modified, body); body None when the server says the cached one is current."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise SourceError("FetchFailed", f"{url}: only http and https chart repositories are supported")
        request = urllib.request.Request(url, headers={"User-Agent": "driftguard"})  # noqa: S310 - checked above
        if validator.startswith('"') or validator.startswith("W/"):
            request.add_header("If-None-Match", validator)
        elif validator:
            request.add_header("If-Modified-Since", validator)
        authorization = login_header(credentials) if credentials is not None and under(url, repo_url) else ""
        if authorization:
            request.add_unredirected_header("Authorization", authorization)  # never follows a redirect
        context = ssl.create_default_context()
        if credentials is not None and credentials.ca:
            context.load_verify_locations(cadata=credentials.ca)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,  # noqa: S310 - http(s) only
                                        context=context if url.startswith("https:") else None) as response:
                body = response.read(limit + 1)
                if len(body) > limit:
                    raise SourceError("TooLarge", f"{url}: larger than {limit} bytes")
                return _validator(response.headers), body
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return validator, None
            if e.code in (401, 403):
                if not authorization:
                    raise SourceError("AuthenticationRequired", f"{url}: HTTP {e.code}: the chart repository asks for "
                                                                "a login; give the Application a repository Secret "
                                                                "(spec.source.secretRef)") from e
                raise SourceError("AuthenticationFailed", f"{url}: HTTP {e.code}: the chart repository refused "
                                                          "the login of the repository Secret "
                                                          "(spec.source.secretRef)") from e
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


def unpack_archive(data: bytes, dest: Path, chart: str, where: str) -> str:
    """Unpack a chart archive into ``dest`` with tar's ``data`` filter; the chart directory's name in it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise SourceError("FetchFailed", f"{where}: not a chart archive ({e})") from e
    if not (dest / chart / "Chart.yaml").is_file():
        raise SourceError("FetchFailed", f"{where}: the archive holds no {chart}/Chart.yaml")
    return chart


def under(url: str, repo_url: str) -> bool:
    """Whether ``url`` is ``repo_url`` or below it: same scheme, host and port, and a path under its path."""
    if not repo_url:
        return False
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(repo_url.rstrip("/") + "/")
    return (a.scheme.lower(), (a.hostname or "").lower(), a.port) == (b.scheme.lower(), (b.hostname or "").lower(),
                                                                     b.port) and (a.path + "/").startswith(b.path)


def login_header(credentials: Credentials) -> str:
    """Basic auth from ``username``/``password``; a ``password``/``token`` without a username as a bearer token."""
    if not credentials.token:
        return ""
    if not credentials.username:
        return f"Bearer {credentials.token}"
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.token}".encode()).decode()


def matches(version: str, target: str) -> bool:
    """Whether chart ``version`` is what ``targetRevision`` asks for (a version, wildcard or range:
    ``reconciler.semver``)."""
    try:
        return parse_constraint(target).allows(version)
    except ConstraintError:
        return False


def version_key(version: str) -> Version:
    return parse_version(version) or Version(-1, -1, -1, -1)
