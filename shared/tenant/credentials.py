"""Credentials are chosen by settings and injected, never created inside API helpers.

In Azure the app uses its managed identity. Locally (the emulator, tests, the demo) a
static bearer token is used, and only when both service URLs are loopback: a static token
must never travel to a real endpoint, and a test must never reach a real credential (they
probe the instance metadata address).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken

# What msgraph-sdk's auth provider requires of a credential (an async context manager with
# get_token and close); the Exchange client needs a subset of it.
from azure.core.credentials_async import AsyncTokenCredential as AsyncTokenCredential

from shared.settings import Settings, SettingsError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"


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
