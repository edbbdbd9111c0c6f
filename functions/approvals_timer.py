"""Timer: approvals nobody decided in time are escalated, never silently dropped."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import services
from shared.safety.approvals import escalate_expired

bp = func.Blueprint()
log = logging.getLogger("responder.functions.approvals_timer")


@bp.function_name("approvals_escalation")
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
async def approvals_escalation(timer: func.TimerRequest) -> None:
    """Every five minutes: expire, journal, re-notify and resume overdue approvals."""
    escalated = await escalate_expired(await services())
    if escalated:
        log.warning("escalated %d expired approval(s): %s", len(escalated), escalated)
