"""Charts from OCI registries (Argo CD's ``source.chart`` with ``repoURL: oci://host/path``, or its
scheme-less form ``repoURL: host/path``): the chart is the repository ``path/chart`` on the registry ``host``,
``targetRevision`` a version or a constraint (``reconciler.semver``) over its tags.

Resolving speaks the OCI distribution API directly (a tag list, then a ``HEAD`` of the chosen tag's manifest
for its digest: a poll costs one or two small requests and no download). The revision is the manifest's
digest: a chart re-pushed under the same tag is a new revision, as a new commit is. Pulling runs the real
``helm pull`` by that digest (``reconciler.renderer``, bounded like every render), so what is rendered is
exactly what was resolved; archives are cached by digest (an LRU bounded in bytes), so a re-render pulls
nothing.

Transport: https only, trusting the system's CAs plus a ``ca.crt`` from the repository Secret. Plain http
is spoken only to a loopback registry and only with ``--oci-plain-http-loopback`` — and never with a login.
Credentials (the repository Secret's ``username``/``password``, or a ``password``/``token`` alone as a
bearer token) are sent to the registry only, on no redirect; a registry's token service (``WWW-Authenticate:
Bearer realm=…``) is asked only over https.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from reconciler.gitsource import Credentials, SourceError
from reconciler.ociref import Reference, is_loopback, tag_of, version_of
from reconciler.revision import Revision
from reconciler.semver import ConstraintError, highest, parse_constraint, parse_version

MANIFEST_TYPES: Final = ("application/vnd.oci.image.manifest.v1+json, "
                         "application/vnd.docker.distribution.manifest.v2+json")
MAX_TAG_PAGES: Final = 50
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
MAX_REMEMBERED: Final = 1024  # resolved digests and working Authorizations kept, the least recent dropped
_CHALLENGE: Final = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Resolved:
    reference: Reference
    version: str
    digest: str  # sha256:<hex> of the manifest


class OCISource:
    def __init__(self, *, timeout: float = 60.0, plain_http_loopback: bool = False,
                 cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.timeout, self.plain_http_loopback, self.cache_bytes = timeout, plain_http_loopback, cache_bytes
        self._lock = threading.Lock()
        # (reference URL, revision sha) → what it is; the latest MAX_REMEMBERED only (a restart forgets all: the
        # render then finds the digest again)
        self._resolved: OrderedDict[tuple[str, str], Resolved] = OrderedDict()
        self._archives: OrderedDict[str, bytes] = OrderedDict()  # manifest digest → chart archive
        # (registry, repository, login) → the Authorization that worked last (a token service's token, or Basic)
        self._auth: OrderedDict[tuple[str, str, tuple[str, str] | None], str] = OrderedDict()

    # ------------------------------------------------------------ resolving

    def plain_http(self, ref: Reference) -> bool:
        return self.plain_http_loopback and is_loopback(ref.host)

    def resolve(self, ref: Reference, target: str, credentials: Credentials | None) -> Revision:
        found = self.find(ref, target, credentials)
        sha = found.digest.split(":", 1)[1][:40]
        with self._lock:
            self._resolved[(ref.url, sha)] = found
            self._resolved.move_to_end((ref.url, sha))
            while len(self._resolved) > MAX_REMEMBERED:
                self._resolved.popitem(last=False)
        return Revision(sha, "", "", f"chart {ref.repository.rsplit('/', 1)[-1]} {found.version}")

    def resolved(self, ref: Reference, revision: Revision) -> Resolved | None:
        with self._lock:
            return self._resolved.get((ref.url, revision.sha))

    def find(self, ref: Reference, target: str, credentials: Credentials | None) -> Resolved:
        try:
            constraint = parse_constraint(target)
        except ConstraintError as e:
            raise SourceError("RevisionNotFound", f"{ref.url}: targetRevision {e}") from e
        exact = parse_version(target) is not None and target.strip() not in ("", "*")
        if exact:
            version = target.strip()
        else:
            tags = self.tags(ref, credentials)
            chosen = highest([version_of(t) for t in tags], constraint)
            if chosen is None:
                raise SourceError("RevisionNotFound", f"{ref.url}: no tag matches {target!r} (spec.source."
                                                      f"targetRevision; the registry has {len(tags)} tags)")
            version = chosen
        return Resolved(ref, version, self.digest(ref, version, credentials))

    def tags(self, ref: Reference, credentials: Credentials | None) -> list[str]:
        tags: list[str] = []
        path = "tags/list?n=1000"
        for _ in range(MAX_TAG_PAGES):
            _, headers, body = self._request(ref, "GET", path, credentials, accept="application/json")
            try:
                page = json.loads(body or b"{}")
            except ValueError as e:
                raise SourceError("FetchFailed", f"{ref.url}: the tag list is not JSON ({e})") from e
            tags += [str(t) for t in (page.get("tags") or []) if isinstance(t, str)] if isinstance(page, dict) else []
            following = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', headers.get("Link") or "")
            if following is None:
                return tags
            target = urllib.parse.urlsplit(following.group(1))
            if target.netloc and target.netloc.lower() != ref.registry:
                raise SourceError("FetchFailed", f"{ref.url}: the tag list's next page is on another host")
            path = target.path.split(f"/v2/{ref.repository}/", 1)[-1] + (f"?{target.query}" if target.query else "")
        raise SourceError("FetchFailed", f"{ref.url}: more than {MAX_TAG_PAGES} pages of tags")

    def digest(self, ref: Reference, version: str, credentials: Credentials | None) -> str:
        status, headers, _ = self._request(ref, "HEAD", f"manifests/{tag_of(version)}", credentials,
                                              accept=MANIFEST_TYPES, missing_ok=True)
        if status == 404:
            raise SourceError("RevisionNotFound", f"{ref.url}: no version {version} (tag {tag_of(version)}) in "
                                                  "the registry")
        digest = str(headers.get("Docker-Content-Digest") or "")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise SourceError("FetchFailed", f"{ref.url}:{tag_of(version)}: the registry named no sha256 manifest "
                                             "digest (Docker-Content-Digest); driftguard applies only verified charts")
        return digest

    # ------------------------------------------------------------ pulling (by helm, through the caller)

    def archive(self, found: Resolved, pull: Callable[[Resolved], bytes]) -> bytes:
        """The chart archive of ``found``: from the cache, else ``pull`` (helm pull by digest)."""
        with self._lock:
            data = self._archives.get(found.digest)
            if data is not None:
                self._archives.move_to_end(found.digest)
                return data
        data = pull(found)
        with self._lock:
            if len(data) <= self.cache_bytes:
                self._archives[found.digest] = data
                while sum(len(d) for d in self._archives.values()) > self.cache_bytes:
                    self._archives.popitem(last=False)
        return data

    def registry_config(self, ref: Reference, credentials: Credentials | None) -> dict[str, Any]:
        """The registry configuration helm reads (Docker's config.json format) holding this login only."""
        login = _login(credentials)
        if login is None:
            return {"auths": {}}
        user, secret = login
        entry = {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()} if user else \
            {"registrytoken": secret}
        return {"auths": {ref.registry: entry}}

    # ------------------------------------------------------------ one request, with the registry's auth dance

    def _request(self, ref: Reference, method: str, path: str, credentials: Credentials | None, *, accept: str,
                 missing_ok: bool = False) -> tuple[int, Any, bytes]:
        login = _login(credentials)
        plain = self.plain_http(ref)
        if plain and login is not None:
            raise SourceError("CredentialsRefused", f"{ref.url}: a plain-http registry (--oci-plain-http-loopback) "
                                                    "is never sent a login; serve it over https")
        url = f"{'http' if plain else 'https'}://{ref.registry}/v2/{ref.repository}/{path}"
        context = _context(credentials)
        key = (ref.registry, ref.repository, login)
        with self._lock:
            authorization = self._auth.get(key)
        for attempt in range(2):  # the remembered Authorization (or none), then a fresh one for the challenge
            status, headers, body = self._open(ref, method, url, context, accept, authorization=authorization)
            if status == 404 and missing_ok:
                return status, headers, body
            if status != 401:
                if status >= 400:
                    raise SourceError("FetchFailed", f"{ref.url}: {method} {path}: HTTP {status}"
                                                     f"{_registry_error(body)}")
                if authorization:
                    with self._lock:
                        self._auth[key] = authorization
                        self._auth.move_to_end(key)
                        while len(self._auth) > MAX_REMEMBERED:  # a rotated Secret's login is not kept forever
                            self._auth.popitem(last=False)
                return status, headers, body
            if attempt == 1:
                break
            challenge = str(headers.get("WWW-Authenticate") or "")
            scheme = challenge.split(" ", 1)[0].lower()
            if scheme == "basic":
                if login is None or not login[0]:
                    raise SourceError("AuthenticationRequired", f"{ref.url}: the registry asks for a login; give "
                                                                "the Application a repository Secret "
                                                                "(spec.source.secretRef)")
                authorization = "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            elif scheme == "bearer":
                if login is not None and not login[0]:
                    authorization = f"Bearer {login[1]}"  # a token the Secret holds, sent as it is
                else:
                    authorization = f"Bearer {self._token(ref, challenge, login, context)}"
            else:
                raise SourceError("FetchFailed", f"{ref.url}: HTTP 401 with an authentication scheme driftguard "
                                                 f"does not speak ({challenge[:80]!r})")
        with self._lock:
            self._auth.pop(key, None)
        if login is None:
            raise SourceError("AuthenticationRequired", f"{ref.url}: the registry refused anonymous access; give the "
                                                        "Application a repository Secret (spec.source.secretRef)")
        raise SourceError("AuthenticationFailed", f"{ref.url}: the registry refused the login of the repository "
                                                  "Secret (spec.source.secretRef): check its username and password")

    def _token(self, ref: Reference, challenge: str, login: tuple[str, str] | None, context: ssl.SSLContext) -> str:
        """A bearer token from the registry's token service (``realm``), asked over https only."""
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm.lower().startswith("https://"):
            raise SourceError("FetchFailed", f"{ref.url}: the registry's token service {realm!r} is not https; "
                                             "driftguard asks none over plain http")
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(params)
        authorization = ("Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()) if login else None
        status, _, body = self._open(ref, "GET", url, context, "application/json", authorization=authorization)
        if status in (401, 403) and login is None:
            raise SourceError("AuthenticationRequired", f"{ref.url}: the registry's token service gives no anonymous "
                                                        "access; give the Application a repository Secret "
                                                        "(spec.source.secretRef)")
        if status in (401, 403):
            raise SourceError("AuthenticationFailed", f"{ref.url}: the registry's token service refused the login "
                                                      "of the repository Secret (spec.source.secretRef)")
        if status >= 400:
            raise SourceError("FetchFailed", f"{ref.url}: the registry's token service answered HTTP {status}")
        try:
            answer = json.loads(body)
            token = str(answer.get("token") or answer.get("access_token") or "")
        except (ValueError, AttributeError) as e:
            raise SourceError("FetchFailed", f"{ref.url}: the token service's answer is not JSON") from e
        if not token:
            raise SourceError("FetchFailed", f"{ref.url}: the token service gave no token")
        return token

    def _open(self, ref: Reference, method: str, url: str, context: ssl.SSLContext, accept: str, *,
              authorization: str | None) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(url, method=method,  # noqa: S310 - http(s), built here
                                         headers={"User-Agent": "driftguard", "Accept": accept})
        if authorization:
            request.add_unredirected_header("Authorization", authorization)
        opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_ANSWER_BYTES + 1)
                if len(body) > MAX_ANSWER_BYTES:
                    raise SourceError("TooLarge", f"{ref.url}: an answer larger than {MAX_ANSWER_BYTES} bytes")
                return response.status, response.headers, body
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read(MAX_ANSWER_BYTES)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            hint = ""
            if is_loopback(ref.host) and not self.plain_http(ref) and "SSL" in str(reason).upper():
                hint = (" (a loopback registry serving plain http needs the reconciler's --oci-plain-http-loopback; "
                        "one with its own CA needs ca.crt in the repository Secret)")
            raise SourceError("FetchFailed", f"{ref.url}: {reason}{hint}") from e


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A registry answer that redirects is refused (a login must never follow a redirect elsewhere)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,  # noqa: PLR0917 - urllib's
                         newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirected to {urllib.parse.urlsplit(newurl).netloc}",
                                     headers, fp)


def _login(credentials: Credentials | None) -> tuple[str, str] | None:
    if credentials is None or not credentials.token:
        return None
    return credentials.username, credentials.token


def _context(credentials: Credentials | None) -> ssl.SSLContext:
    return _context_for(credentials.ca if credentials is not None else "")


@functools.lru_cache(maxsize=64)
def _context_for(ca: str) -> ssl.SSLContext:
    """The system's CAs plus ``ca`` (loading the system's takes tens of milliseconds: once per CA)."""
    context = ssl.create_default_context()
    if ca:
        context.load_verify_locations(cadata=ca)
    return context


def _registry_error(body: bytes) -> str:
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return f" ({errors[0].get('code')}: {errors[0].get('message')})" if errors else ""
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
