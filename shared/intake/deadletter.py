"""Event Hub events that still fail after the trigger's retries are kept, never dropped.

After its last retry the Functions host checkpoints an Event Hub batch and moves on, so an
event whose intake kept failing (storage down, queue unreachable) would be lost. The trigger
keeps each such event here instead: one JSON blob in the app's evidence container
(`RESPONDER_EVIDENCE_CONTAINER`), under `DEAD_LETTER_PREFIX`, with the reason, the time,
where it came from and the raw body. The name is the body's SHA-256, so the same event kept
twice is one item.

`python -m shared.cli replay --dead-letter` takes each item in again through the same
pipeline and removes it once it went through. Replaying is safe to repeat: an item is
leased while it is replayed (a concurrent replay skips it), removed only after its intake
succeeded, and intake's dedupe turns a second submission of the same alert into a
`duplicate`, so nothing is queued twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.intake.pipeline import IntakeOutcome, intake_payload, record
from shared.intake.sources import AlertError
from shared.services import Services
from shared.state import clock

log = logging.getLogger("responder.intake.deadletter")

DEAD_LETTER_PREFIX = "dead-letter/eventhub/"
"""Where kept events live in the evidence container (run evidence is under `<run id>/`)."""
KIND = "responder-dead-letter"
LEASE_SECONDS = 60
"""How long a replay holds an item (Blob leases are 15 to 60 seconds)."""
REPLAY_ROUTE = "eventhub-replay"


@dataclass
class ReplayedItem:
    """What a replay did with one kept event."""

    name: str
    result: str
    """`replayed` (taken in and removed), `would-replay` (dry run), `still-failing` (kept),
    `skipped` (another replay holds it), `unreadable` (kept: not a dead-letter document)."""
    reason: str = ""
    outcome: IntakeOutcome | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "reason": self.reason,
                "summary": self.outcome.summary() if self.outcome else None}


def blob_name(body: bytes) -> str:
    """One item per distinct body (keeping the same event again changes nothing)."""
    return f"{DEAD_LETTER_PREFIX}{hashlib.sha256(body).hexdigest()}.json"


async def keep(services: Services, body: bytes, *, route: str, reason: str,
               source: dict[str, Any], now: datetime | None = None) -> str:
    """Keep one event's raw body for replay; its blob name. Raises when storage refuses:
    the caller must then not pretend the event is safe."""
    await services.journal.ensure()  # creates the evidence container
    name = blob_name(body)
    document = {
        "kind": KIND, "schemaVersion": 1, "route": route, "reason": reason[:2000],
        "at": (now or clock.now()).isoformat(), "source": source,
        "bodySha256": hashlib.sha256(body).hexdigest(),
        "bodyBase64": base64.b64encode(body).decode("ascii"),
    }
    client = services.storage.blobs.get_blob_client(services.settings.evidence_container, name)
    try:
        await client.upload_blob(json.dumps(document, default=str).encode("utf-8"),
                                 overwrite=False)
    except ResourceExistsError:
        log.info("dead-letter item %s is kept already", name)
    await record(services, "dead-lettered", f"kept for replay after the last retry: {reason}",
                 {"route": route, "blob": name, **source})
    return name


async def names(services: Services) -> list[str]:
    """Every kept event's blob name, oldest name order (the names are digests)."""
    await services.journal.ensure()
    container = services.storage.blobs.get_container_client(
        services.settings.evidence_container)
    return [b.name async for b in container.list_blobs(name_starts_with=DEAD_LETTER_PREFIX)]


def _body(raw: bytes) -> bytes:
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ValueError("not a dead-letter document")
    return base64.b64decode(document["bodyBase64"], validate=True)


async def replay(services: Services, *, dry_run: bool = False) -> list[ReplayedItem]:
    """Take every kept event in again; remove each one that went through."""
    done: list[ReplayedItem] = []
    for name in await names(services):
        done.append(await _replay_one(services, name, dry_run=dry_run))
    return done


async def _replay_one(services: Services, name: str, *, dry_run: bool) -> ReplayedItem:
    client = services.storage.blobs.get_blob_client(services.settings.evidence_container, name)
    lease = None
    if not dry_run:
        try:
            lease = await client.acquire_lease(lease_duration=LEASE_SECONDS)
        except ResourceNotFoundError:
            return ReplayedItem(name, "skipped", "removed meanwhile (another replay)")
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return ReplayedItem(name, "skipped", "another replay holds it")
            raise
    try:
        stream = await client.download_blob(lease=lease)
        try:
            body = _body(await stream.readall())
        except (ValueError, KeyError, TypeError) as exc:
            return ReplayedItem(name, "unreadable", f"kept: {exc}")
        try:
            outcome = await intake_payload(services, body, route=REPLAY_ROUTE, dry_run=dry_run)
        except AlertError as exc:  # this version cannot read it: keep it, say why
            return ReplayedItem(name, "unreadable", f"kept: {type(exc).__name__}: {exc}")
        if outcome.errors:
            first = outcome.errors[0]
            return ReplayedItem(name, "still-failing",
                                f"kept: {type(first).__name__}: {first}", outcome)
        if dry_run:
            return ReplayedItem(name, "would-replay", "", outcome)
        await client.delete_blob(lease=lease)
        lease = None
        await record(services, "dead-letter-replayed", f"replayed and removed {name}",
                     {"blob": name, **outcome.summary()})
        return ReplayedItem(name, "replayed", "", outcome)
    finally:
        if lease is not None:
            try:
                await lease.release()
            except HttpResponseError:  # expired meanwhile: nothing held
                pass
