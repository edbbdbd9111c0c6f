"""Large alert bodies: stored, queued, and taken in by the intake worker.

Why: a body of thousands of records means tens of thousands of storage operations; done
inside the HTTP request, it outlasts the caller's timeout (Graph expects a 2xx within 3 s,
Azure Monitor and Logic Apps give up after a few seconds) and the caller retries a body that
is in fact being taken in. So the webhook checks the body (shape and caps: CPU only), stores
it as one blob, puts one small message on `RESPONDER_INTAKE_QUEUE` and answers 202; the
intake worker reads the blob and takes it in through the same pipeline as every other
route, then deletes the blob. Small bodies (at most `SYNC_MAX_BYTES` and `SYNC_MAX_SIGNALS`)
are still taken in inside the request.

- Blob: `<RESPONDER_EVIDENCE_CONTAINER>/intake-batches/<sha256 of the body>.json`, named by
  its content, so a caller that sends the same body again overwrites the same blob.
- Message (JSON, base64 on the wire): `{"schemaVersion": 1, "blob", "route", "bytes",
  "signals", "receivedAt"}`; no alert content, so it stays far below the 64 KiB limit.
- Redelivery adds nothing: the dedupe (detections, user windows) makes a second intake of
  the same body a run of duplicates, and once the blob is deleted a redelivered message is
  recorded and dropped.
- Transient trouble (storage, Graph) raises, so the host retries; the last attempt records
  why, keeps the blob, and the host moves the message to `<queue>-poison`. A message that
  cannot be read, or a blob that no longer reads as alerts, is recorded and poisoned at
  once, its blob kept for `python -m shared.cli replay`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from azure.core.exceptions import ResourceNotFoundError

from shared.errors import ResponderError
from shared.intake.pipeline import IntakeOutcome, intake_payload, record
from shared.intake.sources import AlertError, NormaliseResult
from shared.services import Services
from shared.state.storage import poison_queue_name

if TYPE_CHECKING:
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.intake.batches")

SYNC_MAX_BYTES = 16 * 1024
"""Bodies larger than this are stored and taken in by the intake worker."""
SYNC_MAX_SIGNALS = 10
"""Bodies with more signals (or user changes) than this are too. Each signal costs about
eight storage operations (dedupe, enqueue, records): ten of them stay well inside a
sender's few seconds even when a storm of payloads arrives at once, while a burst of
payloads of 50 is answered in milliseconds each and taken in by the intake worker."""
BLOB_PREFIX = "intake-batches/"
"""Where stored bodies live in the evidence container."""
MAX_DEQUEUE_COUNT = 5
"""host.json maxDequeueCount: on this delivery a failure is the last one."""
ROUTES = frozenset({"http"})
"""Routes that may store a body (a message naming another is refused)."""

BatchStatus = Literal["done", "missing", "poisoned"]


class BatchRetry(ResponderError):
    """Some signals of a stored body could not be queued (storage trouble): retry it."""

    retryable = True


@dataclass(frozen=True)
class StoredBatch:
    """What the webhook answers about a body it stored."""

    blob: str
    signals: int
    bytes: int


@dataclass
class BatchResult:
    """What one delivery of an intake message did."""

    status: BatchStatus
    reason: str = ""
    outcome: IntakeOutcome | None = None


def needs_queue(body_bytes: int, result: NormaliseResult) -> bool:
    """True when a body is too big to take in while the caller waits."""
    return body_bytes > SYNC_MAX_BYTES or \
        len(result.signals) + len(result.user_changes) > SYNC_MAX_SIGNALS


def blob_name(body: bytes) -> str:
    return f"{BLOB_PREFIX}{hashlib.sha256(body).hexdigest()}.json"


async def store_batch(services: Services, body: bytes, result: NormaliseResult, *,
                      route: str) -> StoredBatch:
    """Store the body and queue a pointer to it: one blob write, one message, one event."""
    await services.journal.ensure()
    name = blob_name(body)
    container = services.settings.evidence_container
    client = services.storage.blobs.get_blob_client(container, name)
    await client.upload_blob(body, overwrite=True)
    signals = len(result.signals) + len(result.user_changes)
    message = {"schemaVersion": 1, "blob": name, "route": route, "bytes": len(body),
               "signals": signals, "receivedAt": datetime.now(UTC).isoformat()}
    await services.storage.enqueue(services.settings.intake_queue, json.dumps(message))
    await record(services, "batch-queued",
                 f"{signals} signal(s) in {len(body)} bytes stored for the intake worker",
                 {"route": route, "blob": name, "signals": signals, "bytes": len(body)})
    return StoredBatch(name, signals, len(body))


def _parse(body: bytes | str) -> dict[str, Any]:
    """The intake message, or ValueError saying what is wrong with it."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    message = json.loads(text)
    if not isinstance(message, dict):
        raise ValueError("the message is not a JSON object")
    name, route = message.get("blob"), message.get("route")
    if not isinstance(name, str) or not name.startswith(BLOB_PREFIX) or ".." in name \
            or len(name) > 200:
        raise ValueError(f"blob must name a stored body under {BLOB_PREFIX}")
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(sorted(ROUTES))}")
    return message


