"""The one Graph client factory, and the raw JSON calls every Graph helper goes through.

Requests are built as kiota `RequestInformation` and sent by msgraph-sdk's own request
adapter, so authentication, the middleware pipeline and the retry transport always apply.
The native response is read directly: JSON bodies are kept whole for evidence, and every
error becomes a typed `ServiceError` with Graph's code and request-id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware import (
    HeadersInspectionHandler,
    ParametersNameDecodingHandler,
    UserAgentHandler,
)
from kiota_http.middleware.options import ResponseHandlerOption
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from shared.errors import (
    BadRequest,
    ReadOnlyViolation,
    ServiceDetails,
    ServiceError,
    Throttled,
    Unavailable,
    error_for_status,
)
from shared.permissions import PermissionForbidden, names_in
from shared.settings import Settings
from shared.tenant.credentials import GRAPH_SCOPE, AsyncTokenCredential
from shared.tenant.http import http_transport
from shared.tenant.retry import (
    TRANSIENT_ERRORS,
    RetryPolicy,
    RetryStats,
    RetryTransport,
    parse_retry_after,
)

ApiVersion = Literal["v1.0", "beta"]
MAX_PAGES = 10_000
"""A safety stop for paging: a server that keeps sending nextLinks must not loop forever."""

_METHODS = {m.value: m for m in Method}


def encode_segment(value: str) -> str:
    """Percent-encode one path segment (ids, UPNs with `'` or `#EXT#`) so it stays one.

    `.` and `..` would survive encoding and be collapsed by URL normalisation into another
    path, so they are refused.
    """
    if value.strip() in ("", ".", ".."):
        raise BadRequest(f"{value!r} is not a valid id or UPN", service="graph", status=400,
                         code="InvalidPathSegment")
    return quote(value, safe="@")


def build_path(template: str, *segments: str) -> str:
    """Fill `{}` placeholders in a path with encoded segments: build_path('/users/{}', upn)."""
    return template.format(*(encode_segment(s) for s in segments))


def permission_hint(permission: str | None, role: str | None = None) -> str:
    """A sentence for a 403 naming what the identity likely lacks."""
    if not permission and not role:
        return "the app identity lacks a Graph permission or directory role"
    parts = []
    if permission:
        parts.append(f"application permission {permission}")
    if role:
        parts.append(f"directory role {role}")
    return "the app identity likely lacks " + " and ".join(parts)


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    method: str,
    path: str,
    permission: str | None = None,
    role: str | None = None,
) -> ServiceError:
    """Build the typed error for a failed Graph response (direct or a $batch item)."""
    code = None
    message = ""
    request_id = headers.get("request-id") or headers.get("client-request-id")
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or "") or None
        message = str(err.get("message") or "")
        inner = err.get("innerError") or err.get("innererror") or {}
        if isinstance(inner, dict):
            request_id = request_id or inner.get("request-id")
    if not message:
        message = f"Graph answered HTTP {status}"
    if status in (401, 403):
        message = f"{message.rstrip('.')}. {permission_hint(permission, role)}"
    cls = error_for_status(status)
    kwargs: ServiceDetails = {
        "service": "graph",
        "status": status,
        "code": code,
        "request_id": request_id,
        "method": method,
        "path": path,
    }
    if cls is Throttled:
        return Throttled(message, retry_after=parse_retry_after(headers.get("Retry-After")),
                         **kwargs)
    if status in (401, 403):
        # Carries what the call site says it needs, so the run records which is missing.
        return PermissionForbidden(message, needs=names_in(permission),
                                 roles=(role,) if role else (), **kwargs)
    return cls(message, **kwargs)


@dataclass
class GraphClient:
    """msgraph-sdk clients for v1.0 and beta, plus raw JSON calls through their adapter."""

    sdk: GraphServiceClient
    beta_adapter: GraphRequestAdapter
    base_url: str
    http: httpx.AsyncClient
    stats: RetryStats
    read_only: bool = False
    """A dry-run view: any write raises before it is sent (belt and braces: dry runs only
    call `plan`, which only reads)."""
    transport: httpx.AsyncBaseTransport | None = None
    """The retry transport under the Graph SDK's own (which does not pass `aclose` down):
    closed with the client, so its connections close too."""

    def view(self, *, read_only: bool) -> GraphClient:
        """The same connection, with or without the write guard."""
        return replace(self, read_only=read_only)

    @property
    def adapter(self) -> GraphRequestAdapter:
        # The SDK types it as the abstract RequestAdapter; create_graph_client builds it as a
        # GraphRequestAdapter, the only kind this client ever holds.
        return self.sdk.request_adapter  # type: ignore[return-value]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        version: ApiVersion = "v1.0",
        priority: bool = False,
        permission: str | None = None,
        role: str | None = None,
    ) -> Any:
        """Send one call; return the parsed JSON body (None for 204). Raises ServiceError.

        `path` is relative to the version (`/users/{id}`) or an absolute nextLink URL.
        `priority` adds `x-ms-throttle-priority: High` (containment calls).
        """
        if self.read_only and not _is_read(method, path, body):
            raise ReadOnlyViolation(f"dry run: refused to send {method} {_loggable(path)}")
        response = await self._send(method, path, body=body, params=params, headers=headers,
                                    version=version, priority=priority)
        parsed = _json_or_none(response)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.headers, parsed,
                                      method=method, path=_loggable(path),
                                      permission=permission, role=role)
        return parsed

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        version: ApiVersion,
        priority: bool,
    ) -> httpx.Response:
        adapter = self.adapter if version == "v1.0" else self.beta_adapter
        info = RequestInformation()
        info.http_method = _METHODS[method.upper()]
        if path.startswith(("https://", "http://")):
            url = path
        else:
            url = f"{self.base_url}/{version}{path}"
            if params:
                url += "?" + urlencode(params, quote_via=quote, safe="$,()")
        info.url = url
        if headers:
            for name, value in headers.items():
                info.headers.try_add(name, value)
        if priority:
            info.headers.try_add("x-ms-throttle-priority", "High")
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
            info.headers.try_add("Content-Type", "application/json")
        info.headers.try_add("Accept", "application/json")
        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        try:
            # The native response handler hands back the raw httpx response, not bytes.
            response: httpx.Response = await adapter.send_primitive_async(info, "bytes", None)
            return response
        except TRANSIENT_ERRORS as exc:
            # The retry transport already spent its attempts: hand the runner a typed,
            # retryable error (the queue redelivers), not a raw httpx exception.
            raise Unavailable(f"Graph unreachable after retries: {type(exc).__name__}",
                              service="graph", method=method, path=_loggable(path)) from exc

    async def pages(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        version: ApiVersion = "v1.0",
        permission: str | None = None,
        max_pages: int = MAX_PAGES,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page's `value` list, following `@odata.nextLink` until the end."""
        next_path: str | None = path
        first = True
        count = 0
        while next_path:
            count += 1
            if count > max_pages:
                raise ServiceError(f"paging stopped after {max_pages} pages", service="graph",
                                   path=_loggable(path))
            page = await self.request("GET", next_path, params=params if first else None,
                                      version=version, permission=permission)
            first = False
            yield list((page or {}).get("value") or [])
            link = (page or {}).get("@odata.nextLink")
            next_path = self._checked_next_link(link) if link else None

    async def list_all(self, path: str, **kw: Any) -> list[dict[str, Any]]:
        """All items of a collection, every page collected."""
        items: list[dict[str, Any]] = []
        async for page in self.pages(path, **kw):
            items.extend(page)
        return items

    def _checked_next_link(self, link: str) -> str:
        """A nextLink must point at the configured Graph host: never follow one elsewhere."""
        if urlsplit(link).netloc != urlsplit(self.base_url).netloc:
            raise ServiceError("refusing a nextLink to another host", service="graph")
        return link

    async def close(self) -> None:
        await self.http.aclose()
        if self.transport is not None:
            await self.transport.aclose()


