"""Large alert bodies: the webhook stores them and answers 202 at once; the intake worker
(queue trigger, driven by the local host as the Functions host would) takes them in."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError

from devtools.localhost import LocalHost
from functions import runtime
from shared.intake.batches import BLOB_PREFIX, SYNC_MAX_SIGNALS, blob_name
from shared.intake.sources.common import MAX_RECORDS
from shared.services import Services
from shared.state.storage import poison_queue_name
from tests.intake.conftest import CLIENT_STATE, intake_events, queued, user_function
from tests.intake.emulator_data import detection, recent, user_id

RECORDS = 5_000
USERS = 1_000


@pytest.fixture
async def bsvc(make_services: Any) -> AsyncIterator[Services]:
    """Services with a queue of their own for stored bodies, injected into the functions."""
    services = make_services(RESPONDER_GRAPH_CLIENT_STATE=CLIENT_STATE,
                             RESPONDER_INTAKE_QUEUE="iq-" + uuid.uuid4().hex[:12])
    runtime.use_services(services)
    yield services
    runtime.use_services(None)


def post(body: Any) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest("POST", "https://responder.example/api/alerts",
                            headers={"content-type": "application/json"}, body=raw)


def host(services: Services) -> LocalHost:
    """Runs only the intake worker's queue: the remediation worker listens on an unused
    queue, so the requests stay on the remediation queue to be counted."""
    import function_app

    env = {"REMEDIATION_QUEUE": "unused-" + uuid.uuid4().hex[:12],
           "RESPONDER_INTAKE_QUEUE": services.settings.intake_queue}
    return LocalHost(function_app.app, services.storage, env, visibility_timeout=0.2)


class WriteCounter:
    """Counts the storage writes made through the services (rows, events, messages)."""

    def __init__(self, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        for owner, names in ((services.journal, ("put_item", "create_row", "write_row_if",
                                                 "delete_row_if", "event")),
                             (services.storage, ("enqueue",))):
            for name in names:
                monkeypatch.setattr(owner, name, self._wrap(name, getattr(owner, name)))

    def _wrap(self, name: str, fn: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await fn(*args, **kwargs)
        return counted


async def blob_exists(services: Services, name: str) -> bool:
    client = services.storage.blobs.get_blob_client(services.settings.evidence_container, name)
    try:
        await client.get_blob_properties()
    except ResourceNotFoundError:
        return False
    return True


def big_body() -> bytes:
    detections = [detection(k % USERS, k, recent(30, k * 0.001)) for k in range(RECORDS)]
    return json.dumps({"value": detections}).encode()


async def test_a_5000_record_body_is_answered_at_once_and_taken_in_by_the_worker(
        bsvc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    body = big_body()
    http_fn = user_function("risk_alert_http")
    await bsvc.journal.ensure()  # table and container exist, as after the first request
    writes = WriteCounter(bsvc, monkeypatch)
    resp = await http_fn(post(body))
    answer = json.loads(resp.get_body())
    assert resp.status_code == 202, answer
    assert answer["queued"] is True and answer["signals"] == RECORDS
    # one message and one audit event: no per-record write while the caller waits (how fast
    # that answers is measured by bench.storm's intake column, not asserted here)
    assert writes.calls == Counter({"enqueue": 1, "event": 1}), writes.calls
    assert await queued(bsvc) == []
    assert await blob_exists(bsvc, blob_name(body))

    # ~25,000 storage operations on Azurite: tens of seconds, bounded by the limit
    stats = await host(bsvc).run_until_idle(limit_seconds=240)
    assert stats.by_function == {"intake_worker": 1} and stats.succeeded == 1, stats
    messages = await queued(bsvc)
    assert len(messages) == USERS
    assert Counter(m["user"] for m in messages) == Counter({user_id(u): 1 for u in range(USERS)})
    assert not await blob_exists(bsvc, blob_name(body))
    done = await intake_events(bsvc, "batch-done")
    assert len(done) == 1 and done[0]["data"]["enqueued"] == USERS


async def test_a_redelivered_intake_message_adds_nothing(bsvc: Services) -> None:
    records = [detection(k % 30, k, recent(20, k * 0.01))
               for k in range(max(SYNC_MAX_SIGNALS + 10, 60))]
    body = json.dumps({"value": records}).encode()
    resp = await user_function("risk_alert_http")(post(body))
    assert resp.status_code == 202 and json.loads(resp.get_body())["queued"] is True
    client = bsvc.storage.queue(bsvc.settings.intake_queue)
    message = [m.content for m in await client.peek_messages(max_messages=5)]
    assert len(message) == 1
    await host(bsvc).run_until_idle(limit_seconds=60)
    first = await queued(bsvc)
    assert len(first) == 30

    # Delivered again after it was done: the blob is gone, recorded, nothing queued.
    await bsvc.storage.enqueue(bsvc.settings.intake_queue, message[0])
    # Delivered again before the blob was deleted (a worker stopped after taking it in).
    await bsvc.storage.blobs.get_blob_client(bsvc.settings.evidence_container,
                                             blob_name(body)).upload_blob(body, overwrite=True)
    await bsvc.storage.enqueue(bsvc.settings.intake_queue, message[0])
    stats = await host(bsvc).run_until_idle(limit_seconds=60)
    assert stats.succeeded == 2
    assert await queued(bsvc) == []
    kinds = Counter(e["kind"] for e in await intake_events(bsvc))
    assert kinds["batch-missing"] + kinds["batch-done"] == 3


async def test_a_body_over_the_record_cap_gets_413_and_a_record(bsvc: Services) -> None:
    records = [{"id": f"{k:064x}", "userId": user_id(1), "riskLevel": "high",
                "riskState": "atRisk"} for k in range(MAX_RECORDS + 1)]
    resp = await user_function("risk_alert_http")(post({"value": records}))
    assert resp.status_code == 413
    assert "at most" in json.loads(resp.get_body())["error"]
    refused = await intake_events(bsvc, "http-refused")
    assert [e["data"]["status"] for e in refused] == [413]
    assert await queued(bsvc) == []
    peeked = list(await bsvc.storage.queue(bsvc.settings.intake_queue).peek_messages()) \
        if await _exists(bsvc, bsvc.settings.intake_queue) else []
    assert peeked == []


async def _exists(services: Services, queue: str) -> bool:
    try:
        await services.storage.queue(queue).get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


async def test_an_unreadable_stored_body_is_poisoned_at_once_and_kept(bsvc: Services) -> None:
    await bsvc.journal.ensure()
    name = f"{BLOB_PREFIX}{'0' * 64}.json"
    await bsvc.storage.blobs.get_blob_client(bsvc.settings.evidence_container, name) \
        .upload_blob(b'"not alerts"', overwrite=True)
    await bsvc.storage.enqueue(bsvc.settings.intake_queue,
                               json.dumps({"schemaVersion": 1, "blob": name, "route": "http"}))
    await bsvc.storage.enqueue(bsvc.settings.intake_queue, "{not json")
    stats = await host(bsvc).run_until_idle(limit_seconds=30)
    assert stats.succeeded == 2 and stats.failed == 0
    poison = bsvc.storage.queue(poison_queue_name(bsvc.settings.intake_queue))
    assert len(await poison.peek_messages(max_messages=5)) == 2
    assert await blob_exists(bsvc, name)
    reasons = [e["message"] for e in await intake_events(bsvc, "batch-poisoned")]
    assert any("not readable as alerts" in r and name in r for r in reasons)
    assert any("unreadable intake message" in r for r in reasons)


async def test_payloads_delivered_together_are_taken_in_one_after_another(
        bsvc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A storm's payloads reach the worker together: each is queued whole before the next
    starts, so the first requests are on the queue within one payload's time instead of
    after the first part of every payload."""
    payloads = 3
    per_payload = SYNC_MAX_SIGNALS + 20
    index = {user_id(u): u for u in range(payloads * per_payload)}
    order: list[int] = []
    enqueue = bsvc.storage.enqueue

    async def noted(queue: str, text: str, **kw: Any) -> Any:
        if queue == bsvc.settings.remediation_queue:
            order.append(index[json.loads(text)["user"]])
        return await enqueue(queue, text, **kw)

    monkeypatch.setattr(bsvc.storage, "enqueue", noted)
    http_fn = user_function("risk_alert_http")
    for p in range(payloads):
        users = range(p * per_payload, (p + 1) * per_payload)
        body = json.dumps({"value": [detection(u, u, recent(20, u * 0.01)) for u in users]})
        resp = await http_fn(post(body.encode()))
        assert resp.status_code == 202 and json.loads(resp.get_body())["queued"] is True
    stats = await host(bsvc).run_until_idle(limit_seconds=120)
    assert stats.by_function == {"intake_worker": payloads}, stats
    assert sorted(order) == list(range(payloads * per_payload))
    blocks = [u // per_payload for u in order]
    assert blocks == sorted(blocks), "a payload's requests were queued between another's"
