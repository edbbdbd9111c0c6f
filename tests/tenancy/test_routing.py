"""Queue messages routed to their tenant, through the real path: Azurite queue -> local host
-> queue-triggered function -> the tenant's Services -> ONE emulator hosting two tenants,
tenant B reached with a real ClientAssertionCredential (token endpoint of the emulator)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from azure.storage.queue import TextBase64DecodePolicy

from shared.playbook.worker import INVALID_PARTITION
from shared.state.journal import Journal
from shared.state.storage import poison_queue_name
from tests.playbook.conftest import MEGAN, run_via_queue

from .conftest import B_DOMAIN, TENANT_A, TENANT_B, b_user, register


def _user(state: dict, upn: str) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == upn.lower())


def writes(server: Any, tenant: str | None = None) -> list[dict]:
    return [e for e in server.requests(tenant) if e.get("write")]


async def _invalid_rows(hub: Any) -> list[dict]:
    return await hub.default.journal.items(INVALID_PARTITION)


async def _poisoned(hub: Any) -> list[str]:
    queue = hub.default.storage.queues.get_queue_client(
        poison_queue_name(hub.default.settings.remediation_queue),
        message_decode_policy=TextBase64DecodePolicy())
    return [m.content async for m in queue.receive_messages()]


async def test_a_message_naming_tenant_b_acts_in_b_only(hub, two_tenants):
    await register(hub.registry)
    user = b_user(two_tenants)
    b_before, a_before = two_tenants.tenant_of(TENANT_B).dump(), two_tenants.state()
    two_tenants.clear_log()
    stats = await run_via_queue(hub.default, {
        "user": user["userPrincipalName"], "requestId": "mt-b-1", "tenant": TENANT_B,
        "actions": ["revoke_sessions"], "reason": "test"})
    assert stats.failed == 0 and stats.poisoned == 0
    b_after = two_tenants.tenant_of(TENANT_B).dump()
    upn = user["userPrincipalName"]
    assert _user(b_after, upn).get("sessionsRevokedCount", 0) == \
        _user(b_before, upn).get("sessionsRevokedCount", 0) + 1
    assert two_tenants.state() == a_before, "tenant A is untouched"
    assert writes(two_tenants, TENANT_A) == [] and writes(two_tenants, TENANT_B)
    assert {e["tenant"] for e in two_tenants.requests()} == {TENANT_B}
    # B's run is in B's journal table, not A's
    b_svc = await hub.services_for(TENANT_B)
    assert b_svc is not hub.default
    assert b_svc.settings.journal_table == (hub.default.settings.journal_table + "t"
                                            + TENANT_B.replace("-", ""))
    run = await b_svc.journal.get_run("mt-b-1")
    assert run is not None and run.state == "finished"
    assert run.request.get("tenant") == TENANT_B
    assert await hub.default.journal.get_run("mt-b-1") is None
    # nothing tenant-scoped is shared between the two Services
    for part in ("credential", "graph", "exchange", "journal", "confirm", "identity_budget",
                 "exchange_limit"):
        assert getattr(b_svc, part) is not getattr(hub.default, part), part
    assert b_svc.storage is hub.default.storage  # the account and queues are shared
    assert b_svc.lanes is hub.default.lanes  # so is the instance's CPU: its containment slots


async def test_a_domain_names_the_tenant_too(hub, two_tenants):
    await register(hub.registry)
    user = b_user(two_tenants)
    stats = await run_via_queue(hub.default, {
        "user": user["userPrincipalName"], "requestId": "mt-b-2", "tenant": B_DOMAIN.upper(),
        "actions": ["revoke_sessions"]})
    assert stats.failed == 0
    b_svc = await hub.services_for(TENANT_B)
    run = await b_svc.journal.get_run("mt-b-2")
    assert run is not None and run.state == "finished"
    assert run.request.get("tenant") == TENANT_B  # later messages name it by id
    assert writes(two_tenants, TENANT_A) == []


async def test_a_message_without_tenant_runs_the_default_tenant_as_before(hub, two_tenants):
    """No tenant: the default Services, the default tables, and no registry read at all."""
    await register(hub.registry)
    hub.registry.invalidate()
    reads = hub.registry.reads
    b_before, a_before = two_tenants.tenant_of(TENANT_B).dump(), two_tenants.state()
    stats = await run_via_queue(hub.default, {"user": MEGAN, "requestId": "mt-a-1",
                                              "actions": ["revoke_sessions"]})
    assert stats.failed == 0
    assert hub.registry.reads == reads, "the default tenant's path never reads the registry"
    assert _user(two_tenants.state(), MEGAN)["sessionsRevokedCount"] == \
        _user(a_before, MEGAN).get("sessionsRevokedCount", 0) + 1
    assert two_tenants.tenant_of(TENANT_B).dump() == b_before
    assert {e["tenant"] for e in two_tenants.requests()} == {TENANT_A}
    run = await hub.default.journal.get_run("mt-a-1")
    assert run is not None and run.state == "finished" and "tenant" not in run.request
    assert hub._services == {}, "no Services were made for another tenant"


@pytest.mark.parametrize(("tenant", "reason"), [
    ("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "unknown tenant"),
    ("unknown.example", "unknown tenant"),
    ("../../etc/passwd", "tenant must be a tenant id (GUID) or a domain name"),
    ("fabrikam.com'; DROP TABLE x;--", "tenant must be a tenant id (GUID) or a domain name"),
    ("x" * 300, "tenant"),
])
async def test_unknown_tenants_and_hostile_strings_are_refused(hub, two_tenants, tenant,
                                                               reason):
    await register(hub.registry)
    two_tenants.clear_log()
    body = json.dumps({"user": MEGAN, "requestId": "mt-x-" + uuid.uuid4().hex[:6],
                       "tenant": tenant, "actions": ["revoke_sessions"]})
    stats = await run_via_queue(hub.default, body)
    assert stats.failed == 0  # refused at once: not retried
    assert two_tenants.requests() == [], "nothing was called in any tenant"
    rows = await _invalid_rows(hub)
    assert len(rows) == 1 and reason in rows[0]["reason"]
    assert await _poisoned(hub) == [body]
    assert hub._services == {}


async def test_a_disabled_tenant_is_refused(hub, two_tenants):
    await register(hub.registry, enabled=False)
    two_tenants.clear_log()
    body = json.dumps({"user": b_user(two_tenants)["userPrincipalName"],
                       "requestId": "mt-d-1", "tenant": TENANT_B,
                       "actions": ["revoke_sessions"]})
    await run_via_queue(hub.default, body)
    assert two_tenants.requests() == []
    rows = await _invalid_rows(hub)
    assert len(rows) == 1 and rows[0]["reason"].startswith("unknown tenant")
    assert "disabled" in rows[0]["reason"]
    assert await _poisoned(hub) == [body]
    # and B's table was never made
    b_journal = Journal(hub.default.storage,
                        hub.default.settings.for_tenant(TENANT_B).journal_table, "unused")
    tables = [t.name async for t in hub.default.storage.tables.list_tables()]
    assert b_journal._table_name not in tables


async def test_the_default_tenants_storage_operations_are_unchanged(azurite, two_tenants,
                                                                    mt_settings):
    """The same default-tenant run costs the same Table and Blob operations with a populated
    registry and a hub as with no registry at all, and never touches the registry table."""
    from functions import runtime
    from shared.playbook.catalogue import check_policy
    from shared.services import Services
    from shared.tenancy import TenantHub
    from tests.playbook.conftest import DEMO_POLICY

    async def one_run(with_registry: bool, request_id: str) -> tuple[dict, list[str]]:
        from shared.policy import parse_policy
        from shared.tenant.credentials import StaticTokenCredential
        from tests.conftest import TOKEN

        ops: dict[str, int] = {"table": 0, "blob": 0}
        urls: list[str] = []

        def hook(kind: str) -> Any:
            def count(request: Any) -> None:
                ops[kind] += 1
                urls.append(request.http_request.url)
            return count
        svc = Services.create(mt_settings, credential=StaticTokenCredential(TOKEN),
                              policy=parse_policy(DEMO_POLICY), confirm_window=0.05,
                              storage_hooks={k: hook(k) for k in ops})
        hub = TenantHub(svc, lambda t: StaticTokenCredential(TOKEN), check_policy=check_policy)
        if with_registry:
            await register(hub.registry)
        await svc.journal.ensure()
        await run_via_queue(svc, {"user": MEGAN, "requestId": "warm-" + request_id,
                                  "actions": ["revoke_sessions"]})  # queues made, budget row
        runtime.use_hub(hub)
        try:
            ops.update(table=0, blob=0)
            urls.clear()
            await run_via_queue(svc, {"user": MEGAN, "requestId": request_id,
                                      "actions": ["revoke_sessions", "require_mfa"]})
        finally:
            runtime.use_hub(None)
            await hub.close()
            await svc.close()
        return ops, urls

    plain, _ = await one_run(False, "ops-1")
    routed, urls = await one_run(True, "ops-2")
    assert routed == plain and plain["table"] > 0
    assert not [u for u in urls if mt_settings.tenants_table in u]