READ_POSTS = ("/checkMemberGroups", "/getMemberGroups", "/getMemberObjects")


def _is_read(method: str, path: str, body: Any) -> bool:
    method = method.upper()
    if method == "GET":
        return True
    if method == "POST" and _loggable(path).endswith(READ_POSTS):
        return True
    if method == "POST" and _loggable(path).endswith("/$batch") and isinstance(body, dict):
        return all(str(r.get("method", "")).upper() == "GET" for r in body.get("requests", []))
    return False


def _json_or_none(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _loggable(path: str) -> str:
    """The path without its query (a $filter may hold a UPN; keep records lean)."""
    return path.split("?", 1)[0]


def create_graph_client(
    settings: Settings,
    credential: AsyncTokenCredential,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    policy: RetryPolicy | None = None,
    timeout: float = 30.0,
) -> GraphClient:
    """Build the Graph client: injected credential, base URL from settings, explicit scope,
    the retry transport, and kiota's middleware minus its own retry handler."""
    policy = policy or RetryPolicy(max_attempts=settings.max_attempts,
                                   max_total_wait=settings.max_retry_wait_seconds)
    retry = RetryTransport(transport or http_transport(), policy)
    http = httpx.AsyncClient(transport=retry, timeout=timeout)
    middleware = [ParametersNameDecodingHandler(), UserAgentHandler(), HeadersInspectionHandler()]
    http = GraphClientFactory.create_with_custom_middleware(middleware=middleware, client=http)
    host = urlsplit(settings.graph_base_url).hostname or ""
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=[GRAPH_SCOPE],
        allowed_hosts=[host],
    )
    base = settings.graph_base_url.rstrip("/")
    v1 = GraphRequestAdapter(auth, http)
    v1.base_url = f"{base}/v1.0"
    beta = GraphRequestAdapter(auth, http)
    beta.base_url = f"{base}/beta"
    return GraphClient(sdk=GraphServiceClient(request_adapter=v1), beta_adapter=beta,
                       base_url=base, http=http, stats=retry.stats, transport=retry)
