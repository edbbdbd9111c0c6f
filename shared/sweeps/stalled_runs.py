"""Stalled runs: a run still `running` long after its last update lost its message (a host
crash between deliveries, a message deleted by hand). Re-enqueueing the run's own request,
with the same request id, resumes it: the runner skips the steps already finished.
"""

from __future__ import annotations

from datetime import timedelta

from shared.models import RemediationRequest
from shared.state.clock import now
from shared.state.journal import RunRecord
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register

RESUMED = "sweep-stalled-resumed"
"""Runs this sweep re-enqueued, so the next sweep does not enqueue them again too soon."""


@register
class StalledRunsSweep(Sweep):
    """A run that lost its message would never finish: resume it with its own request."""

    name = "stalled_runs"
    description = "runs started and not finished within a bound: resumed or reported"
    schedule_setting = "RESPONDER_SWEEP_STALLED_RUNS_SCHEDULE"
    default_schedule = "0 */15 * * * *"
    why = ("Resume runs that stopped between deliveries (journal and queue only: no Graph or "
           "Exchange rights).")

    async def run(self, ctx: SweepContext) -> None:
        cfg = ctx.policy.sweeps.stalled_runs
        bound = timedelta(minutes=cfg.after_minutes)
        horizon = now() - bound
        runs = await ctx.services.journal.list_runs(limit=5000, state="running")
        stalled = [r for r in runs if r.updated_at < horizon]
        ctx.result.note(f"{len(stalled)} run(s) running without an update for "
                        f"{cfg.after_minutes:g} minutes or more")

        async def handle(key: str, run: RunRecord) -> None:
            await self._handle(ctx, run, bound)

        await ctx.walk([(r.run_id, r) for r in stalled], handle)

    async def _handle(self, ctx: SweepContext, run: RunRecord, bound: timedelta) -> None:
        result = ctx.result
        journal = ctx.services.journal
        finding = {"kind": "stalled-run", "runId": run.run_id, "user": run.upn or run.user,
                   "why": f"running since {run.created_at:%Y-%m-%d %H:%M}Z, last update "
                          f"{run.updated_at:%Y-%m-%d %H:%M}Z"}
        result.found.append(finding)
        if ctx.policy.sweeps.stalled_runs.mode == "report":
            result.skipped.append({**finding, "why": "report only (policy "
                                   "sweeps.stalledRuns.mode)"})
            return
        earlier = await journal.get_item(RESUMED, run.run_id)
        at = earlier.get("at") if earlier else None
        if at is not None and at > now() - bound:
            result.skipped.append({**finding, "why": f"resume already requested at {at:%H:%M}Z"})
            return
        try:
            request = RemediationRequest.model_validate(run.request)
            # the same request id resumes the same run (set explicitly for the record)
            request = request.model_copy(update={"request_id": request.effective_request_id()})
        except ValueError as exc:
            result.skipped.append({**finding, "why": f"the run's request cannot be rebuilt: "
                                   f"{exc.__class__.__name__}; an administrator must look"})
            return
        if not ctx.dry_run:
            await ctx.services.storage.enqueue(ctx.services.settings.remediation_queue,
                                               request.to_message())
            await journal.put_item(RESUMED, run.run_id, at=now())
            await journal.event(run.run_id, "resume-requested",
                                "the stalled-run sweep re-enqueued the run's request",
                                {"requestId": request.effective_request_id()})
        result.actions.append({**finding, "what": "resume enqueued",
                               "requestId": request.effective_request_id()})