async def _poison(services: Services, body: bytes | str, reason: str,
                  data: dict[str, Any]) -> BatchResult:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    await record(services, "batch-poisoned", reason, data)
    await services.storage.enqueue(poison_queue_name(services.settings.intake_queue), text)
    log.warning("intake message poisoned: %s", reason)
    return BatchResult("poisoned", reason)


async def take_batch(services: Services, body: bytes | str, *, dequeue_count: int = 1,
                     max_dequeue_count: int = MAX_DEQUEUE_COUNT,
                     message_id: str | None = None,
                     hub: TenantHub | None = None) -> BatchResult:
    """Take in the stored body an intake message points at; delete it when done.

    Raises `BatchRetry` (or the storage error) for transient trouble, so the host retries.
    The body is stored by the default tenant's Services; with a `hub`, each of its signals
    is taken in by the tenant it names.
    """
    try:
        message = _parse(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return await _poison(services, body, f"unreadable intake message: {exc}",
                             {"messageId": message_id})
    name, route = message["blob"], message["route"]
    data = {"route": route, "blob": name, "messageId": message_id, "delivery": dequeue_count}
    client = services.storage.blobs.get_blob_client(services.settings.evidence_container, name)
    try:
        stored = await (await client.download_blob()).readall()
    except ResourceNotFoundError:
        reason = "stored body not found: already taken in (deleted when done) or removed"
        await record(services, "batch-missing", reason, data)
        return BatchResult("missing", reason)
    try:
        # Bodies come from the HTTP webhook, which leaves the group exclusions to the runner
        # (it refuses an excluded member before any step): a storm's requests are then
        # queued without a Graph call each first.
        async with services.lanes.intake_turn():  # a storm's first requests queue first
            outcome = await intake_payload(services, stored, route=route, hub=hub,
                                           check_groups=False)
    except AlertError as exc:
        return await _poison(services, body, f"stored body is not readable as alerts "
                             f"({type(exc).__name__}: {exc}); kept as {name}", data)
    summary = outcome.summary()
    if outcome.errors:
        reason = f"{len(outcome.errors)} signal(s) could not be queued: " \
                 f"{type(outcome.errors[0]).__name__}: {str(outcome.errors[0])[:200]}"
        if dequeue_count >= max_dequeue_count:
            await record(services, "batch-failed", f"last delivery failed, the message goes "
                         f"to the poison queue and {name} is kept: {reason}", data | summary)
        raise BatchRetry(reason)
    try:
        await client.delete_blob()
    except ResourceNotFoundError:
        pass  # a concurrent delivery of the same body finished first
    await record(services, "batch-done", f"stored body taken in: {summary['enqueued']} "
                 f"request(s) queued, {summary['duplicates']} duplicate(s)", data | summary)
    return BatchResult("done", outcome=outcome)
