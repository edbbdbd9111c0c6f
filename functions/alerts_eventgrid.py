"""Event Grid trigger for risk alerts (Event Grid schema or CloudEvents, one event per call).

The function name `risk_alert_eventgrid` is public: infra/main.bicep points the Event Grid
subscription at it. A payload that cannot be read is recorded and dropped (redelivery would
not fix it); storage trouble raises, so Event Grid redelivers and dedupe absorbs repeats.
Graph partner events about users (`Microsoft.Graph.UserUpdated`) are not risk signals: they
only queue a paced read of the user's risk (`shared.intake.user_checks`), and when
RESPONDER_GRAPH_CLIENT_STATE is set their clientState must match it.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from functions.runtime import hub, services
from shared.intake.pipeline import IntakeOutcome, intake_payload, record
from shared.intake.sources import AlertError
from shared.services import Services
from shared.tenancy import TenantHub

bp = func.Blueprint()
log = logging.getLogger("responder.functions.alerts_eventgrid")
ROUTE = "eventgrid"


def envelope(event: func.EventGridEvent) -> dict[str, Any]:
    """The event back in Event Grid schema, so shape detection unwraps it like a webhook's."""
    try:
        data: Any = event.get_json()
    except ValueError:
        data = None
    return {
        "id": event.id, "eventType": event.event_type, "subject": event.subject,
        "topic": event.topic, "dataVersion": event.data_version,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": data,
    }


async def handle(svc: Services, event: func.EventGridEvent,
                 tenants: TenantHub | None = None) -> IntakeOutcome | None:
    """Take in one event; None when it could not be read (recorded with the reason).
    `tenants`: route each signal to the tenant it names (`svc` is then its default)."""
    try:
        outcome = await intake_payload(svc, envelope(event), route=ROUTE, hub=tenants)
    except AlertError as exc:
        log.warning("Event Grid event %s refused: %s", event.id, exc)
        await record(svc, "eventgrid-refused", f"{type(exc).__name__}: {exc}",
                     {"route": ROUTE, "eventId": str(event.id)[:200],
                      "eventType": str(event.event_type)[:200]})
        return None
    if outcome.errors:
        raise outcome.errors[0]
    return outcome


@bp.function_name("risk_alert_eventgrid")
@bp.event_grid_trigger(arg_name="event")
async def risk_alert_eventgrid(event: func.EventGridEvent) -> None:
    """Event Grid entry point."""
    outcome = await handle(await services(), event, await hub())
    if outcome is not None:
        log.info("Event Grid event %s: %s", event.id, outcome.summary())
