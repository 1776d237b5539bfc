"""The one place driftguard talks HTTP to a Kubernetes API server.

``Kube`` wraps ``kubernetes.client.ApiClient`` for what that library does well (kubeconfig and
in-cluster loading, client certificates, bearer tokens, TLS, connection pooling) and for nothing else:
requests and responses are plain JSON dicts, never the generated model classes, so every caller speaks
the same wire format the API server documents. Library and transport errors become ``KubeError``
(status, reason, message parsed from the server's ``Status`` body), raised ``from`` the original.
Response ``Warning`` headers (admission warnings, deprecations) are returned, never dropped.

It refuses to retry, cache, or guess: callers decide what a 409 or a 410 means to them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


class KubeError(Exception):
    """The API server refused a request, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str, warnings: Sequence[str] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.warnings = tuple(warnings)


@dataclass(frozen=True)
class Response:
    """A decoded JSON response with the server's warnings."""

    body: dict[str, Any]
    warnings: tuple[str, ...]


class Kube:
    """A JSON client for one API server and one identity.

    Build it from a kubeconfig path (its current context, or ``context``), or with no path from the
    in-cluster ServiceAccount. ``impersonate_user``/``impersonate_group`` add impersonation headers
    to every request (the caller needs the RBAC ``impersonate`` verb; the underlying client sends one
    value per header, hence one group). Request bodies are JSON-serialisable objects; an apply patch
    is sent as JSON with ``content_type="application/apply-patch+yaml"`` (JSON is YAML).
    """

    def __init__(
        self,
        kubeconfig: str | PathLike[str] | None = None,
        *,
        context: str | None = None,
        impersonate_user: str | None = None,
        impersonate_group: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._setup(_load_configuration(kubeconfig, context), timeout)
        if impersonate_user:
            self._api.set_default_header("Impersonate-User", impersonate_user)
        if impersonate_group:
            self._api.set_default_header("Impersonate-Group", impersonate_group)

    def _setup(self, configuration: client.Configuration, timeout: float) -> None:
        self.timeout = timeout
        self._api = client.ApiClient(configuration)
        self._api.user_agent = "driftguard"

    @property
    def server(self) -> str:
        """The API server's base URL, e.g. ``https://127.0.0.1:6443``."""
        return str(self._api.configuration.host)

    def with_token(self, token: str) -> Kube:
        """A client for the same server and CA that authenticates with a bearer ``token`` instead."""
        source = self._api.configuration
        target = client.Configuration()
        target.host = source.host
        target.ssl_ca_cert = source.ssl_ca_cert
        target.verify_ssl = source.verify_ssl
        target.tls_server_name = source.tls_server_name
        target.api_key = {"authorization": f"Bearer {token}"}
        kube = Kube.__new__(Kube)
        kube._setup(target, self.timeout)
        return kube

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the decoded JSON body (``{}`` when empty)."""
        return self.request_with_warnings(
            method, path, body=body, query=query, content_type=content_type, headers=headers
        ).body

    def request_with_warnings(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Like ``request``, also returning the texts of the response's ``Warning`` headers."""
        raw = self._call(
            method,
            path,
            body=body,
            query=query,
            content_type=content_type,
            headers=headers,
            timeout=(self.timeout, self.timeout),
        )
        try:
            data = raw.data
        finally:
            raw.release_conn()
        return Response(body=_decode_object(data, method, path), warnings=parse_warnings(raw.headers))

    def stream(
        self, path: str, query: Mapping[str, str] | None = None, *, timeout: float = 60.0
    ) -> Iterator[dict[str, Any]]:
        """Yield the line-delimited JSON objects of a watch until the server ends it.

        ``watch=true`` and ``timeoutSeconds`` (from ``timeout``) are added to ``query``; the client
        gives up reading 10 s after that, so a dead connection cannot hang the caller.
        """
        params = {"watch": "true", "timeoutSeconds": str(max(1, int(timeout))), **(query or {})}
        raw = self._call(
            "GET",
            path,
            body=None,
            query=params,
            content_type="application/json",
            headers=None,
            timeout=(10.0, timeout + 10.0),
        )
        try:
            yield from _json_lines(raw, path)
        finally:
            raw.release_conn()

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: object | None,
        query: Mapping[str, str] | None,
        content_type: str,
        headers: Mapping[str, str] | None,
        timeout: tuple[float, float],
    ) -> urllib3.BaseHTTPResponse:
        if isinstance(body, str | bytes):
            raise TypeError(f"{method} {path}: body must be a JSON-serialisable object, not text")
        header_params = {"Accept": "application/json", "Content-Type": content_type, **(headers or {})}
        try:
            return self._api.call_api(  # type: ignore[no-any-return]
                path,
                method.upper(),
                query_params=list((query or {}).items()),
                header_params=header_params,
                body=body,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as error:
            raise _kube_error(error, method, path) from error
        except urllib3.exceptions.HTTPError as error:
            raise KubeError(0, "Unreachable", f"{method.upper()} {self.server}{path}: {error}") from error


def parse_warnings(headers: Mapping[str, str] | None) -> tuple[str, ...]:
    """The texts of RFC 7234 ``Warning`` headers (``299 - "text"``), in order."""
    if headers is None:
        return ()
    values = headers.getlist("Warning") if isinstance(headers, urllib3.HTTPHeaderDict) else []
    if not values and headers.get("Warning"):
        values = [headers["Warning"]]
    return tuple(_warning_text(value) for value in values)


def parse_status(status: int, body: bytes | str | None) -> tuple[str, str]:
    """(reason, message) from an API server ``Status`` body, tolerating non-JSON bodies."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        document = json.loads(text)
    except ValueError:
        return _default_reason(status), text.strip()[:500]
    if not isinstance(document, dict):
        return _default_reason(status), text.strip()[:500]
    reason = str(document.get("reason") or _default_reason(status))
    return reason, str(document.get("message") or text.strip()[:500])


def _warning_text(value: str) -> str:
    match = _WARNING.match(value)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else value.strip()


def _default_reason(status: int) -> str:
    return "Unknown" if status == 0 else f"HTTP{status}"


def _kube_error(error: ApiException, method: str, path: str) -> KubeError:
    status = int(error.status or 0)
    if status == 0:
        return KubeError(0, "Unreachable", f"{method.upper()} {path}: {error.reason}")
    reason, message = parse_status(status, error.body)
    return KubeError(status, reason, message, parse_warnings(error.headers))


def _decode_object(data: bytes, method: str, path: str) -> dict[str, Any]:
    if not data:
        return {}
    document = json.loads(data)
    if not isinstance(document, dict):
        raise KubeError(0, "BadResponse", f"{method.upper()} {path}: expected a JSON object")
    return document


def _json_lines(raw: urllib3.BaseHTTPResponse, path: str) -> Iterator[dict[str, Any]]:
    buffer = b""
    try:
        for chunk in raw.stream(64 * 1024, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (_decode_object(line, "WATCH", path) for line in lines if line.strip())
    except urllib3.exceptions.HTTPError as error:
        raise KubeError(0, "Unreachable", f"WATCH {path}: {error}") from error
    if buffer.strip():
        yield _decode_object(buffer, "WATCH", path)


def _load_configuration(kubeconfig: str | PathLike[str] | None, context: str | None) -> client.Configuration:
    configuration = client.Configuration()
    source = "in-cluster configuration" if kubeconfig is None else f"kubeconfig {kubeconfig}"
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        raise KubeError(0, "InvalidConfiguration", f"{source}: {error}") from error
    return configuration
