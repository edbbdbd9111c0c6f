"""Event Grid and Event Hub triggers with real binding objects: the right requests, bad events
recorded without losing the good ones, and group exclusions checked off the HTTP path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from functions import runtime
from tests.intake.conftest import fixture_payload, intake_events, queued, user_function

ALICE = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"
BOB = "0f9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"
CAROL = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
MEGAN = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"
FINANCE = "7b2eac50-4d9f-4e63-9077-2c3d4e5f6071"


def grid_event(data: Any, event_type: str = "Contoso.Risk.Detected",
               event_id: str = "ev-1") -> func.EventGridEvent:
    return func.EventGridEvent(id=event_id, data=data, topic="/subscriptions/x/topics/risk",
                               subject="risk", event_type=event_type,
                               event_time=datetime(2026, 11, 25, 3, 12, tzinfo=UTC),
                               data_version="1.0")


def hub_event(body: Any, seq: int) -> func.EventHubEvent:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.EventHubEvent(body=raw, sequence_number=seq, partition_key="p0",
                              enqueued_time=datetime(2026, 11, 25, 8, 49, tzinfo=UTC))


def triples(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((m["user"], m["riskLevel"], m["playbook"]) for m in messages)


async def test_event_grid_trigger_takes_in_the_wrapped_detection(svc: Any) -> None:
    detection = fixture_payload("graph_risk_detection_basic")
    await user_function("risk_alert_eventgrid")(grid_event(detection))
    [message] = await queued(svc)
    assert (message["user"], message["riskLevel"], message["playbook"]) == (
        ALICE, "high", "full-containment")
    assert message["detectedAt"].startswith("2026-11-25T03:12:44.123456")
    # Event Grid redelivers: nothing new.
    await user_function("risk_alert_eventgrid")(grid_event(detection))
    assert await queued(svc) == []


async def test_event_grid_trigger_unwraps_a_monitor_alert(svc: Any) -> None:
    inner = fixture_payload("eventgrid_monitor_alert_bare_data")
    data = inner[0]["data"] if isinstance(inner, list) else inner.get("data", inner)
    await user_function("risk_alert_eventgrid")(grid_event(data))
    assert triples(await queued(svc)) == [(ALICE, "medium", "standard")]


async def test_event_grid_trigger_records_an_unreadable_event(svc: Any) -> None:
    await user_function("risk_alert_eventgrid")(grid_event({"what": "ever"}))
    assert await queued(svc) == []
    [problem] = await intake_events(svc, "problem")
    assert "UnknownShape" in problem["message"]


async def test_event_hub_batch_one_bad_event_never_loses_the_others(svc: Any) -> None:
    events = [
        hub_event(fixture_payload("diag_mixed_batch_one_broken"), 1),
        hub_event(b"{this is not json", 2),
        hub_event({"no": "records here"}, 3),
        hub_event(fixture_payload("defender_alert_evidence_user"), 4),
        hub_event(fixture_payload("diag_user_risk_events_admin_dismissed"), 5),
    ]
    await user_function("risk_alert_eventhub")(events)
    assert triples(await queued(svc)) == sorted([
        (ALICE, "high", "full-containment"), (BOB, "medium", "standard"),
        (CAROL, "medium", "standard"),
    ])
    refused = await intake_events(svc, "eventhub-refused")
    assert sorted(e["data"]["sequenceNumber"] for e in refused) == [2, 3]
    problems = await intake_events(svc, "problem")
    assert len(problems) == 4  # the broken records inside event 1
    admin = [e for e in await intake_events(svc, "refused")
             if e["data"].get("code") == "admin_initiated"]
    assert len(admin) == 1


async def test_event_hub_batch_produces_one_request_per_user(svc: Any) -> None:
    events = [hub_event(fixture_payload("diag_mixed_batch_one_broken"), 1),
              hub_event(fixture_payload("diag_user_risk_events_us_time"), 2),
              hub_event(fixture_payload("diag_risky_users_correlation_trap"), 3)]
    await user_function("risk_alert_eventhub")(events)
    got = triples(await queued(svc))
    # ALICE high (UserRiskEvents); BOB medium then low (the low one is a duplicate);
    # CAROL medium (mixed batch) then high (RiskyUsers record): an upgrade.
    assert got == sorted([(ALICE, "high", "full-containment"), (BOB, "medium", "standard"),
                          (CAROL, "medium", "standard"), (CAROL, "high", "full-containment")])


@pytest.mark.parametrize("route", ["eventhub", "http"])
async def test_excluded_group_members_are_refused_in_intake_except_on_the_http_path(
        make_services: Any, route: str) -> None:
    services = make_services({"exclusions": {"groups": [FINANCE]}})
    runtime.use_services(services)
    try:
        detection = fixture_payload("graph_risk_detection_basic")
        detection["userId"], detection["userPrincipalName"] = MEGAN, "megan@contoso.com"
        if route == "eventhub":
            await user_function("risk_alert_eventhub")([hub_event([detection], 1)])
            assert await queued(services) == []
            [refused] = await intake_events(services, "refused")
            assert refused["data"]["code"] == "excluded" and FINANCE in refused["message"]
        else:
            req = func.HttpRequest("POST", "https://x/api/alerts", body=json.dumps(
                detection).encode(), headers={"content-type": "application/json"})
            resp = await user_function("risk_alert_http")(req)
            assert resp.status_code == 202
            # deferred: the worker's runner refuses excluded group members before any step
            assert [m["user"] for m in await queued(services)] == [MEGAN]
    finally:
        runtime.use_services(None)


def retry_context(retry_count: int, max_retry_count: int = 5) -> Any:
    """What the worker passes as `context`: only its retry_context is read."""
    from types import SimpleNamespace

    return SimpleNamespace(retry_context=SimpleNamespace(
        retry_count=retry_count, max_retry_count=max_retry_count, exception=None))


def queue_down(svc: Any, monkeypatch: Any) -> list[str]:
    """The remediation queue is unreachable (a retryable storage fault); tables and blobs
    still answer. Returns the list of refused sends."""
    from azure.core.exceptions import ServiceRequestError

    refused: list[str] = []
    real = svc.storage.enqueue

    async def enqueue(queue: str, text: str, **kw: Any) -> None:
        if queue == svc.settings.remediation_queue:
            refused.append(text)
            raise ServiceRequestError("connection refused (queue endpoint down)")
        await real(queue, text, **kw)

    monkeypatch.setattr(svc.storage, "enqueue", enqueue)
    return refused


async def dead_letters(svc: Any) -> list[dict[str, Any]]:
    from shared.intake import deadletter

    container = svc.storage.blobs.get_container_client(svc.settings.evidence_container)
    out = []
    for name in await deadletter.names(svc):
        stream = await container.get_blob_client(name).download_blob()
        out.append(json.loads(await stream.readall()) | {"name": name})
    return out


async def test_event_hub_events_failing_after_the_last_retry_are_dead_lettered(
        svc: Any, monkeypatch: Any) -> None:
    import base64

    from azure.core.exceptions import ServiceRequestError

    good = json.dumps(fixture_payload("defender_alert_evidence_user")).encode()
    bad_shape = b"{this is not json"
    refused = queue_down(svc, monkeypatch)
    events = [hub_event(good, 7), hub_event(bad_shape, 8)]

    # an earlier attempt raises for the host's retry and keeps nothing
    with pytest.raises(ServiceRequestError):
        await user_function("risk_alert_eventhub")(events, retry_context(2))
    assert await dead_letters(svc) == [] and refused

    # the last retry: the failing event is kept (reason, time, raw body), then it raises
    with pytest.raises(ServiceRequestError):
        await user_function("risk_alert_eventhub")(events, retry_context(5))
    [kept] = await dead_letters(svc)
    assert base64.b64decode(kept["bodyBase64"]) == good
    assert "ServiceRequestError" in kept["reason"] and "connection refused" in kept["reason"]
    assert kept["at"] and kept["route"] == "eventhub"
    assert kept["source"]["sequenceNumber"] == 7 and kept["source"]["partitionKey"] == "p0"
    # the unreadable event is not a transient failure: recorded as refused, not kept
    assert [e["data"]["sequenceNumber"] for e in await intake_events(svc, "eventhub-refused")
            ] == [8, 8]
    [recorded] = await intake_events(svc, "dead-lettered")
    assert recorded["data"]["blob"] == kept["name"]
    # the host delivers the batch once more (e.g. a restart): still one item
    with pytest.raises(ServiceRequestError):
        await user_function("risk_alert_eventhub")(events, retry_context(5))
    assert len(await dead_letters(svc)) == 1
    assert await queued(svc) == []


async def test_a_batch_that_succeeds_on_its_last_retry_keeps_nothing(svc: Any) -> None:
    events = [hub_event(fixture_payload("defender_alert_evidence_user"), 1)]
    await user_function("risk_alert_eventhub")(events, retry_context(5))
    assert len(await queued(svc)) == 1
    from shared.intake import deadletter

    assert await deadletter.names(svc) == []
