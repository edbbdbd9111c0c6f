"""After an approval ends the run resumes; an approval nobody decided in time is escalated.

Expiry never drops an approval silently: `escalate_expired` (a timer) marks it expired,
journals it, notifies everyone again, and resumes the run, which records the waiting steps
as skipped and the run as failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.models import RemediationRequest
from shared.safety import notify
from shared.safety.approvals import store
from shared.safety.approvals.store import Approval
from shared.state import clock

if TYPE_CHECKING:
    from shared.services import Services
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.approvals")


async def enqueue_resume(services: Services, approval: Approval, by: str) -> None:
    """Queue the run again: it picks up the decision (or the expiry) at its gate."""
    request = RemediationRequest.model_validate({
        "user": approval.user_id or approval.user, "action": "resume",
        "runId": approval.run_id, "requestId": f"resume-{approval.run_id}-{approval.state}",
        "source": "approval", "requestedBy": by[:400],
        "reason": f"approval {approval.state}",
        # the run is in its tenant's journal: the worker resumes it with that tenant's
        # Services (no tenant: the default tenant, as before)
        **({"tenant": approval.tenant} if approval.tenant else {})})
    await services.storage.enqueue(services.settings.remediation_queue, request.to_message())


async def _requeue_lost_resume(services: Services, row: dict[str, Any], when: datetime) -> None:
    """A decision is stored before its resume message is queued; if queueing failed, the run
    would wait forever. A decided approval whose run still waits gets its resume again
    (resuming is idempotent: the request id is the same)."""
    decided_at = row.get("decidedAt")
    if isinstance(decided_at, datetime) and (when - decided_at).total_seconds() < 300:
        return  # give the first resume message time to be processed
    run = await services.journal.get_run(str(row.get("runId")))
    if run is None or run.state != "waiting_approval":
        return
    approval = await store.get_approval(services, run.run_id)
    if approval is not None and approval.state == row.get("state"):
        await services.journal.event(run.run_id, "approval-resume-requeued",
                                     "the run still waited after its approval was decided: "
                                     "resume queued again")
        await enqueue_resume(services, approval, "timer")


async def escalate_expired(services: Services, *, now: datetime | None = None,
                           only: str | None = None) -> list[str]:
    """Expire overdue pending approvals: journal, notify (escalation), resume the run.

    Only the timer walks the approvals partition; `only` (one run) costs one point read."""
    when = now or clock.now()
    if only is not None:
        return [only] if await escalate_run(services, only, when, trigger="timer") else []
    rows = await store.rows(services)
    escalated: list[str] = []
    for row in rows:
        if row.get("state") in ("approved", "denied", "expired"):
            await _requeue_lost_resume(services, row, when)
            continue
        if row.get("state") != "pending":
            continue
        expires = row.get("expiresAt")
        if not isinstance(expires, datetime) or when < expires:
            continue
        approval = await store.get_approval(services, row["runId"])
        if approval is not None and await escalate_approval(services, approval, when,
                                                            trigger="timer"):
            escalated.append(approval.run_id)
    return escalated


async def escalate_run(services: Services, run_id: str, when: datetime, *,
                       trigger: str) -> bool:
    """Escalate one run's approval if it is pending and overdue: one point read by key."""
    approval = await store.get_approval(services, run_id)
    return approval is not None and await escalate_approval(services, approval, when,
                                                            trigger=trigger)


async def escalate_approval(services: Services, approval: Approval, when: datetime, *,
                            trigger: str) -> bool:
    """pending and overdue -> expired, once (ETag): journal, notify, resume. True if done.

    The conditional transition bounds the writes: whoever triggers it (the timer, a late
    click, many late clicks) an approval is escalated, journaled and notified once."""
    if approval.state != "pending" or when < approval.expires_at:
        return False
    if await store.transition(services, approval, "expired", decided_by="",
                              by_trust="system", when=when) is None:
        return False  # a decision or another escalation won: nothing to escalate here
    message = (f"approval for {', '.join(approval.steps)} expired at "
               f"{approval.expires_at.isoformat()} without a decision: escalated")
    await services.journal.event(approval.run_id, "approval-expired", message,
                                 {"steps": approval.steps, "trigger": trigger})
    deliveries = await notify.send(services, notify.Notification(
        event="approval.escalated",
        title=f"ESCALATION: approval to contain {approval.upn} expired",
        lines=[message, "The waiting steps were not done. Decide now: re-run the "
               "remediation for this user, or release the run if it was a false "
               "positive."],
        run_id=approval.run_id,
        facts={"run": approval.run_id, "user": f"{approval.upn} ({approval.user_id})",
               "roles": ", ".join(approval.roles)},
        data={"steps": approval.steps, "expiredAt": approval.expires_at.isoformat()}))
    await services.journal.event(approval.run_id, "approval-escalated",
                                 f"escalated: {notify.summary(deliveries)}",
                                 {"channels": [d.channel for d in deliveries if d.ok]})
    await enqueue_resume(services, approval, "expiry")
    return True


@dataclass
class TenantsEscalated:
    """What one timer tick did, per tenant: the runs escalated, and the tenants it could
    not visit (with why)."""

    escalated: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


async def escalate_every_tenant(hub: TenantHub, *, now: datetime | None = None) \
        -> TenantsEscalated:
    """`escalate_expired` in every tenant the deployment serves: the default tenant first
    (even when the registry cannot be read), then each enabled registered tenant, each in
    its own journal. One tenant's failure (its table, its notification) is recorded and
    the others are still visited."""
    out = TenantsEscalated()
    default = hub.default.settings.tenant_id
    try:
        out.escalated[default] = await escalate_expired(hub.default, now=now)
    except Exception as exc:
        out.failed[default] = f"{type(exc).__name__}: {exc}"[:300]
        log.exception("escalating approvals of the default tenant failed")
    try:
        tenants = (await hub.tenants())[1:]
    except Exception as exc:
        out.failed["registry"] = f"{type(exc).__name__}: {exc}"[:300]
        log.exception("the tenant registry could not be read: other tenants not visited")
        return out
    for tenant in tenants:
        try:
            services = await hub.services_for(tenant)
            out.escalated[tenant] = await escalate_expired(services, now=now)
        except Exception as exc:
            out.failed[tenant] = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("escalating approvals of tenant %s failed", tenant)
    return out
