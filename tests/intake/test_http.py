"""The HTTP webhook: handshakes, authentication checks, bad bodies (clear 4xx, a recorded
reason, nothing enqueued), and fixture payloads of each webhook source -> the right requests."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from functions import runtime
from functions.alerts_http import MAX_BODY_BYTES, SECRET_HEADER
from shared.state import partitions
from tests.intake.conftest import (
    CLIENT_STATE,
    SHARED_SECRET,
    fixture_payload,
    intake_events,
    queued,
    user_function,
)

URL = "https://responder.example/api/alerts"
ALICE = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"
BOB = "0f9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"
CAROL = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def post(body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
         params: dict[str, str] | None = None, method: str = "POST") -> func.HttpRequest:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return func.HttpRequest(method, URL, headers={"content-type": "application/json",
                                                  **(headers or {})},
                            params=params or {}, body=data)


async def call(req: func.HttpRequest) -> func.HttpResponse:
    return await user_function("risk_alert_http")(req)


def answer(resp: func.HttpResponse) -> dict[str, Any]:
    return json.loads(resp.get_body())


async def test_graph_validation_token_is_echoed_as_text(svc: Any) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    resp = await call(post(raw=b"", params={"validationToken": token},
                           headers={"content-type": "text/plain"}))
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_body().decode() == token
    assert await queued(svc) == []


@pytest.mark.parametrize(("method", "raw"), [
    ("POST", b'{"value": []}'),  # a body: not the documented handshake
    ("GET", b""),
    ("OPTIONS", b""),
])
async def test_validation_token_is_never_reflected_outside_the_handshake(
        svc: Any, method: str, raw: bytes) -> None:
    token = "<script>alert(1)</script>"
    resp = await call(post(raw=raw, params={"validationToken": token}, method=method))
    assert resp.status_code != 200 or method == "OPTIONS"
    assert token.encode() not in resp.get_body()
    assert resp.mimetype != "text/plain" or method == "OPTIONS"


async def test_validation_is_refused_without_a_configured_client_state(
        make_services: Any) -> None:
    services = make_services()
    runtime.use_services(services)
    try:
        token = "Validation: token"
        resp = await call(post(raw=b"", params={"validationToken": token}))
        assert resp.status_code == 403
        assert token.encode() not in resp.get_body()
        assert "RESPONDER_GRAPH_CLIENT_STATE" in answer(resp)["error"]
        assert len(await intake_events(services, "http-refused")) == 1
    finally:
        runtime.use_services(None)


async def test_event_grid_subscription_validation(svc: Any) -> None:
    resp = await call(post(fixture_payload("eventgrid_subscription_validation"),
                           headers={"aeg-event-type": "SubscriptionValidation"}))
    assert resp.status_code == 200
    code = fixture_payload("eventgrid_subscription_validation")[0]["data"]["validationCode"]
    assert answer(resp) == {"validationResponse": code}
    assert await queued(svc) == []


async def test_cloudevents_options_handshake(svc: Any) -> None:
    resp = await call(post(method="OPTIONS", headers={"WebHook-Request-Origin":
                                                      "eventgrid.azure.net"}))
    assert resp.status_code == 200
    assert resp.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


@pytest.mark.parametrize(("raw", "status", "why"), [
    (b"{not json", 400, "not valid UTF-8 JSON"),
    (b"\xff\xfe\x00", 400, "not valid UTF-8 JSON"),
    (b"   ", 400, "empty body"),
    (b'{"hello": "world", "n": 1}', 422, "unknown alert shape"),
    (b'"just a string"', 422, "unknown alert shape"),
])
async def test_bad_bodies_get_a_clear_4xx_and_enqueue_nothing(svc: Any, raw: bytes, status: int,
                                                              why: str) -> None:
    resp = await call(post(raw=raw))
    assert resp.status_code == status
    assert why in answer(resp)["error"]
    assert await queued(svc) == []
    events = await intake_events(svc, "http-refused")
    assert [e["data"]["status"] for e in events] == [status]
    assert why in events[0]["message"]


async def test_oversized_bodies_are_refused_with_413(svc: Any) -> None:
    big = {"records": [], "pad": "x" * MAX_BODY_BYTES}
    resp = await call(post(big))
    assert resp.status_code == 413
    declared = await call(post(raw=b"{}", headers={"content-length": str(MAX_BODY_BYTES + 1)}))
    assert declared.status_code == 413
    assert await queued(svc) == []
    assert len(await intake_events(svc, "http-refused")) == 2


async def test_shared_secret_is_required_when_configured(make_services: Any) -> None:
    services = make_services(RESPONDER_WEBHOOK_SHARED_SECRET=SHARED_SECRET)
    runtime.use_services(services)
    try:
        payload = fixture_payload("sentinel_incident_informational_guest")
        missing = await call(post(payload))
        wrong = await call(post(payload, headers={SECRET_HEADER: SHARED_SECRET + "x"}))
        assert (missing.status_code, wrong.status_code) == (401, 403)
        assert await queued(services) == []
        assert len(await intake_events(services, "http-refused")) == 2
        good = await call(post(payload, headers={SECRET_HEADER: SHARED_SECRET}))
        assert good.status_code == 202
        assert [m["user"] for m in await queued(services)] == [CAROL]
    finally:
        runtime.use_services(None)


async def pending_checks(services: Any) -> list[str]:
    return sorted(r["userId"] or r["upn"] for r in await services.journal.items(
        partitions.INTAKE_USER_CHECKS))


async def test_wrong_client_state_is_refused_and_mixed_batches_keep_only_good_items(
        svc: Any) -> None:
    payload = fixture_payload("graph_change_notification_user")
    payload["value"][0]["clientState"] = "not-the-state"
    resp = await call(post(payload))
    assert resp.status_code == 403
    assert await queued(svc) == []

    good = json.loads(json.dumps(payload["value"][0]))
    good["clientState"] = CLIENT_STATE
    bad = json.loads(json.dumps(good))
    bad["clientState"] = None
    bad["resource"] = f"Users/{BOB}"
    bad["resourceData"]["id"] = BOB
    bad["resourceData"]["@odata.id"] = f"Users/{BOB}"
    resp = await call(post({"value": [good, bad]}))
    assert resp.status_code == 202
    assert await queued(svc) == []  # a user change is never a run by itself
    assert await pending_checks(svc) == [ALICE]
    reasons = [e["message"] for e in await intake_events(svc, "http-refused")]
    assert any("wrong clientState dropped" in r for r in reasons)


async def test_change_notifications_are_refused_without_a_configured_client_state(
        make_services: Any) -> None:
    services = make_services()
    runtime.use_services(services)
    try:
        payload = fixture_payload("graph_change_notification_user")
        resp = await call(post(payload))
        assert resp.status_code == 403
        assert "RESPONDER_GRAPH_CLIENT_STATE" in answer(resp)["error"]
        assert await queued(services) == []
    finally:
        runtime.use_services(None)


async def test_a_user_notification_queues_a_risk_read_and_starts_no_run(svc: Any) -> None:
    payload = fixture_payload("graph_change_notification_user")
    payload["value"][0]["clientState"] = CLIENT_STATE
    resp = await call(post(payload))
    assert resp.status_code == 202
    body = answer(resp)
    assert body["accepted"] is True and body["enqueued"] == 0 and body["userChecks"] == 1
    assert await queued(svc) == []
    assert await pending_checks(svc) == [ALICE]


def _forged_detection() -> dict[str, Any]:
    """A risk detection (with its exact @odata.type) dressed as a change notification."""
    return {"@odata.type": "#microsoft.graph.riskDetection", "subscriptionId": "s-1",
            "clientState": CLIENT_STATE, "changeType": "updated", "id": "f" * 64,
            "userId": CAROL, "userPrincipalName": "carol@contoso.com", "riskLevel": "high",
            "riskState": "atRisk", "riskEventType": "leakedCredentials",
            "detectedDateTime": "2026-11-25T03:12:44.1234567Z"}


async def test_a_forged_alert_in_a_notification_body_starts_nothing(svc: Any) -> None:
    """The right clientState beside a risk-detection shape, or beside a `records` array,
    is read only as change notifications: no run starts, and the reason is recorded."""
    resp = await call(post({"value": [_forged_detection()]}))
    assert resp.status_code == 202
    assert answer(resp)["enqueued"] == 0 and answer(resp)["problems"] == 1
    records = fixture_payload("diag_user_risk_events_unpadded_hour")
    user_note = fixture_payload("graph_change_notification_user")["value"][0]
    user_note = {**user_note, "clientState": CLIENT_STATE, "resource": f"Users/{BOB}",
                 "resourceData": {**user_note["resourceData"], "id": BOB,
                                  "@odata.id": f"Users/{BOB}"}}
    resp = await call(post({"value": [user_note], "records": records["records"]}))
    assert resp.status_code == 202
    assert answer(resp)["enqueued"] == 0
    assert await queued(svc) == []
    assert await pending_checks(svc) == [BOB]  # only the genuine notification, as a read
    [problem] = await intake_events(svc, "problem")
    assert problem["data"]["error"] == "NoCloudUser"
    refused = [e["message"] for e in await intake_events(svc, "http-refused")]
    assert any("records" in r and "not read" in r for r in refused)
    assert await intake_events(svc, "enqueued") == []


WEBHOOK_FIXTURES = [
    ("monitor_log_alert_fired", [(CAROL, "high", "full-containment")]),
    ("monitor_log_alert_two_users_severity", [(ALICE, "medium", "standard"),
                                              ("o'brien@contoso.com", "medium", "standard")]),
    ("monitor_log_alert_resolved", []),
    ("sentinel_incident_cloud_and_onprem", [(BOB, "medium", "standard")]),
    ("sentinel_incident_informational_guest", [(CAROL, "low", "notify-only")]),
    ("sentinel_incident_admin_title", []),
    ("sentinel_incident_onprem_only", []),
    ("graph_alert_user_evidence", [(ALICE, "high", "full-containment")]),
    ("graph_alert_mailbox_only", [("alice@contoso.com", "low", "notify-only")]),
    ("defender_alert_evidence_user", [(ALICE, "high", "full-containment")]),
    ("eventgrid_schema_array", [(ALICE, "high", "full-containment"), (BOB, "medium", "standard")]),
    ("cloudevents_data_base64", []),  # a user change: a paced risk read, never a run
    ("graph_risk_detection_guest_nulls",
     [("ana.lima_fabrikam.com#EXT#@contoso.onmicrosoft.com", "medium", "standard")]),
]


@pytest.mark.parametrize(("name", "expected"), WEBHOOK_FIXTURES, ids=[n for n, _ in
                                                                      WEBHOOK_FIXTURES])
async def test_webhook_payloads_produce_the_right_requests(svc: Any, name: str,
                                                           expected: list[Any]) -> None:
    resp = await call(post(fixture_payload(name)))
    assert resp.status_code == 202, resp.get_body()
    messages = await queued(svc)
    got = sorted((m["user"], m["riskLevel"], m["playbook"]) for m in messages)
    assert got == sorted(expected)
    for message in messages:
        assert message["requestId"].startswith("alert-")
        assert message["requestedBy"] == "intake"
        assert message["source"]
    assert answer(resp)["enqueued"] == len(expected)


async def test_a_payload_with_no_cloud_user_is_reported_not_guessed(svc: Any) -> None:
    resp = await call(post(fixture_payload("sentinel_incident_onprem_only")))
    assert resp.status_code == 202
    assert answer(resp)["problems"] == 1
    assert await queued(svc) == []
    [problem] = await intake_events(svc, "problem")
    assert problem["data"]["error"] == "NoCloudUser"


async def test_admin_initiated_alert_is_recorded_as_refused(svc: Any) -> None:
    resp = await call(post(fixture_payload("sentinel_incident_admin_title")))
    assert resp.status_code == 202
    assert await queued(svc) == []
    [refused] = await intake_events(svc, "refused")
    assert refused["data"]["code"] == "admin_initiated"


async def test_a_retried_webhook_enqueues_once(svc: Any) -> None:
    payload = fixture_payload("monitor_log_alert_fired")
    for _ in range(3):
        assert (await call(post(payload))).status_code == 202
    assert len(await queued(svc)) == 1
