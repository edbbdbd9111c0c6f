"""Timer: approvals nobody decided in time are escalated, never silently dropped (schedule:
app setting RESPONDER_APPROVALS_ESCALATION_SCHEDULE, default `0 */5 * * * *`)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import services
from shared.safety.approvals import escalate_expired

bp = func.Blueprint()
log = logging.getLogger("responder.functions.approvals_timer")
SCHEDULE_SETTING = "RESPONDER_APPROVALS_ESCALATION_SCHEDULE"
"""The app setting (6-field NCRONTAB) the timer binds; infra/ deploys it."""


@bp.function_name("approvals_escalation")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False)
async def approvals_escalation(timer: func.TimerRequest) -> None:
    """On the schedule of RESPONDER_APPROVALS_ESCALATION_SCHEDULE (default every five
    minutes): expire, journal, re-notify and resume overdue approvals."""
    escalated = await escalate_expired(await services())
    if escalated:
        log.warning("escalated %d expired approval(s): %s", len(escalated), escalated)
