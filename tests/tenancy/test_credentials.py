"""The credential factory: federated-app builds a ClientAssertionCredential per tenant
(inspected, no network); other kinds act for the default tenant only."""

from __future__ import annotations

import dataclasses

import pytest
from azure.identity.aio import ClientAssertionCredential

from shared.settings import Settings, SettingsError
from shared.tenant.credentials import (
    FEDERATION_SCOPE,
    ManagedIdentityAssertion,
    StaticTokenCredential,
    build_credential,
    credential_factory,
    storage_credential,
)

from .conftest import APP_CLIENT_ID, TENANT_B

TENANT_A = "3c9e5a71-8d2b-4f06-a4e1-7b5c2d9f0e68"
MI_CLIENT = "11111111-2222-3333-4444-555555555555"
FEDERATED = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "RESPONDER_TENANT_ID": TENANT_A, "RESPONDER_CREDENTIAL": "federated-app",
             "AZURE_CLIENT_ID": MI_CLIENT, "RESPONDER_APP_CLIENT_ID": APP_CLIENT_ID}


def never_called() -> str:
    raise AssertionError("the assertion is asked for only when a token is requested")


async def test_federated_app_builds_a_client_assertion_credential_per_tenant():
    settings = Settings.from_env({**FEDERATED,
                                  "RESPONDER_AUTHORITY_HOST": "https://login.example"})
    factory = credential_factory(settings, assertion=never_called)
    b, a = factory(TENANT_B), factory(TENANT_A)
    try:
        assert isinstance(b, ClientAssertionCredential)
        assert (b._client._tenant_id, b._client._client_id) == (TENANT_B, APP_CLIENT_ID)
        assert a._client._tenant_id == TENANT_A and a is not b  # type: ignore[attr-defined]
        assert b._client._authority == "https://login.example"
        assert b._func is never_called
    finally:
        await a.close()
        await b.close()


async def test_federated_default_credential_and_storage_identity():
    settings = Settings.from_env(FEDERATED)
    default = build_credential(settings)
    try:
        assert isinstance(default, ClientAssertionCredential)
        assert default._client._tenant_id == TENANT_A
        # storage is the managed identity's (it holds the storage roles), not the app's
        from azure.identity.aio import ManagedIdentityCredential

        storage = storage_credential(settings, default)
        assert isinstance(storage, ManagedIdentityCredential)
        await storage.close()
    finally:
        await default.close()


def test_federated_app_refuses_missing_client_ids():
    settings = Settings.from_env(FEDERATED)
    with pytest.raises(SettingsError, match="RESPONDER_APP_CLIENT_ID"):
        credential_factory(dataclasses.replace(settings, app_client_id=""))
    with pytest.raises(SettingsError, match="AZURE_CLIENT_ID"):
        credential_factory(dataclasses.replace(settings, managed_identity_client_id=""))


def test_managed_identity_assertion_is_cached_and_never_shown():
    class Source:
        calls = 0

        def get_token(self, *scopes: str) -> object:
            assert scopes == (FEDERATION_SCOPE,)
            Source.calls += 1

            @dataclasses.dataclass
            class Token:
                token: str = "mi-assertion-secret"
                expires_on: int = 2_000_000_000
            return Token()

    assertion = ManagedIdentityAssertion(MI_CLIENT, Source())
    assert assertion() == assertion() == "mi-assertion-secret"
    assert Source.calls == 1
    assert "secret" not in repr(assertion)


async def test_static_token_serves_the_default_tenant_only():
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                  "RESPONDER_TENANT_ID": TENANT_A,
                                  "RESPONDER_CREDENTIAL": "static-token",
                                  "RESPONDER_STATIC_TOKEN": "t",
                                  "GRAPH_BASE_URL": "http://127.0.0.1:1",
                                  "EXCHANGE_BASE_URL": "http://127.0.0.1:1"})
    factory = credential_factory(settings)
    assert isinstance(factory(TENANT_A.upper()), StaticTokenCredential)
    with pytest.raises(SettingsError, match="federated-app"):
        factory(TENANT_B)
