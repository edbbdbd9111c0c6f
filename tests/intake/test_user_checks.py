"""User change notifications are not risk signals: through the real path (HTTP webhook or
Event Grid trigger -> Azurite -> the risk_poller timer -> the emulator's riskyUsers/{id}),
a notification starts a run only when Identity Protection says the user is at risk, and the
responder's own password reset never loops back into another run."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from tests.intake.conftest import CLIENT_STATE, intake_events, queued, user_function

MEGAN = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"  # demo tenant: riskyUser atRisk, high
URL = "https://responder.example/api/alerts"


def notification(user: str) -> dict[str, Any]:
    """A Graph `users` change notification, as a webhook receives it."""
    return {"value": [{
        "subscriptionId": "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
        "subscriptionExpirationDateTime": "2026-11-27T03:12:44.1234567+00:00",
        "clientState": CLIENT_STATE, "changeType": "updated", "resource": f"Users/{user}",
        "tenantId": "9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user}",
                         "id": user}}]}


async def post_notification(user: str) -> func.HttpResponse:
    req = func.HttpRequest("POST", URL, headers={"content-type": "application/json"},
                           params={}, body=json.dumps(notification(user)).encode())
    resp: func.HttpResponse = await user_function("risk_alert_http")(req)
    return resp


def risky_reads(emulator: Any, user: str) -> list[dict[str, Any]]:
    path = f"/identityProtection/riskyUsers/{user}"
    return [e for e in emulator.requests()
            if e["method"] == "GET" and e["path"].endswith(path)]


async def poll() -> None:
    await user_function("risk_poller")(TimerRequest(past_due=False))


async def test_a_notification_for_an_at_risk_user_starts_a_run_only_after_a_risk_read(
        svc: Any, emulator: Any) -> None:
    resp = await post_notification(MEGAN)
    assert resp.status_code == 202
    assert await queued(svc) == []  # the notification alone starts nothing
    await poll()
    assert len(risky_reads(emulator, MEGAN)) == 1
    [message] = await queued(svc)
    assert (message["user"], message["riskLevel"], message["source"]) == (
        MEGAN, "high", "graph.riskyUser")  # the level Identity Protection reported


async def test_a_notification_for_a_user_without_risk_starts_nothing(svc: Any,
                                                                     emulator: Any) -> None:
    calm = next(uid for uid in emulator.tenant.users if uid not in emulator.tenant.risky_users)
    assert (await post_notification(calm)).status_code == 202
    await poll()
    assert len(risky_reads(emulator, calm)) == 1  # one paced read, answered 404
    assert await queued(svc) == []
    [check] = await intake_events(svc, "user-check")
    assert "no risk record" in check["message"]


async def test_the_responders_own_password_reset_does_not_start_another_run(
        svc: Any, emulator: Any) -> None:
    request = {"user": MEGAN, "actions": ["reset_password"], "requestId": "helpdesk-1",
               "reason": "helpdesk: suspected phishing"}
    await user_function("remediation_worker")(QueueMessage(
        id="m1", body=json.dumps(request).encode(), dequeue_count=1))
    assert await svc.journal.runs_for_user(MEGAN)
    # Graph notifies the users subscription of the reset the responder just made
    assert (await post_notification(MEGAN)).status_code == 202
    await poll()
    assert risky_reads(emulator, MEGAN) == []  # not even read
    assert await queued(svc) == []
    [check] = await intake_events(svc, "user-check")
    assert check["data"]["outcome"] == "skipped"
    assert "ran on this user recently" in check["message"]


async def test_a_user_updated_event_grid_event_is_a_risk_read_not_a_run(
        svc: Any, emulator: Any) -> None:
    data = {**notification(MEGAN)["value"][0], "resource": f"Users/{MEGAN}"}
    event = func.EventGridEvent(id="e1", data=data, topic="/tenants/t/applications/a",
                                subject=f"Users/{MEGAN}",
                                event_type="Microsoft.Graph.UserUpdated", event_time=None,
                                data_version="1.0")
    await user_function("risk_alert_eventgrid")(event)
    assert await queued(svc) == []
    await user_function("risk_alert_eventgrid")(event)  # a storm for one user: one read
    await poll()
    assert len(risky_reads(emulator, MEGAN)) == 1
    assert [m["user"] for m in await queued(svc)] == [MEGAN]
    await user_function("risk_alert_eventgrid")(event)  # the run's own changes notify again
    await poll()
    assert len(risky_reads(emulator, MEGAN)) == 1  # a request is in the dedupe window
    assert await queued(svc) == []
