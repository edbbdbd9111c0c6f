"""The risk poller across tenants: each registered tenant polled in turn.

Each tenant is polled with its own Services (`shared.intake.routing`), so its lease, its
watermark, its dedupe rows and its queued user checks are in its own journal, its Identity
Protection pacing is its own, and the requests it queues name it. The default tenant comes
first and is polled exactly as a single-tenant deployment polls it. One tenant's failure (a
token refused after its consent was withdrawn, a 401, storage trouble) is reported for that
tenant (its intake journal and, for an auth failure, its registry row) and the others are
still polled; the next timer tries it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import UnknownTenant
from shared.intake.poller import PollResult, poll_once
from shared.intake.routing import services_for_tenant
from shared.intake.tenant_health import error_of, forget_services, is_auth_failure, note_outcome

if TYPE_CHECKING:
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.poller.tenants")


@dataclass
class TenantPoll:
    """One tenant's poll: its result, or why it could not be polled."""

    tenant: str
    result: PollResult | None = None
    error: str | None = None


@dataclass
class TenantPolls:
    """Every tenant's poll of one timer run, default tenant first."""

    polls: list[TenantPoll] = field(default_factory=list)

    @property
    def failed(self) -> list[TenantPoll]:
        return [p for p in self.polls if p.error]

    def summary(self) -> dict[str, Any]:
        return {"tenants": len(self.polls), "failed": [p.tenant for p in self.failed],
                "polls": {p.tenant: (p.result.summary() if p.result else {"error": p.error})
                          for p in self.polls}}


async def poll_tenants(hub: TenantHub, **poll_kw: Any) -> TenantPolls:
    """Poll the default tenant, then each enabled registered tenant; never raises for one
    tenant's trouble (`poll_kw` as `poll_once` takes)."""
    out = TenantPolls()
    polled: set[int] = set()
    for tenant in await hub.tenants():
        poll = TenantPoll(tenant)
        try:
            services, request_tenant = await services_for_tenant(hub, tenant)
        except UnknownTenant as exc:
            poll.error = exc.reason
            out.polls.append(poll)
            log.warning("risk poll of tenant %s skipped: %s", tenant, poll.error)
            continue
        if id(services) in polled:
            continue  # the default tenant, registered under its id: polled already
        polled.add(id(services))
        out.polls.append(poll)
        try:
            poll.result = await poll_once(services, tenant=request_tenant, **poll_kw)
            poll.error = poll.result.error
        except Exception as exc:  # one tenant's failure never stops the others
            poll.error = error_of(exc)
            log.warning("risk poll of tenant %s failed: %s", tenant, poll.error)
        if poll.error and is_auth_failure(poll.error):
            await forget_services(hub, request_tenant)
        if poll.result is None or poll.result.ran:
            await note_outcome(hub, request_tenant, poll.error)
    return out
