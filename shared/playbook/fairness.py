"""Fairness between tenants: a storm in one tenant does not hold back another tenant's
first containment.

Every tenant's requests share one remediation queue, a FIFO. With hundreds of tenant A's
requests queued, tenant B's request would wait behind all of them. So, only when the
deployment serves several tenants, each instance counts its containments in flight per
tenant (shared.tenant.pacing.TenantShares); a first delivery of a tenant that already holds
its share of the instance is not run but moved: queued again at once on the overflow queue
(RESPONDER_OVERFLOW_QUEUE), and completed. The remediation queue drains at the speed of a
move (one enqueue, one delete), so a newcomer's request is reached within seconds; the
overflow lane (function `remediation_overflow`, its own concurrency) runs the moved requests
as the remediation lane would, and never moves them again, so nothing is lost or starved.

A move is enqueue-then-complete: a crash between the two gives a duplicate delivery, which
the run's request id and lease absorb (one run, steps never repeated). Only a first
delivery of a remediation is moved: a retry keeps its delivery count (and its way to the
poison queue) where it is, and releases and resumes are never moved.

A single-tenant deployment never gets here: other tenants can be served only with
RESPONDER_CREDENTIAL=federated-app (every other credential acts for RESPONDER_TENANT_ID
only, shared.tenant.credentials), so without it nothing is read, counted or moved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.models import RemediationRequest
from shared.services import Services
from shared.tenancy import TenantHub
from shared.tenant.pacing import TenantShares

log = logging.getLogger("responder.fairness")
COUNTED_LANES = frozenset({"contain", "overflow"})
"""The containment lanes: the remediation queue's and the overflow queue's deliveries."""


async def tenants_served(hub: TenantHub | None) -> int:
    """How many tenants this deployment serves, as fairness needs it: 1 (nothing to share,
    no I/O) unless the deployment can serve others at all; then the default tenant plus the
    enabled registered ones, from the registry's per-process snapshot (one Table query a
    minute at most; a missing table is an empty registry)."""
    if hub is None or hub.default.settings.credential != "federated-app":
        return 1
    return len(await hub.tenants())


def movable(request: RemediationRequest, dequeue_count: int) -> bool:
    """A first delivery of a remediation may move; a retry, a release, a resume may not."""
    return request.action == "remediate" and dequeue_count <= 1


@dataclass
class Admission:
    """What one delivery may do: run (counted in its tenant's share until `release`) or
    move to the overflow lane."""

    move: bool = False
    shares: TenantShares | None = None
    tenant: str = ""

    def release(self) -> None:
        if self.shares is not None:
            self.shares.give_back(self.tenant)
            self.shares = None


async def admit(hub: TenantHub | None, acting: Services, request: RemediationRequest, *,
                lane: str, dequeue_count: int) -> Admission:
    """Run or move this delivery. Only the containment lanes of a deployment serving
    several tenants are counted; the overflow lane counts but never moves."""
    if hub is None or lane not in COUNTED_LANES:
        return Admission()
    served = await tenants_served(hub)
    if served <= 1:
        return Admission()
    tenant = acting.settings.tenant_id.lower()
    shares = hub.shares
    if lane == "overflow":
        await shares.overflow_turn(tenant, served)
    elif not movable(request, dequeue_count):
        shares.take(tenant)
    elif not shares.try_take(tenant, served):
        return Admission(move=True)
    return Admission(shares=shares, tenant=tenant)


async def move_to_overflow(services: Services, request: RemediationRequest) -> str:
    """Queue the request on the overflow lane (the caller then completes the delivery);
    returns the reason for the log. A failed enqueue raises: the delivery is retried and,
    being a retry, runs where it is."""
    await services.storage.enqueue(services.settings.overflow_queue, request.to_message())
    reason = (f"moved to {services.settings.overflow_queue}: tenant "
              f"{services.settings.tenant_id} holds its share of this instance")
    log.info("remediation request moved: %s", reason)
    return reason
