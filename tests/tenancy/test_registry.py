"""The tenant registry against Azurite: add, get, list, remove, status, the per-process
cache, and a missing table read as an empty registry."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from shared.state import tenants as tenants_mod
from shared.state.storage import create_storage
from shared.state.tenants import PARTITION, TenantRecord, TenantRegistry
from tests.conftest import make_settings

from .conftest import TENANT_B

TENANT_C = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"


class _NoEmulator:
    base_url = "http://127.0.0.1:9"


@pytest.fixture
async def registry(azurite):
    settings = make_settings(azurite, _NoEmulator())
    storage = create_storage(settings)
    yield TenantRegistry(storage, "tenants" + uuid.uuid4().hex[:12])
    await storage.close()


async def test_missing_table_is_an_empty_registry(registry):
    assert await registry.list() == []
    assert await registry.get(TENANT_B) is None
    assert await registry.by_domain("fabrikam.com") is None
    assert await registry.remove(TENANT_B) is False
    assert await registry.set_status(TENANT_B, consent_status="ok") is None


async def test_add_get_list_remove(registry):
    added = await registry.add(TenantRecord.model_validate({
        "tenantId": TENANT_B.upper(), "displayName": "Fabrikam",
        "domains": ["Fabrikam.COM", "fabrikam.onmicrosoft.com"],
        "policy": "policies/msp.json", "exclusions": ["ceo@fabrikam.com"],
        "notify": ["https://hooks.example/soc", "soc@fabrikam.com"],
        "features": ["revoke_sessions", "risky_users"]}))
    assert added.tenant_id == TENANT_B and added.added_at is not None
    await registry.add(TenantRecord(tenantId=TENANT_C, displayName="Contoso Ltd",
                                    policy={"exclusions": {"users": ["bg@contoso.com"]}}))
    # the row: partition `tenants`, row key = the tenant id in lower case
    entity = await registry._client().get_entity(PARTITION, TENANT_B)
    assert entity["displayName"] == "Fabrikam" and entity["enabled"] is True
    got = await registry.get(TENANT_B.upper())
    assert got is not None and got.domains == ["fabrikam.com", "fabrikam.onmicrosoft.com"]
    assert got.policy == "policies/msp.json" and got.features == ["revoke_sessions",
                                                                   "risky_users"]
    assert got.consent_status == "unknown"
    assert [r.tenant_id for r in await registry.list()] == sorted([TENANT_B, TENANT_C])
    c = await registry.get(TENANT_C)
    assert c is not None and c.policy == {"exclusions": {"users": ["bg@contoso.com"]}}
    assert (await registry.by_domain("FABRIKAM.com")).tenant_id == TENANT_B  # type: ignore
    # adding again keeps the first addedAt
    again = await registry.add(got.model_copy(update={"display_name": "Fabrikam Inc"}))
    assert again.added_at == got.added_at
    assert await registry.remove(TENANT_B) is True
    assert await registry.remove(TENANT_B) is False
    assert [r.tenant_id for r in await registry.list()] == [TENANT_C]


async def test_set_status_records_consent_and_errors(registry):
    await registry.add(TenantRecord(tenantId=TENANT_B, displayName="Fabrikam"))
    record = await registry.set_status(TENANT_B, consent_status="withdrawn",
                                       last_error="AADSTS7000229: no service principal")
    assert record is not None
    stored = await registry.get(TENANT_B)
    assert stored is not None and stored.consent_status == "withdrawn"
    assert stored.consent_checked_at is not None and "AADSTS7000229" in (stored.last_error
                                                                          or "")
    await registry.set_status(TENANT_B, consent_status="ok", enabled=False)
    stored = await registry.get(TENANT_B)
    assert stored is not None and stored.enabled is False and stored.last_error is None


async def test_reads_are_cached_and_a_miss_refreshes_soon(registry, monkeypatch):
    await registry.add(TenantRecord(tenantId=TENANT_B))
    for _ in range(5):
        assert await registry.get(TENANT_B) is not None
    assert registry.reads == 1  # one query, then the snapshot
    # another process adds C: this one finds it after the short miss window, not before
    other = TenantRegistry(registry._storage, registry.table_name)
    await other.add(TenantRecord(tenantId=TENANT_C))
    monkeypatch.setattr(tenants_mod, "MISS_REFRESH_SECONDS", 3600.0)
    assert await registry.get(TENANT_C) is None
    monkeypatch.setattr(tenants_mod, "MISS_REFRESH_SECONDS", 0.0)
    assert await registry.get(TENANT_C) is not None
    assert registry.reads == 2


@pytest.mark.parametrize("fields", [
    {"tenantId": "contoso.com"},
    {"tenantId": "not-a-guid"},
    {"tenantId": TENANT_B, "domains": ["bad domain"]},
    {"tenantId": TENANT_B, "policy": "../secrets.json"},
    {"tenantId": TENANT_B, "policy": "/etc/passwd"},
    {"tenantId": TENANT_B, "notify": ["http://plain.example/hook"]},
    {"tenantId": TENANT_B, "notify": ["https://a.example", "https://b.example"]},
    {"tenantId": TENANT_B, "consentStatus": "maybe"},
])
def test_bad_records_are_refused(fields):
    with pytest.raises(ValidationError):
        TenantRecord.model_validate(fields)
