"""Real azure-identity credentials for the tenants the local emulator hosts.

`emulator_credential_factory` gives, per customer tenant, the very credential a deployment
uses (`azure.identity.aio.ClientAssertionCredential` with the multi-tenant app's client id
and a managed identity token as the assertion), so the token request a test exercises is
the one azure-identity really sends. Two things differ, both at the edge:

- azure-identity takes only https authorities (`normalize_authority`), so the credential is
  given a placeholder https authority and a transport that sends every request to the
  emulator on loopback over http, rewriting scheme, host and port and nothing else;
- the assertion is `emulator_assertion(...)`, a JWT-shaped token with the claims of a
  managed identity token for `api://AzureADTokenExchange`: the emulator checks the claims
  and signs nothing (devtools/emulator/authz.py).

Nothing here reaches a real identity endpoint: the transport refuses any target that is not
a loopback address."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict
from azure.identity.aio import ClientAssertionCredential

from devtools.emulator.authz import make_jwt

FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
"""The audience of a managed identity token used as a federated credential (Entra global
service): https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity"""
PLACEHOLDER_AUTHORITY = "https://login.emulator.invalid"
"""Never resolved: the transport sends the request to the emulator. `.invalid` cannot exist
(RFC 2606), so a credential built without the transport fails instead of calling out."""


def managed_identity_issuer(tenant_id: str) -> str:
    """The issuer of a managed identity token, as a federated identity credential names it:
    the Entra authority of the identity's own tenant, `.../{tenant}/v2.0`."""
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


def emulator_assertion(*, tenant_id: str, principal_id: str,
                       audience: str = FEDERATED_AUDIENCE, lifetime_s: int = 3600) -> str:
    """A JWT-shaped managed identity token the emulator's token endpoint accepts when it was
    told (`EmulatorServer.federate`) that the app trusts this identity: `iss` is the
    identity's tenant authority, `sub` and `oid` its principal (object) id, `aud` the token
    exchange audience."""
    now = int(time.time())
    return make_jwt({
        "aud": audience,
        "iss": managed_identity_issuer(tenant_id),
        "sub": principal_id,
        "oid": principal_id,
        "tid": tenant_id,
        "idtyp": "app",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    })


def _loopback_origin(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None:
        raise ValueError(f"the emulator must be http on a loopback address and port: "
                         f"{base_url!r}")
    return parts.scheme, parts.netloc


class _Response(AsyncHttpResponseImpl):
    """An httpx response read in full, as azure-core's rest response."""

    def __init__(self, request: HttpRequest, response: httpx.Response):
        headers = case_insensitive_dict(response.headers)
        super().__init__(request=request, internal_response=response,
                         status_code=response.status_code, reason=response.reason_phrase,
                         content_type=headers.get("content-type"), headers=headers,
                         stream_download_generator=None)
        self._content = response.content

    async def close(self) -> None:
        if not self.is_closed:
            self._is_closed = True
            await self._internal_response.aclose()


class LoopbackTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """azure-core transport over httpx that sends each request to one loopback origin
    (`http://127.0.0.1:PORT`), keeping the request's path, query, headers and body."""

    def __init__(self, base_url: str, *, timeout: float = 10.0):
        self._scheme, self._netloc = _loopback_origin(base_url)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def target(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, parts.path, parts.query, ""))

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> LoopbackTransport:
        await self.open()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()

    async def send(self, request: HttpRequest, **kwargs: Any) -> _Response:
        await self.open()
        assert self._client is not None
        data = request.data if hasattr(request, "data") else None
        files = getattr(request, "files", None)
        if files:
            raise ValueError("LoopbackTransport sends no multipart bodies")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        if isinstance(data, dict):
            response = await self._client.request(request.method, self.target(request.url),
                                                   headers=headers, data=data)
        else:
            content = data if data is not None else getattr(request, "content", None)
            if isinstance(content, str):
                content = content.encode("utf-8")
            response = await self._client.request(request.method, self.target(request.url),
                                                   headers=headers, content=content)
        await response.aread()
        return _Response(request, response)


def emulator_credential_factory(emulator_base_url: str, app_client_id: str,
                                assertion: Callable[[], str],
                                ) -> Callable[[str], AsyncTokenCredential]:
    """`factory(tenant_id)` -> a ClientAssertionCredential for that customer tenant, whose
    token requests go to the emulator at `emulator_base_url`. Each credential has its own
    transport and token cache, as each tenant's Services has its own credential."""
    _loopback_origin(emulator_base_url)

    def factory(tenant_id: str) -> AsyncTokenCredential:
        return ClientAssertionCredential(
            tenant_id, app_client_id, assertion, authority=PLACEHOLDER_AUTHORITY,
            transport=LoopbackTransport(emulator_base_url))

    return factory

