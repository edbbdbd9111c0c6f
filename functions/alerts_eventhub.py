"""Event Hub trigger for the Entra diagnostic stream (UserRiskEvents, RiskyUsers) and
Defender XDR streaming (AlertEvidence): each event body is `{"records": [...]}`.

Each event is taken in on its own, and each record inside it too, so one bad record never
loses the others. Transient storage trouble raises after the whole batch was tried: the
retry policy below re-runs the batch, and dedupe makes the re-run harmless.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import services
from shared.intake.pipeline import IntakeOutcome, intake_payload, record
from shared.intake.sources import AlertError
from shared.services import Services

bp = func.Blueprint()
log = logging.getLogger("responder.functions.alerts_eventhub")
ROUTE = "eventhub"


async def handle(svc: Services, events: list[func.EventHubEvent]) -> IntakeOutcome:
    """Take in a batch; raises the first transient error only after every event was tried."""
    total = IntakeOutcome(ROUTE)
    failures: list[BaseException] = []
    for index, event in enumerate(events):
        where = {"route": ROUTE, "index": index, "sequenceNumber": event.sequence_number,
                 "partitionKey": event.partition_key}
        try:
            outcome = await intake_payload(svc, event.get_body(), route=ROUTE)
        except AlertError as exc:
            log.warning("Event Hub event %d refused: %s", index, exc)
            await record(svc, "eventhub-refused", f"{type(exc).__name__}: {exc}", where)
            continue
        total.extend(outcome)
        failures.extend(outcome.errors)
    if failures:
        raise failures[0]
    return total


@bp.function_name("risk_alert_eventhub")
@bp.retry(strategy="exponential_backoff", max_retry_count="5",
          minimum_interval="00:00:05", maximum_interval="00:05:00")
@bp.event_hub_message_trigger(arg_name="events", connection="RESPONDER_EVENTHUB",
                              event_hub_name="%RESPONDER_EVENTHUB_NAME%",
                              consumer_group="%RESPONDER_EVENTHUB_CONSUMER_GROUP%",
                              cardinality=func.Cardinality.MANY)
async def risk_alert_eventhub(events: list[func.EventHubEvent]) -> None:
    """Event Hub entry point (cardinality many)."""
    outcome = await handle(await services(), events)
    log.info("Event Hub batch of %d event(s): %s", len(events), outcome.summary())
