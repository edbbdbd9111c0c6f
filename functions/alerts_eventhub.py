"""Event Hub trigger for the Entra diagnostic stream (UserRiskEvents, RiskyUsers) and
Defender XDR streaming (AlertEvidence): each event body is `{"records": [...]}`.

Each event is taken in on its own, and each record inside it too, so one bad record never
loses the others. Transient storage trouble raises after the whole batch was tried: the
retry policy below re-runs the batch, and dedupe makes the re-run harmless. On the last
retry (the host then checkpoints past the batch) each event that still fails is kept as a
dead-letter item with its reason (shared.intake.deadletter), for
`python -m shared.cli replay --dead-letter`.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub, services
from shared.intake import deadletter
from shared.intake.pipeline import IntakeOutcome, intake_payload, record
from shared.intake.sources import AlertError
from shared.services import Services
from shared.tenancy import TenantHub

bp = func.Blueprint()
log = logging.getLogger("responder.functions.alerts_eventhub")
ROUTE = "eventhub"
MAX_RETRIES = 5
"""Retries of a failing batch (the retry policy below); after the last, failures are kept."""


def is_last_attempt(context: func.Context | None) -> bool:
    """True on the host's last retry of this batch (retry_count == max_retry_count, as the
    Python worker reports it); the host checkpoints past the batch after it."""
    retry = getattr(context, "retry_context", None) if context is not None else None
    if retry is None:
        return False
    limit = retry.max_retry_count
    return limit >= 0 and retry.retry_count >= limit


async def handle(svc: Services, events: list[func.EventHubEvent], *,
                 last_attempt: bool = False, tenants: TenantHub | None = None) -> IntakeOutcome:
    """Take in a batch; raises the first transient error only after every event was tried.
    On the last attempt each event that still fails is first kept as a dead-letter item.
    `tenants`: route each record to the tenant it names (`svc` is then its default)."""
    total = IntakeOutcome(ROUTE)
    failures: list[BaseException] = []
    failed: list[tuple[func.EventHubEvent, dict[str, object], BaseException]] = []
    for index, event in enumerate(events):
        where = {"route": ROUTE, "index": index, "sequenceNumber": event.sequence_number,
                 "partitionKey": event.partition_key}
        try:
            outcome = await intake_payload(svc, event.get_body(), route=ROUTE, hub=tenants)
        except AlertError as exc:
            log.warning("Event Hub event %d refused: %s", index, exc)
            await record(svc, "eventhub-refused", f"{type(exc).__name__}: {exc}", where)
            continue
        total.extend(outcome)
        failures.extend(outcome.errors)
        if outcome.errors:
            failed.append((event, where, outcome.errors[0]))
    if failures and last_attempt:
        await _dead_letter(svc, failed)
    if failures:
        raise failures[0]
    return total


async def _dead_letter(svc: Services, failed: list[tuple[func.EventHubEvent,
                                                         dict[str, object],
                                                         BaseException]]) -> None:
    """Keep each still-failing event; if even that fails, log where the events are (the
    hub keeps them for its retention period) and let the original error stand."""
    for event, where, error in failed:
        enqueued = event.enqueued_time.isoformat() if event.enqueued_time else None
        source = {**where, "enqueuedTime": enqueued, "offset": event.offset}
        try:
            name = await deadletter.keep(svc, event.get_body(), route=ROUTE,
                                         reason=f"{type(error).__name__}: {error}",
                                         source=source)
        except Exception:
            log.error("Event Hub event could not be kept after the last retry; re-read it "
                      "from the hub: %s", source, exc_info=True)
            continue
        log.error("Event Hub event kept as dead-letter item %s after the last retry: %s",
                  name, error)


@bp.function_name("risk_alert_eventhub")
@bp.retry(strategy="exponential_backoff", max_retry_count=str(MAX_RETRIES),
          minimum_interval="00:00:05", maximum_interval="00:05:00")
@bp.event_hub_message_trigger(arg_name="events", connection="RESPONDER_EVENTHUB",
                              event_hub_name="%RESPONDER_EVENTHUB_NAME%",
                              consumer_group="%RESPONDER_EVENTHUB_CONSUMER_GROUP%",
                              cardinality=func.Cardinality.MANY)
async def risk_alert_eventhub(events: list[func.EventHubEvent],
                             context: func.Context = None) -> None:  # type: ignore[assignment]
    """Event Hub entry point (cardinality many); `context` carries the retry count. The
    worker requires the annotation to be exactly `func.Context`; the default lets a direct
    call (tests, tools) pass none, which counts as not the last attempt."""
    outcome = await handle(await services(), events, last_attempt=is_last_attempt(context),
                           tenants=await hub())
    log.info("Event Hub batch of %d event(s): %s", len(events), outcome.summary())
