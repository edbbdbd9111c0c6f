"""Timer: approvals nobody decided in time are escalated, never silently dropped (schedule:
app setting RESPONDER_APPROVALS_ESCALATION_SCHEDULE, default `0 */5 * * * *`). Every tenant
the deployment serves is visited, the default first; one tenant's failure is logged and
the others are still visited."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub
from shared.safety.approvals import escalate_every_tenant

bp = func.Blueprint()
log = logging.getLogger("responder.functions.approvals_timer")
SCHEDULE_SETTING = "RESPONDER_APPROVALS_ESCALATION_SCHEDULE"
"""The app setting (6-field NCRONTAB) the timer binds; infra/ deploys it."""


@bp.function_name("approvals_escalation")
@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False)
async def approvals_escalation(timer: func.TimerRequest) -> None:
    """On the schedule of RESPONDER_APPROVALS_ESCALATION_SCHEDULE (default every five
    minutes): expire, journal, re-notify and resume overdue approvals, in every tenant."""
    done = await escalate_every_tenant(await hub())
    for tenant, escalated in done.escalated.items():
        if escalated:
            log.warning("tenant %s: escalated %d expired approval(s): %s", tenant,
                        len(escalated), escalated)
    for tenant, why in done.failed.items():
        log.error("tenant %s: approvals not escalated this time: %s", tenant, why)
