"""Timer triggers: one per sweep, schedules from app settings (6-field NCRONTAB).

The v2 programming model indexes decorated functions, so each sweep has its own function
(`sweep_<name>`); the `%SETTING%` of its schedule comes from the sweep's registry entry.

Each function is a thin adapter: log the tick, run the sweep once for each tenant in turn
(shared.sweeps.tenants: the default tenant first, each bounded, under its own lease, so a
tick that arrives while the previous run is still going returns at once), and raise when
the sweep failed for any tenant, after every tenant was swept, so the failure shows in
monitoring. A past-due tick (the app was down or busy) runs once, normally: the work is
bounded and resumes from each tenant's checkpoint.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import hub
from shared.sweeps import SWEEPS
from shared.sweeps.tenants import run_sweep_for_tenants

bp = func.Blueprint()
log = logging.getLogger("responder.functions.sweeps")


class SweepFailed(RuntimeError):
    """The sweep recorded a failure for a tenant (its report in that tenant's journal
    says why)."""


def schedule(name: str) -> str:
    """The binding expression of a sweep's schedule setting, from its registry entry."""
    return f"%{SWEEPS[name].schedule_setting}%"


async def fire(name: str, timer: func.TimerRequest) -> None:
    past_due = bool(getattr(timer, "past_due", False))
    log.info("sweep %s timer fired%s", name, " (past due)" if past_due else "")
    result = await run_sweep_for_tenants(await hub(), name, trigger="timer", past_due=past_due)
    log.info(result.summary())
    if result.failed:
        raise SweepFailed("; ".join(f"tenant {r.tenant}: {r.result.summary()}: "
                                    f"{'; '.join(r.result.errors)}" for r in result.failed))


@bp.function_name("sweep_audit")
@bp.timer_trigger(arg_name="timer", schedule=schedule("audit"),
                  run_on_startup=False, use_monitor=True)
async def sweep_audit(timer: func.TimerRequest) -> None:
    await fire("audit", timer)


@bp.function_name("sweep_risky_users")
@bp.timer_trigger(arg_name="timer", schedule=schedule("risky_users"),
                  run_on_startup=False, use_monitor=True)
async def sweep_risky_users(timer: func.TimerRequest) -> None:
    await fire("risky_users", timer)


@bp.function_name("sweep_restricted_senders")
@bp.timer_trigger(arg_name="timer", schedule=schedule("restricted_senders"),
                  run_on_startup=False, use_monitor=True)
async def sweep_restricted_senders(timer: func.TimerRequest) -> None:
    await fire("restricted_senders", timer)


@bp.function_name("sweep_stalled_runs")
@bp.timer_trigger(arg_name="timer", schedule=schedule("stalled_runs"),
                  run_on_startup=False, use_monitor=True)
async def sweep_stalled_runs(timer: func.TimerRequest) -> None:
    await fire("stalled_runs", timer)


@bp.function_name("sweep_forwarding_rules")
@bp.timer_trigger(arg_name="timer", schedule=schedule("forwarding_rules"),
                  run_on_startup=False, use_monitor=True)
async def sweep_forwarding_rules(timer: func.TimerRequest) -> None:
    await fire("forwarding_rules", timer)


@bp.function_name("sweep_secure_score")
@bp.timer_trigger(arg_name="timer", schedule=schedule("secure_score"),
                  run_on_startup=False, use_monitor=True)
async def sweep_secure_score(timer: func.TimerRequest) -> None:
    await fire("secure_score", timer)


@bp.function_name("sweep_reinfection")
@bp.timer_trigger(arg_name="timer", schedule=schedule("reinfection"),
                  run_on_startup=False, use_monitor=True)
async def sweep_reinfection(timer: func.TimerRequest) -> None:
    await fire("reinfection", timer)
