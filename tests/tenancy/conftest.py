"""Fixtures for one deployment serving two tenants: the demo tenant (the default, A) and
tenant B, both hosted by ONE emulator; B's tokens come from a real ClientAssertionCredential
(the multi-tenant app, trusted through the managed identity's federated credential)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devtools.emulator import EmulatorServer, load_tenant, make_tenant
from devtools.tokens import emulator_assertion, emulator_credential_factory, managed_identity_issuer
from functions import runtime
from shared.services import Services
from shared.settings import Settings
from shared.state.tenants import TenantRecord, TenantRegistry
from shared.tenancy import TenantHub
from tests.conftest import TOKEN, make_settings
from tests.playbook.conftest import build_services

TENANT_A = "3c9e5a71-8d2b-4f06-a4e1-7b5c2d9f0e68"
"""The demo tenant's id (the emulator's default tenant)."""
TENANT_B = "7a1e4c2d-9b3f-4e5a-8c6d-0f1e2d3c4b5a"
APP_CLIENT_ID = "4f9c2e1a-7b6d-4a3c-9e8f-1d2c3b4a5e6f"
MI_PRINCIPAL = "2b8d6f4a-1c3e-4f5a-9b7d-8e6c4a2f0d13"
B_DOMAIN = "fabrikam.com"


def assertion() -> str:
    """The managed identity token the app's federated credential trusts."""
    return emulator_assertion(tenant_id=TENANT_A, principal_id=MI_PRINCIPAL)


@pytest.fixture
def two_tenants() -> Iterator[EmulatorServer]:
    """One emulator: the demo tenant (default) and a generated tenant B (fabrikam.com)."""
    with EmulatorServer(load_tenant("devtools/tenants/demo.json"), token=TOKEN,
                        seed=1) as srv:
        srv.add_tenant(make_tenant(4, seed=3, domain=B_DOMAIN), tenant_id=TENANT_B)
        srv.federate(app_client_id=APP_CLIENT_ID, issuer=managed_identity_issuer(TENANT_A),
                     subject=MI_PRINCIPAL)
        yield srv


@pytest.fixture
def mt_settings(azurite, two_tenants) -> Settings:
    return make_settings(azurite, two_tenants,
                         RESPONDER_TENANTS_TABLE="tenants" + uuid.uuid4().hex[:12])


@pytest.fixture
async def hub(mt_settings, two_tenants) -> AsyncIterator[TenantHub]:
    """The hub the functions use (runtime.use_hub): default Services on the static token,
    other tenants through real ClientAssertionCredentials against the emulator."""
    from shared.playbook.catalogue import check_policy

    default: Services = build_services(mt_settings)
    factory = emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)
    made = TenantHub(default, factory, check_policy=check_policy)
    runtime.use_hub(made)
    yield made
    runtime.use_hub(None)
    await made.close()
    await default.close()


async def register(registry: TenantRegistry, tenant_id: str = TENANT_B, **fields: Any) \
        -> TenantRecord:
    record = TenantRecord.model_validate({"tenantId": tenant_id, "displayName": "Fabrikam",
                                          "domains": [B_DOMAIN], **fields})
    return await registry.add(record)


def b_user(server: EmulatorServer) -> dict:
    """A mailbox user of tenant B that no policy excludes."""
    users = server.tenant_of(TENANT_B).dump()["users"]
    return next(u for u in users if "breakglass" not in u["userPrincipalName"].lower()
                and u.get("accountEnabled", True))
