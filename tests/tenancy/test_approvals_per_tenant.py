"""Approvals of a tenant other than the default, through the real path: Azurite queue ->
local host -> the tenant's Services -> ONE emulator hosting two tenants (tenant B through a
real ClientAssertionCredential) -> the approval link -> the anonymous endpoint -> the resume
message -> the run resumed in tenant B. Also the escalation timer, in every tenant."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import TextBase64DecodePolicy

from devtools.tokens import emulator_credential_factory
from functions import runtime
from shared.safety import approvals
from shared.safety.approvals import decisions
from shared.services import Services
from shared.settings import Settings
from shared.state import clock
from shared.tenancy import TenantHub
from tests.conftest import make_settings
from tests.playbook.conftest import build_services, run_via_queue
from tests.safety.conftest import (
    APPROVAL_BASE,
    APPROVAL_SECRET,
    WEBHOOK_SECRET,
    Receiver,
    app_function,
    notify_policy,
)
from tests.safety.test_approval_costs import count_table_calls

from .conftest import APP_CLIENT_ID, TENANT_A, TENANT_B, assertion, b_user, register

TENANT_C = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
"""Registered, but its Services cannot be made (its policy file does not exist); its id
sorts before B's, so the timer meets it first."""
A_USER = "megan@contoso.com"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The webhook the approval links are sent to (tests.safety's receiver)."""
    made = Receiver()
    made.thread.start()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()


@pytest.fixture
def approval_settings(azurite, two_tenants) -> Settings:
    return make_settings(azurite, two_tenants,
                         RESPONDER_TENANTS_TABLE="tenants" + uuid.uuid4().hex[:12],
                         RESPONDER_APPROVAL_SECRET=APPROVAL_SECRET,
                         RESPONDER_WEBHOOK_SECRET=WEBHOOK_SECRET,
                         RESPONDER_APPROVAL_BASE_URL=APPROVAL_BASE)


@pytest.fixture
async def hub(approval_settings, two_tenants, receiver) -> AsyncIterator[TenantHub]:
    """Revoking sessions waits for approval for every user (approvalRequiredSteps), and the
    links go to the receiver's webhook; tenant B inherits this policy."""
    from shared.playbook.catalogue import check_policy

    default: Services = build_services(approval_settings, **notify_policy(receiver, mail=False),
                                       approvalRequiredSteps=["revoke_sessions"])
    factory = emulator_credential_factory(two_tenants.base_url, APP_CLIENT_ID, assertion)
    made = TenantHub(default, factory, check_policy=check_policy)
    runtime.use_hub(made)
    yield made
    runtime.use_hub(None)
    await made.close()
    await default.close()


def _links(receiver: Any, run_id: str) -> dict[str, str]:
    """decision -> the link URL of the approval.needed notification of `run_id`."""
    for body in receiver.json("/hook"):
        if body["event"] == "approval.needed" and body.get("runId") == run_id:
            return {("approve" if link["label"].startswith("Approve") else "deny"): link["url"]
                    for link in body["links"]}
    raise AssertionError(f"no approval.needed for {run_id}: {receiver.events()}")


def _token(url: str) -> str:
    return url.split("#token=", 1)[1]


async def _post(token: str, tenant: str | None = None, by: str = "soc.lead") \
        -> func.HttpResponse:
    fields = {"token": token, "by": by, **({"tenant": tenant} if tenant else {})}
    req = func.HttpRequest("POST", "http://localhost/api/approvals",
                           headers={"content-type": "application/x-www-form-urlencoded"},
                           body=urlencode(fields).encode())
    return await app_function("approvals")(req)


async def _queued(svc: Services) -> list[dict]:
    queue = svc.storage.queues.get_queue_client(svc.settings.remediation_queue,
                                                message_decode_policy=TextBase64DecodePolicy())
    return [json.loads(m.content) for m in await queue.peek_messages(max_messages=32)]


def _sessions(server: Any, tenant: str, upn: str) -> int:
    users = server.tenant_of(tenant).dump()["users"]
    user = next(u for u in users if u["userPrincipalName"].lower() == upn.lower())
    return int(user.get("sessionsRevokedCount", 0))


async def _wait_in_b(hub: TenantHub, two_tenants: Any, request_id: str) -> tuple[Services, str]:
    await register(hub.registry)
    upn = b_user(two_tenants)["userPrincipalName"]
    stats = await run_via_queue(hub.default, {
        "user": upn, "requestId": request_id, "tenant": TENANT_B,
        "actions": ["revoke_sessions"], "reason": "test"})
    assert stats.failed == 0 and stats.poisoned == 0
    b_svc = await hub.services_for(TENANT_B)
    run = await b_svc.journal.get_run(request_id)
    assert run is not None and run.state == "waiting_approval", run and run.reason
    return b_svc, upn


async def test_a_b_run_is_approved_through_its_tenant_link_and_resumes_in_b(
        hub, two_tenants, receiver, monkeypatch):
    b_svc, upn = await _wait_in_b(hub, two_tenants, "b-appr-1")
    before = _sessions(two_tenants, TENANT_B, upn)
    approval = await approvals.get_approval(b_svc, "b-appr-1")
    assert approval is not None and approval.state == "pending"
    assert approval.tenant == TENANT_B
    assert await approvals.get_approval(hub.default, "b-appr-1") is None  # in B's table only

    links = _links(receiver, "b-appr-1")
    assert links["approve"].startswith(f"{APPROVAL_BASE}?tenant={TENANT_B}#token=")
    token = _token(links["approve"])

    # B's token presented without its tenant, or as tenant A's, or with A's default-style
    # token for B's run: refused, with no write and no query in either journal
    a_calls = await count_table_calls(hub.default, monkeypatch)
    b_calls = await count_table_calls(b_svc, monkeypatch)
    unsigned_for_b = approvals.make_token(APPROVAL_SECRET.encode(), "b-appr-1", "approve",
                                          "n" * 32, approval.expires_at)
    counted = dict(decisions.refusal_counts())
    hub.registry.invalidate()
    registry_reads = hub.registry.reads
    for presented, tenant in ((token, None), (token, TENANT_A), (token, "contoso.com"),
                              (token, "not a tenant"), (unsigned_for_b, TENANT_B)):
        resp = await _post(presented, tenant)
        assert resp.status_code == 403, (tenant, resp.get_body())
        assert "not made for this tenant" in resp.get_body().decode()
    assert a_calls.writes == a_calls.queries == a_calls.reads == []
    assert b_calls.writes == b_calls.queries == b_calls.reads == []
    assert hub.registry.reads == registry_reads, "a caller's tenant never reaches the registry"
    assert decisions.refusal_counts()["wrong-tenant"] - counted.get("wrong-tenant", 0) == 5
    assert (await approvals.get_approval(b_svc, "b-appr-1")).state == "pending"
    assert _sessions(two_tenants, TENANT_B, upn) == before

    # the GET page carries the link's tenant into the form it posts
    page = await app_function("approvals")(func.HttpRequest(
        "GET", "http://localhost/api/approvals", params={"tenant": TENANT_B}, body=b""))
    assert f'name="tenant" value="{TENANT_B}"' in page.get_body().decode()

    ok = await _post(token, TENANT_B)
    assert ok.status_code == 200, ok.get_body()
    assert (await approvals.get_approval(b_svc, "b-appr-1")).state == "approved"
    [resume] = [m for m in await _queued(hub.default) if m.get("action") == "resume"]
    assert resume["tenant"] == TENANT_B and resume["runId"] == "b-appr-1"

    two_tenants.clear_log()
    stats = await run_via_queue(hub.default)
    assert stats.failed == 0 and stats.poisoned == 0
    run = await b_svc.journal.get_run("b-appr-1")
    assert run.state == "finished", run.reason
    assert _sessions(two_tenants, TENANT_B, upn) == before + 1
    assert {e["tenant"] for e in two_tenants.requests()} == {TENANT_B}
    assert await hub.default.journal.get_run("b-appr-1") is None
    assert await hub.default.journal.items("invalid-messages") == []
    # used once: the same link again is refused
    assert (await _post(token, TENANT_B)).status_code == 409


async def test_a_link_of_a_tenant_no_longer_served_is_refused_without_a_write(
        hub, two_tenants, receiver, monkeypatch):
    b_svc, _ = await _wait_in_b(hub, two_tenants, "b-appr-gone")
    token = _token(_links(receiver, "b-appr-gone")["approve"])
    await register(hub.registry, enabled=False)
    calls = await count_table_calls(b_svc, monkeypatch)
    resp = await _post(token, TENANT_B)
    assert resp.status_code == 404 and "no longer serves" in resp.get_body().decode()
    assert calls.writes == calls.queries == []
    assert (await approvals.get_approval(b_svc, "b-appr-gone")).state == "pending"


async def test_the_timer_escalates_in_every_tenant_and_one_failure_stops_nothing(
        hub, two_tenants, receiver, monkeypatch):
    b_svc, upn = await _wait_in_b(hub, two_tenants, "b-exp-1")
    before = _sessions(two_tenants, TENANT_B, upn)
    await register(hub.registry, tenant_id=TENANT_C, domains=["c.example"],
                   policy="policies/no-such-policy.json")
    stats = await run_via_queue(hub.default, {"user": A_USER, "requestId": "a-exp-1",
                                              "actions": ["revoke_sessions"]})
    assert stats.failed == 0
    assert (await hub.default.journal.get_run("a-exp-1")).state == "waiting_approval"
    assert await hub.tenants() == [hub.default.settings.tenant_id, TENANT_C, TENANT_B]

    later = clock.now() + timedelta(hours=30)
    monkeypatch.setattr(clock, "now", lambda: later)
    await app_function("approvals_escalation")(TimerRequest(past_due=False))

    assert (await approvals.get_approval(hub.default, "a-exp-1")).state == "expired"
    assert (await approvals.get_approval(b_svc, "b-exp-1")).state == "expired"
    b_kinds = [e["kind"] for e in await b_svc.journal.events("b-exp-1")]
    assert "approval-expired" in b_kinds and "approval-escalated" in b_kinds
    assert receiver.events().count("approval.escalated") == 2
    resumes = {m["runId"]: m.get("tenant") for m in await _queued(hub.default)
               if m.get("action") == "resume"}
    assert resumes == {"a-exp-1": None, "b-exp-1": TENANT_B}

    stats = await run_via_queue(hub.default)
    assert stats.failed == 0 and stats.poisoned == 0
    for svc, run_id in ((hub.default, "a-exp-1"), (b_svc, "b-exp-1")):
        run = await svc.journal.get_run(run_id)
        assert run.state == "failed" and "approval expired" in run.reason, run.reason
    assert _sessions(two_tenants, TENANT_B, upn) == before  # expired: never done

    # the timer again: nothing left to escalate anywhere
    result = await approvals.escalate_every_tenant(hub)
    assert result.escalated == {hub.default.settings.tenant_id: [], TENANT_B: []}
    assert set(result.failed) == {TENANT_C}
