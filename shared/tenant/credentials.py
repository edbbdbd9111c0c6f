"""Credentials are chosen by settings and injected, never created inside API helpers.

In Azure the app uses its managed identity. Locally (the emulator, tests, the demo) a
static bearer token is used, and only when both service URLs are loopback: a static token
must never travel to a real endpoint, and a test must never reach a real credential (they
probe the instance metadata address).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken

# What msgraph-sdk's auth provider requires of a credential (an async context manager with
# get_token and close); the Exchange client needs a subset of it.
from azure.core.credentials_async import AsyncTokenCredential as AsyncTokenCredential

from shared.settings import Settings, SettingsError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
FEDERATION_SCOPE = "api://AzureADTokenExchange/.default"
"""The audience of the managed identity token an app's federated credential accepts
(https://learn.microsoft.com/en-us/graph/api/resources/federatedidentitycredential: the
audiences of a credential trusted by Microsoft Entra ID are api://AzureADTokenExchange)."""

CredentialFactory = Callable[[str], AsyncTokenCredential]
"""Tenant id -> a credential whose tokens are for that tenant."""


class StaticTokenCredential:
    """Returns one fixed token for any scope. For loopback endpoints only."""

    def __init__(self, token: str) -> None:
        if not token:
            raise SettingsError("a static token credential needs a token")
        self._token = token

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenCredential(<redacted>)"

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None


def build_credential(settings: Settings) -> AsyncTokenCredential:
    """The credential the settings ask for. Imports azure-identity lazily (cold start)."""
    if settings.credential == "federated-app":
        return credential_factory(settings)(settings.tenant_id)
    if settings.credential == "static-token":
        if not settings.loopback_only:
            raise SettingsError("static-token is refused for non-loopback base URLs")
        return StaticTokenCredential(settings.static_token)
    if settings.credential == "default":
        from azure.identity.aio import DefaultAzureCredential

        return DefaultAzureCredential(
            managed_identity_client_id=settings.managed_identity_client_id or None
        )
    from azure.identity.aio import ManagedIdentityCredential

    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return ManagedIdentityCredential()


class ManagedIdentityAssertion:
    """The client assertion of the federated-app credential: a managed identity token for
    api://AzureADTokenExchange, shared by every tenant (it names the app, not a tenant) and
    kept until five minutes before it expires.

    ClientAssertionCredential calls its `func` synchronously, only when it has no cached
    token for a tenant (about once an hour per tenant); the managed identity endpoint is
    local to the instance, so the short blocking call is bounded."""

    def __init__(self, client_id: str, source: Any = None) -> None:
        self._client_id = client_id
        self._source = source
        self._lock = threading.Lock()
        self._token = ""
        self._expires_on = 0

    def __repr__(self) -> str:  # never show the assertion
        return f"ManagedIdentityAssertion(client_id={self._client_id!r})"

    def __call__(self) -> str:
        with self._lock:
            if not self._token or self._expires_on - time.time() < 300:
                if self._source is None:
                    from azure.identity import ManagedIdentityCredential

                    self._source = ManagedIdentityCredential(client_id=self._client_id)
                token = self._source.get_token(FEDERATION_SCOPE)
                self._token, self._expires_on = token.token, int(token.expires_on)
            return self._token


def credential_factory(settings: Settings, *, assertion: Callable[[], str] | None = None,
                       **credential_kwargs: Any) -> CredentialFactory:
    """Credentials per tenant, as RESPONDER_CREDENTIAL says.

    `federated-app`: a ClientAssertionCredential for the tenant and RESPONDER_APP_CLIENT_ID
    (the multi-tenant app), whose assertion is the managed identity's token
    (https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity);
    no secret exists anywhere. Other kinds can only act for RESPONDER_TENANT_ID: a managed
    identity's tokens are for its own tenant, and a static token is one tenant's (tests
    inject a factory of their own for more). `assertion` and `credential_kwargs` (a
    `transport`) are for tests."""
    if settings.credential == "federated-app":
        if not settings.app_client_id:
            raise SettingsError("RESPONDER_APP_CLIENT_ID is required for federated-app")
        if assertion is None:
            if not settings.managed_identity_client_id:
                raise SettingsError("AZURE_CLIENT_ID (the managed identity) is required for "
                                    "federated-app")
            assertion = ManagedIdentityAssertion(settings.managed_identity_client_id)
        func = assertion
        options = dict(credential_kwargs)
        if settings.authority_host:
            options["authority"] = settings.authority_host

        def federated(tenant_id: str) -> AsyncTokenCredential:
            from azure.identity.aio import ClientAssertionCredential

            return ClientAssertionCredential(tenant_id=tenant_id,
                                             client_id=settings.app_client_id,
                                             func=func, **options)
        return federated

    def own_tenant_only(tenant_id: str) -> AsyncTokenCredential:
        if not settings.is_default_tenant(tenant_id):
            raise SettingsError(f"RESPONDER_CREDENTIAL={settings.credential} acts for "
                                "RESPONDER_TENANT_ID only; other tenants need federated-app")
        return build_credential(settings)
    return own_tenant_only


def storage_credential(settings: Settings, credential: AsyncTokenCredential) \
        -> AsyncTokenCredential:
    """The credential of identity-based storage: the app's managed identity, which holds the
    storage roles. With federated-app the tenant credential is the multi-tenant app's, in
    another tenant, so storage gets the managed identity itself."""
    if settings.credential != "federated-app":
        return credential
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
