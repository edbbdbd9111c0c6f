"""TenantHub: the default Services for the default tenant (the very object), one Services
per registered tenant (built once), the tenant's policy, and refusals."""

from __future__ import annotations

import pytest

from shared.errors import UnknownTenant, ValidationError
from shared.policy import parse_policy
from shared.state.tenants import TenantRecord
from shared.tenancy import tenant_policy
from tests.playbook.conftest import DEMO_POLICY

from .conftest import B_DOMAIN, TENANT_A, TENANT_B, register


async def test_default_tenant_is_the_default_services(hub):
    for name in (None, "", hub.default.settings.tenant_id,
                 hub.default.settings.tenant_id.upper()):
        assert await hub.services_for(name) is hub.default
    assert hub.registry.reads == 0


async def test_a_registered_tenant_gets_its_own_services_once(hub):
    await register(hub.registry, exclusions=["ceo@fabrikam.com"])
    b = await hub.services_for(TENANT_B)
    assert await hub.services_for(B_DOMAIN) is b
    assert await hub.services_for(TENANT_B.upper()) is b
    assert b.settings.tenant_id == TENANT_B
    assert b.settings.evidence_container == f"{hub.default.settings.evidence_container}-" \
                                            f"{TENANT_B}"
    assert b.policy.excluded_user("CEO@fabrikam.com")
    assert not hub.default.policy.excluded_user("ceo@fabrikam.com")
    assert await hub.tenants() == [hub.default.settings.tenant_id, TENANT_B]
    assert await hub.tenant_of_domain(B_DOMAIN.upper()) == TENANT_B
    assert await hub.tenant_of_domain("unknown.example") is None
    assert issubclass(UnknownTenant, ValidationError)


async def test_refusals(hub):
    with pytest.raises(UnknownTenant, match="not registered"):
        await hub.services_for(TENANT_B)
    await register(hub.registry, enabled=False)
    with pytest.raises(UnknownTenant, match="disabled"):
        await hub.services_for(TENANT_B)
    assert await hub.tenants() == [hub.default.settings.tenant_id]
    await register(hub.registry, policy={"playbooks": {"x": ["format_disk"]},
                                         "riskLevelPlaybooks": {"low": "x", "medium": "x",
                                                                "high": "x"}})
    with pytest.raises(UnknownTenant, match="format_disk"):
        await hub.services_for(TENANT_B)
    assert hub._services == {}


def test_tenant_policy_adds_exclusions_notify_and_narrows_playbooks():
    base = parse_policy(DEMO_POLICY)
    record = TenantRecord.model_validate({
        "tenantId": TENANT_B, "exclusions": ["vip@fabrikam.com"],
        "notify": ["https://hooks.example/b", "soc@fabrikam.com"],
        "features": ["revoke_sessions", "notify", "risky_users"]})
    policy = tenant_policy(base, record)
    assert policy.excluded_user("vip@fabrikam.com")
    assert set(base.exclusions.users) <= set(policy.exclusions.users)
    assert policy.notify.webhook_url == "https://hooks.example/b"
    assert policy.notify.soc_mailbox == "soc@fabrikam.com"
    assert {s for steps in policy.playbooks.values() for s in steps} <= {"revoke_sessions",
                                                                         "notify"}
    assert tenant_policy(base, TenantRecord(tenantId=TENANT_A)) is base


async def test_the_default_tenant_registered_by_guid_is_still_the_default(hub):
    """RESPONDER_TENANT_ID here is a domain (contoso.onmicrosoft.com): a row for the same
    tenant, by GUID with that domain, maps to the default Services, not to new tables."""
    default_name = hub.default.settings.tenant_id
    await register(hub.registry, tenant_id=TENANT_A, domains=[default_name])
    assert await hub.services_for(TENANT_A) is hub.default
    assert hub._services == {}
