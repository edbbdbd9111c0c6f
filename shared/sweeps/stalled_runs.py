"""Stalled runs: a run still `running` long after its last update lost its message (a host
crash between deliveries, a message deleted by hand). Re-enqueueing the run's own request,
with the same request id, resumes it: the runner skips the steps already finished.

Never forever: each re-enqueue is counted on the run record (`resumes`, a conditional
write, so a run that moved meanwhile is left alone), and a run still stalled after
MAX_RESUMES of them is marked `failed` with the reason, and announced. Only `running` runs
are considered (a `poisoned` run stays poisoned), and a run whose lease a delivery holds is
not stalled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.models import RemediationRequest
from shared.playbook.runner import run_lease
from shared.safety import notify
from shared.state.clock import now
from shared.state.journal import RunRecord
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register

RESUMED = "sweep-stalled-resumed"
"""Runs this sweep re-enqueued, so the next sweep does not enqueue them again too soon."""
MAX_RESUMES = 3
"""Re-enqueues of one run; a run still stalled after that many is marked failed."""


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
        fresh = await journal.get_run(run.run_id)  # the list may be stale: decide on this
        if fresh is None or fresh.state != "running" or fresh.updated_at >= now() - bound:
            result.skipped.append({**finding, "why": "it moved meanwhile (now "
                                   f"{fresh.state if fresh else 'gone'})"})
            return
        run = fresh
        earlier = await journal.get_item(RESUMED, run.run_id)
        at = earlier.get("at") if earlier else None
        if at is not None and at > now() - bound:
            result.skipped.append({**finding, "why": f"resume already requested at {at:%H:%M}Z"})
            return
        if run.resumes >= MAX_RESUMES:
            await self._give_up(ctx, run, finding)
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
            why_not = await self._count(ctx, run, give_up=False)
            if why_not:
                result.skipped.append({**finding, "why": why_not})
                return
            await ctx.services.storage.enqueue(ctx.services.settings.remediation_queue,
                                               request.to_message())
            await journal.put_item(RESUMED, run.run_id, at=now())
            await journal.event(run.run_id, "resume-requested",
                                "the stalled-run sweep re-enqueued the run's request",
                                {"requestId": request.effective_request_id(),
                                 "resumes": run.resumes, "maxResumes": MAX_RESUMES})
        result.actions.append({**finding, "what": "resume enqueued",
                               "requestId": request.effective_request_id()})

    async def _count(self, ctx: SweepContext, run: RunRecord, *, give_up: bool) -> str:
        """Under the run's lease (a delivery holding it means the run is alive), count one
        resume or mark the run failed, conditionally on the version read. Returns why not,
        or "" when written."""
        lease = run_lease(ctx.services, run.run_id)
        try:
            if await lease.try_acquire():
                return "a delivery is working on it now"
            if give_up:
                written = await ctx.services.journal.save_run_if(run)
            else:
                written = await ctx.services.journal.record_resume(run)
        finally:
            await lease.release()
        return "" if written else "it moved meanwhile"

    async def _give_up(self, ctx: SweepContext, run: RunRecord,
                       finding: dict[str, Any]) -> None:
        """Resumed MAX_RESUMES times and still stalled: failed, with the reason, announced."""
        reason = (f"stalled: resumed {run.resumes} time(s) by the stalled-run sweep (at most "
                  f"{MAX_RESUMES}) and still not finished; an administrator must look "
                  f"(python -m shared.cli report {run.run_id})")
        if not ctx.dry_run:
            run.state, run.reason, run.finished_at = "failed", reason, now()
            why_not = await self._count(ctx, run, give_up=True)
            if why_not:
                ctx.result.skipped.append({**finding, "why": why_not})
                return
            await ctx.services.journal.event(run.run_id, "run-failed", reason)
            results = await ctx.services.journal.step_results(run.run_id)
            await notify.announce_run(ctx.services, run, results)
        ctx.result.actions.append({**finding, "what": "marked failed", "why": reason})
