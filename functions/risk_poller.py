"""Timer: poll Identity Protection riskDetections (schedule: app setting
RESPONDER_POLL_SCHEDULE, a 6-field NCRONTAB such as `0 */5 * * * *`).

Runs never overlap (a lease row in Table storage, per tenant); a late (past-due) tick simply
polls from the watermark, so nothing is lost while the app was stopped. Each run also reads,
paced, the risk of users named by change notifications since the last run. Every registered
tenant is polled in turn, the default tenant first (shared.intake.tenant_polls); one
tenant's failure is reported and the others are still polled.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub
from shared.intake.tenant_polls import TenantPolls, poll_tenants

bp = func.Blueprint()
log = logging.getLogger("responder.functions.risk_poller")


async def handle(timer: func.TimerRequest) -> TenantPolls:
    if timer.past_due:
        log.info("risk poll is past due: catching up from the watermark")
    result = await poll_tenants(await hub())
    for poll in result.failed:
        log.warning("risk poll of tenant %s did not complete: %s", poll.tenant, poll.error)
    return result


@bp.function_name("risk_poller")
@bp.timer_trigger(arg_name="timer", schedule="%RESPONDER_POLL_SCHEDULE%", run_on_startup=False,
                  use_monitor=True)
async def risk_poller(timer: func.TimerRequest) -> None:
    """Timer entry point."""
    result = await handle(timer)
    log.info("risk poll: %s", result.summary())
