"""One request per user and detection, whatever route and whatever form of the user it
carries: a B2B guest named by object id (the poller), by an upper-cased `#EXT#` UPN (an Event
Hub diagnostic record without userId) and by the guest's home mail address (an Event Grid
event, as sign-in-log based alerts name guests) is one user."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from shared.intake.dedupe import USERS_PARTITION, link_key
from shared.intake.poller import poll_once
from tests.intake.conftest import fixture_payload, intake_events, queued, user_function
from tests.intake.emulator_data import iso7, recent, seed_detections

GUEST_ID = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
GUEST_UPN = "ana.lima_fabrikam.com#EXT#@contoso.onmicrosoft.com"
GUEST_MAIL = "ana.lima@fabrikam.com"
DETECTION = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"


def add_guest(emulator: Any) -> None:
    tenant = emulator.tenant
    with tenant.lock:
        if GUEST_ID not in tenant.users:
            tenant.add_user({"id": GUEST_ID, "userPrincipalName": GUEST_UPN,
                             "mail": GUEST_MAIL, "userType": "Guest",
                             "displayName": "Ana Lima"})


def route_payloads(when: datetime) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The same detection as the poller reads it, as an Event Hub record and as an Event
    Grid event; shapes from the fixtures in tests/fixtures/alerts."""
    detection = fixture_payload("graph_risk_detection_guest_nulls")
    detection.update(userId=GUEST_ID, userPrincipalName=GUEST_UPN, riskLevel="high",
                     detectedDateTime=iso7(when), activityDateTime=iso7(when))
    detection.pop("someFutureField")
    hub_record = {
        "time": iso7(when), "category": "UserRiskEvents",
        "operationName": "User Risk Detection", "correlationId": DETECTION,
        "properties": {"id": DETECTION, "userPrincipalName": GUEST_UPN.upper(),
                       "riskLevel": "high", "riskState": "atRisk",
                       "riskEventType": "anonymizedIPAddress",
                       "detectedDateTime": iso7(when)},
    }
    grid_data = dict(detection, userId=None, userPrincipalName=GUEST_MAIL.title())
    return detection, hub_record, grid_data


async def test_a_guest_detection_through_three_routes_in_three_forms_is_one_request(
        svc: Any, emulator: Any) -> None:
    add_guest(emulator)
    detection, hub_record, grid_data = route_payloads(recent(10))
    seed_detections(emulator, [detection])

    hub_fn = user_function("risk_alert_eventhub")
    grid_fn = user_function("risk_alert_eventgrid")
    grid_event = func.EventGridEvent(
        id="eg-guest", data=grid_data, topic="/subscriptions/x/topics/risk",
        subject="identityProtection/riskDetections", event_type="Contoso.Identity.RiskDetected",
        event_time=datetime.now(UTC), data_version="1.0")
    hub_event = func.EventHubEvent(body=json.dumps({"records": [hub_record]}).encode(),
                                   sequence_number=1, partition_key="p0")
    poll, *_ = await asyncio.gather(poll_once(svc, page_size=50), hub_fn([hub_event]),
                                    grid_fn(grid_event))
    assert poll.completed and poll.detections == 1

    messages = await queued(svc)
    assert len(messages) == 1, messages
    assert messages[0]["riskLevel"] == "high"
    assert len(await intake_events(svc, "duplicate")) >= 1

    # Each looked-up form is kept as a link row: the next payload naming it needs no Graph.
    for form in (GUEST_UPN, GUEST_MAIL):
        row = await svc.journal.read_row(USERS_PARTITION, link_key(form.lower()))
        assert row is not None and row.values["userId"] == GUEST_ID


async def test_a_later_route_naming_the_guest_by_mail_is_a_duplicate(
        svc: Any, emulator: Any) -> None:
    """Sequential arrival: the object id first, then the mail form (no alias row can tie
    a mail address to the `#EXT#` UPN: only the directory can)."""
    add_guest(emulator)
    detection, _, grid_data = route_payloads(recent(5))
    hub_fn = user_function("risk_alert_eventhub")
    grid_fn = user_function("risk_alert_eventgrid")
    first = dict(detection, id="f" * 64)
    await hub_fn([func.EventHubEvent(body=json.dumps(first).encode(), sequence_number=1,
                                     partition_key="p0")])
    await grid_fn(func.EventGridEvent(
        id="eg-2", data=dict(grid_data, id="e" * 64), topic="/subscriptions/x/topics/risk",
        subject="s", event_type="Contoso.Identity.RiskDetected",
        event_time=datetime.now(UTC), data_version="1.0"))
    assert len(await queued(svc)) == 1


async def test_an_unknown_user_form_is_keyed_by_its_text_and_recorded(
        svc: Any, emulator: Any) -> None:
    """No directory user: nothing is lost, the request is queued under the name given."""
    hub_fn = user_function("risk_alert_eventhub")
    record = {"category": "UserRiskEvents", "operationName": "User Risk Detection",
              "properties": {"id": "d" * 64, "userPrincipalName": "nobody@fabrikam.com",
                             "riskLevel": "high", "riskState": "atRisk",
                             "detectedDateTime": iso7(recent(2))}}
    await hub_fn([func.EventHubEvent(body=json.dumps({"records": [record]}).encode(),
                                     sequence_number=1, partition_key="p0")])
    messages = await queued(svc)
    assert [m["user"] for m in messages] == ["nobody@fabrikam.com"]
    unresolved = await intake_events(svc, "user-unresolved")
    assert unresolved and "no single directory user" in json.dumps(unresolved, default=str)
