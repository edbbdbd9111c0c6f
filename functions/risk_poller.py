"""Timer: poll Identity Protection riskDetections (schedule: app setting
RESPONDER_POLL_SCHEDULE, a 6-field NCRONTAB such as `0 */5 * * * *`).

Runs never overlap (a lease row in Table storage); a late (past-due) tick simply polls
from the watermark, so nothing is lost while the app was stopped. Each run also reads, paced,
the risk of users named by change notifications since the last run.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import services
from shared.intake.poller import PollResult, poll_once

bp = func.Blueprint()
log = logging.getLogger("responder.functions.risk_poller")


async def handle(timer: func.TimerRequest) -> PollResult:
    if timer.past_due:
        log.info("risk poll is past due: catching up from the watermark")
    result = await poll_once(await services())
    if result.error:
        log.warning("risk poll did not complete: %s", result.error)
    return result


@bp.function_name("risk_poller")
@bp.timer_trigger(arg_name="timer", schedule="%RESPONDER_POLL_SCHEDULE%", run_on_startup=False,
                  use_monitor=True)
async def risk_poller(timer: func.TimerRequest) -> None:
    """Timer entry point."""
    result = await handle(timer)
    log.info("risk poll: %s", result.summary())
