"""`run_sweep`: the one entry point the timers and the command line use to run a sweep.

It looks the sweep up in the registry, runs it once under its lease with its budget and
time limit, records the result in the journal and announces what is worth announcing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

from azure.core.exceptions import ClientAuthenticationError

from shared.errors import ResponderError
from shared.intake.tenant_health import describe
from shared.state.clock import now
from shared.sweeps.base import (
    LEASE_MARGIN_SECONDS,
    REPORTS,
    SweepContext,
    SweepResult,
    acquire_lease,
    event_partition,
    load_checkpoint,
    release_lease,
    sweeps_dry_run,
)
from shared.sweeps.registry import Sweep, get_sweep

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger("responder.sweeps")


async def run_sweep(
    services: Services,
    name: str,
    *,
    dry_run: bool = False,
    budget: int | None = None,
    trigger: str = "cli",
    past_due: bool = False,
    record: bool = True,
    max_seconds: float | None = None,
) -> SweepResult:
    """Run one sweep once, bounded, under its lease; journal and return what it did.

    A run that finds the lease taken returns `skipped` at once (the previous run is still
    going). Failures are recorded in the result (status `failed`), never hidden; so is a
    token the tenant refuses (`ClientAuthenticationError`, for example after its consent was
    withdrawn). `max_seconds`: a shorter time limit than the policy's (a tenant's share of a
    timer that serves several, `shared.sweeps.tenants`).
    """
    sweep = get_sweep(name)
    dry = bool(dry_run or sweeps_dry_run(services))
    result = SweepResult(sweep=name, dry_run=dry, trigger=trigger, past_due=past_due)
    if past_due:
        result.note("the timer was past due (the app was down or busy): running once now")
    if not sweep.enabled(services):
        result.status = "skipped"
        result.note("opt-in sweep not enabled (policy sweeps.forwarding.enabled or app "
                    "setting RESPONDER_SWEEP_FORWARDING_ENABLED)")
        result.finished_at = now()
        return result
    limit = float(services.policy.sweeps.max_seconds_per_run)
    max_seconds = limit if max_seconds is None else max(0.0, min(limit, max_seconds))
    holder = f"{trigger}-{uuid.uuid4().hex[:12]}"
    if not await acquire_lease(services, name, holder, max_seconds + LEASE_MARGIN_SECONDS):
        result.status = "skipped"
        result.note("the previous run of this sweep still holds its lease: not overlapping")
        result.finished_at = now()
        if record:
            await services.journal.event(event_partition(name), "sweep-skipped",
                                         result.notes[-1], {"trigger": trigger})
        return result
    try:
        ctx = SweepContext(services=services, result=result, dry_run=dry,
                           budget=budget if budget is not None else sweep.budget(services),
                           deadline=time.monotonic() + max_seconds,
                           checkpoint=await load_checkpoint(services, name))
        try:
            await sweep.run(ctx)
        except ResponderError as exc:
            result.status = "failed"
            result.complete = False
            result.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("sweep %s failed: %s", name, exc)
        except ClientAuthenticationError as exc:  # the tenant refused the app's token
            result.status = "failed"
            result.complete = False
            result.errors.append(describe(exc))
            log.warning("sweep %s failed: %s", name, result.errors[-1])
        result.finished_at = now()
        if record:
            await _record(services, result)
            await _announce(services, sweep, result)
    finally:
        await release_lease(services, name, holder)
    log.info(result.summary(), extra={"sweep": name})
    return result




async def _announce(services: Services, sweep: Sweep, result: SweepResult) -> None:
    """Tell the SOC through the configured channels; a failed notification never fails the
    sweep. Dry runs announce nothing."""
    if result.dry_run or result.status == "skipped":
        return
    lines = sweep.notice_lines(result)
    if not lines:
        return
    try:
        from shared.safety.notify import sweep_findings

        await sweep_findings(services, result.sweep, lines,
                             {"status": result.status, "complete": result.complete})
    except Exception:  # notifications are best effort by design
        log.warning("sweep %s: notification failed", result.sweep, exc_info=True)


async def _record(services: Services, result: SweepResult) -> None:
    """One journal event per run, and the last report per sweep (for `posture` and notices)."""
    doc = result.to_dict()
    text = json.dumps(doc, default=str)
    await services.journal.event(event_partition(result.sweep), f"sweep-{result.status}",
                                 result.summary(), doc)
    if len(text) <= 30_000 and not result.dry_run:
        await services.journal.put_item(REPORTS, result.sweep, report=text, at=now(),
                                        status=result.status)
