"""Alerts routed to the tenant they name, through the real path: the trigger functions with
real azure.functions objects -> intake -> Azurite (queue, each tenant's journal table) and
ONE emulator hosting two tenants, tenant B reached with a real ClientAssertionCredential."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest

from devtools.emulator import make_tenant
from functions import alerts_eventhub, alerts_http, risk_poller
from shared.intake.dedupe import DETECTIONS_PARTITION, USERS_PARTITION
from shared.state import partitions
from shared.state.journal import Journal
from tests.intake.conftest import queued

from .conftest import TENANT_A, TENANT_B, b_user, register

DEFAULT_DOMAIN = "contoso.onmicrosoft.com"
"""RESPONDER_TENANT_ID in these tests (a domain): alerts name the GUID, so the default
tenant is registered under its GUID with this domain, as docs/multi-tenant.md says."""


def security_alert(tenant: str, user: dict[str, Any], alert_id: str) -> dict[str, Any]:
    """A Graph security alert (alerts_v2) naming its tenant and one cloud user."""
    return {
        "@odata.type": "#microsoft.graph.security.alert", "id": alert_id,
        "tenantId": tenant, "title": "Suspicious inbox forwarding", "severity": "high",
        "status": "new", "serviceSource": "microsoftDefenderForOffice365",
        "createdDateTime": datetime.now(UTC).isoformat(),
        "evidence": [{"@odata.type": "#microsoft.graph.security.userEvidence",
                      "userAccount": {"azureAdUserId": user["id"],
                                      "userPrincipalName": user["userPrincipalName"]}}],
    }


def post(body: Any) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost/api/alerts", headers={
        "content-type": "application/json"}, body=json.dumps(body).encode())


def function(name: str) -> Any:
    module = {"risk_alert_http": alerts_http, "risk_alert_eventhub": alerts_eventhub,
              "risk_poller": risk_poller}[name]
    return getattr(module, name).build().get_user_function()


async def tables(hub: Any) -> set[str]:
    return {t.name async for t in hub.default.storage.tables.list_tables()}


async def test_an_alert_naming_tenant_b_is_queued_for_b_only(hub, two_tenants):
    await register(hub.registry)
    user = b_user(two_tenants)
    response = await function("risk_alert_http")(post(security_alert(TENANT_B, user, "al-b-1")))
    assert response.status_code == 202, response.get_body()
    assert json.loads(response.get_body())["enqueued"] == 1

    messages = await queued(hub.default)  # the one shared queue
    assert len(messages) == 1
    assert messages[0]["tenant"] == TENANT_B and messages[0]["user"] == user["id"]
    b = await hub.services_for(TENANT_B)
    # dedupe rows and intake records are B's, in B's own table
    assert b.settings.journal_table != hub.default.settings.journal_table
    users = await b.journal.items(USERS_PARTITION)
    assert {r["requestId"] for r in users if r.get("requestId")} == {messages[0]["requestId"]}
    assert len(await b.journal.items(DETECTIONS_PARTITION)) == 1
    kinds = [e["kind"] for e in await b.journal.events(partitions.INTAKE)]
    assert kinds == ["enqueued"]
    assert await hub.default.journal.items(USERS_PARTITION) == []
    assert await hub.default.journal.items(DETECTIONS_PARTITION) == []
    assert await hub.default.journal.events(partitions.INTAKE) == []

    # the same alert again is B's duplicate: found in B's rows, nothing more queued
    again = await function("risk_alert_http")(post(security_alert(TENANT_B, user, "al-b-1")))
    assert json.loads(again.get_body())["duplicates"] == 1
    assert await queued(hub.default) == []


async def test_an_alert_naming_an_unregistered_tenant_is_refused(hub, two_tenants):
    await register(hub.registry)
    stranger = str(uuid.uuid4())
    user = b_user(two_tenants)
    before = await tables(hub)
    response = await function("risk_alert_http")(post(security_alert(stranger, user, "al-x")))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["refused"] == 1 and body["enqueued"] == 0
    assert await queued(hub.default) == []
    # the refusal is recorded, with its reason, in the default tenant's intake journal
    records = await hub.default.journal.events(partitions.INTAKE)
    assert [(r["kind"], r["data"]["code"], r["data"]["tenant"]) for r in records] == [
        ("refused", "unknown_tenant", stranger)]
    assert records[0]["message"].startswith("unknown tenant")
    # no table was made for the stranger, and B's was not touched
    made = await tables(hub) - before
    assert not [t for t in made if stranger.replace("-", "") in t]
    b_table = hub.default.settings.for_tenant(TENANT_B).journal_table
    assert b_table not in made

    # a disabled tenant is refused the same way
    await register(hub.registry, enabled=False)
    hub.registry.invalidate()
    response = await function("risk_alert_http")(post(security_alert(TENANT_B, user, "al-d")))
    assert json.loads(response.get_body())["refused"] == 1
    assert await queued(hub.default) == []


async def test_an_alert_without_a_tenant_stays_the_default_tenants(hub, two_tenants):
    await register(hub.registry)
    megan = next(u for u in two_tenants.state()["users"]
                 if u["userPrincipalName"].lower().startswith("megan"))
    alert = security_alert(TENANT_A, megan, "al-a-1")
    del alert["tenantId"]
    reads = hub.registry.reads
    response = await function("risk_alert_http")(post(alert))
    assert json.loads(response.get_body())["enqueued"] == 1
    assert hub.registry.reads == reads  # no registry read on the default path
    [message] = await queued(hub.default)
    assert "tenant" not in message
    assert {r["requestId"] for r in await hub.default.journal.items(USERS_PARTITION)
            if r.get("requestId")} == {message["requestId"]}


def record(tenant: str, user: dict[str, Any], detection: str) -> dict[str, Any]:
    """A UserRiskEvents diagnostic record, as Entra streams it to Event Hubs."""
    return {"time": datetime.now(UTC).isoformat(), "tenantId": tenant,
            "category": "UserRiskEvents", "operationName": "User Risk Detection",
            "correlationId": detection,
            "properties": {"id": detection, "userId": user["id"],
                           "userPrincipalName": user["userPrincipalName"],
                           "riskEventType": "unfamiliarFeatures", "riskLevel": "high",
                           "riskState": "atRisk", "riskDetail": "none",
                           "detectedDateTime": datetime.now(UTC).isoformat()}}


async def test_an_event_hub_batch_is_split_between_its_tenants(hub, two_tenants):
    """One Event Hub body with a record for each tenant: each is taken in by its tenant;
    the default tenant, registered under its GUID (RESPONDER_TENANT_ID is its domain), keeps
    its very Services and table."""
    await register(hub.registry)
    await register(hub.registry, TENANT_A, displayName="Contoso", domains=[DEFAULT_DOMAIN])
    megan = next(u for u in two_tenants.state()["users"]
                 if u["userPrincipalName"].lower().startswith("megan"))
    user = b_user(two_tenants)
    body = {"records": [record(TENANT_A, megan, "det-a-1"), record(TENANT_B, user, "det-b-1"),
                        record(str(uuid.uuid4()), user, "det-x-1")]}
    event = func.EventHubEvent(body=json.dumps(body).encode())
    await function("risk_alert_eventhub")([event])

    messages = {m["user"]: m for m in await queued(hub.default)}
    assert set(messages) == {megan["id"], user["id"]}
    assert "tenant" not in messages[megan["id"]]
    assert messages[user["id"]]["tenant"] == TENANT_B
    b = await hub.services_for(TENANT_B)
    assert len(await b.journal.items(DETECTIONS_PARTITION)) == 1
    assert len(await hub.default.journal.items(DETECTIONS_PARTITION)) == 1
    refused = [e for e in await hub.default.journal.events(partitions.INTAKE)
               if e["data"].get("code") == "unknown_tenant"]
    assert len(refused) == 1 and refused[0]["data"]["detectionId"] == "det-x-1"


def _detect(server: Any, tenant: str | None, user: dict[str, Any]) -> None:
    state = server.tenant_of(tenant) if tenant else server.tenant
    with state.lock:
        state.add_detection({"userId": user["id"], "riskLevel": "high",
                             "detectedDateTime": (datetime.now(UTC) - timedelta(minutes=5)
                                                  ).isoformat().replace("+00:00", "Z")})


async def test_the_poller_reads_every_tenant_and_survives_a_withdrawn_consent(hub, two_tenants):
    c_id = str(uuid.uuid4())
    two_tenants.add_tenant(make_tenant(3, seed=9, domain="northwind.com"), tenant_id=c_id)
    await register(hub.registry)
    await register(hub.registry, c_id, displayName="Northwind", domains=["northwind.com"])
    user = b_user(two_tenants)
    megan = next(u for u in two_tenants.state()["users"]
                 if u["userPrincipalName"].lower().startswith("megan"))
    _detect(two_tenants, None, megan)
    _detect(two_tenants, TENANT_B, user)
    two_tenants.withdraw_consent(c_id)  # C removed the app before its first poll

    polls = await risk_poller.handle(TimerRequest(past_due=False))
    assert [p.tenant for p in polls.polls] == [DEFAULT_DOMAIN, c_id, TENANT_B] or \
        [p.tenant for p in polls.polls] == [DEFAULT_DOMAIN, TENANT_B, c_id]
    by_tenant = {p.tenant: p for p in polls.polls}
    assert by_tenant[DEFAULT_DOMAIN].result.completed
    assert by_tenant[TENANT_B].result.completed, by_tenant[TENANT_B].error
    assert "AADSTS700016" in (by_tenant[c_id].error or "")
    messages = await queued(hub.default)
    b_msgs = [m for m in messages if m.get("tenant") == TENANT_B]
    assert [m["user"] for m in b_msgs] == [user["id"]]
    assert megan["id"] in {m["user"] for m in messages if "tenant" not in m}
    # each tenant's watermark and lease rows are in its own table
    b = await hub.services_for(TENANT_B)
    assert await b.journal.get_item(partitions.INTAKE_POLLER, "riskDetections")
    # C's failure is in its registry row, with the AADSTS code and no token
    c_row = await hub.registry.get(c_id)
    assert c_row.consent_status == "withdrawn" and "AADSTS700016" in c_row.last_error
    assert "eyJ" not in c_row.last_error and "client_assertion" not in c_row.last_error
    assert (await hub.registry.get(TENANT_B)).consent_status == "ok"
    c_failed = Journal(hub.default.storage, hub.default.settings.for_tenant(c_id).journal_table,
                       "unused")
    failures = [e for e in await c_failed.events(partitions.INTAKE) if e["kind"] ==
                "poll-failed"]
    assert failures and all("eyJ" not in json.dumps(e, default=str) for e in failures)

    # consent granted again: the next tick polls C and marks it ok
    two_tenants.grant_consent(c_id)
    again = await risk_poller.handle(TimerRequest(past_due=False))
    assert not again.failed, again.summary()
    assert (await hub.registry.get(c_id)).consent_status == "ok"
    assert (await hub.registry.get(c_id)).last_error is None
