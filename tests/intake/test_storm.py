"""A storm: 500 detections for 200 users arriving at once through three routes (HTTP webhook,
an Event Hub batch of diagnostic records, the riskDetections poller), some detections by more
than one route -> exactly 200 requests, one per user, at the user's level."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import azure.functions as func

from shared.intake.batches import SYNC_MAX_SIGNALS
from shared.intake.poller import poll_once
from tests.intake.conftest import intake_events, queued, user_function
from tests.intake.emulator_data import detection, recent, seed_detections, user_id

USERS = 200
DETECTIONS = 500


def level_of(user: int) -> str:
    return ("high", "medium", "low")[user % 3]


def diagnostic_record(det: dict[str, Any]) -> dict[str, Any]:
    """The same detection as an Entra diagnostic UserRiskEvents record (Event Hub)."""
    return {
        "time": "11/26/2026 8:48:51 AM", "category": "UserRiskEvents",
        "operationName": "User Risk Detection", "correlationId": det["id"], "durationMs": "0",
        "properties": {"id": det["id"], "userId": det["userId"],
                       "userPrincipalName": det["userPrincipalName"],
                       "riskLevel": det["riskLevel"], "riskState": "atRisk",
                       "riskEventType": det["riskEventType"],
                       "detectedDateTime": det["detectedDateTime"]},
    }


async def test_500_detections_for_200_users_through_three_routes_give_200_requests(
        svc: Any, emulator: Any) -> None:
    detections = [detection(k % USERS, k, recent(40, k * 0.01), level_of(k % USERS))
                  for k in range(DETECTIONS)]
    by_route: dict[str, list[dict[str, Any]]] = {"poller": [], "eventhub": [], "http": []}
    for k, det in enumerate(detections):
        by_route[("poller", "eventhub", "http")[k % 3]].append(det)
    # The same detections by a second route too (diagnostic stream and polling overlap).
    by_route["eventhub"].extend(by_route["poller"][:60])
    by_route["http"].extend(by_route["eventhub"][:40])

    emulator.configure(throttle={"identity_protection": {"rps": 1}})
    seed_detections(emulator, by_route["poller"])

    records = [diagnostic_record(d) for d in by_route["eventhub"]]
    hub_events = [func.EventHubEvent(body=json.dumps({"records": records[i:i + 50]}).encode(),
                                     sequence_number=i)
                  for i in range(0, len(records), 50)]
    http_items = by_route["http"]
    http_requests = [
        func.HttpRequest("POST", "https://responder.example/api/alerts",
                         headers={"content-type": "application/json"},
                         body=json.dumps({"value": http_items[i:i + SYNC_MAX_SIGNALS]}).encode())
        for i in range(0, len(http_items), SYNC_MAX_SIGNALS)
    ]

    http_fn = user_function("risk_alert_http")
    hub_fn = user_function("risk_alert_eventhub")
    results = await asyncio.gather(
        poll_once(svc, page_size=100),
        hub_fn(hub_events),
        *(http_fn(req) for req in http_requests),
    )
    poll = results[0]
    assert poll.completed and poll.detections == len(by_route["poller"])
    assert all(resp.status_code == 202 for resp in results[2:])

    messages = await queued(svc)
    assert len(messages) == USERS
    per_user = Counter(m["user"] for m in messages)
    assert set(per_user) == {user_id(u) for u in range(USERS)}
    assert max(per_user.values()) == 1
    expected_level = {user_id(u): level_of(u) for u in range(USERS)}
    assert all(m["riskLevel"] == expected_level[m["user"]] for m in messages)
    assert len({m["requestId"] for m in messages}) == USERS
    duplicates = await intake_events(svc, "duplicate")
    assert len(duplicates) >= DETECTIONS - USERS - 60  # (poller overlap repeats are quiet)
