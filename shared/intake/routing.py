"""Which tenant's Services take in each signal an alert carries.

Every alert source names the tenant it came from (a Graph security alert's `tenantId`, a
diagnostic or Defender streaming record's `tenantId`, a change notification's `tenantId`, a
Graph partner event's `source`); `shared.intake.sources` keeps it on each signal and user
change. Intake then takes each tenant's share in with that tenant's own Services (its
journal: dedupe rows and intake records; its policy; its Graph client), and the requests it
queues name the tenant. What names no tenant, or names the default tenant, is the default
tenant's, exactly as before: no registry read, no other storage call.

A tenant that is not registered, or is disabled, is refused (`unknown tenant`): nothing is
queued for it. One exception keeps single-tenant deployments as they were: while the
registry is empty (no table, or no row), every signal is the default tenant's, whatever
tenant it names, because such a deployment's sources are wired to its one tenant and
RESPONDER_TENANT_ID may be a domain that no alert spells.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.errors import UnknownTenant
from shared.intake.sources.common import signal_tenant
from shared.intake.sources.result import UserChange
from shared.models import RiskSignal
from shared.services import Services
from shared.tenancy import TenantHub


@dataclass
class Share:
    """One tenant's part of a payload and the Services that take it in."""

    services: Services
    tenant: str | None
    """The tenant id queued requests name; None for the default tenant (as in schema v1)."""
    signals: list[RiskSignal] = field(default_factory=list)
    changes: list[UserChange] = field(default_factory=list)


@dataclass
class Refused:
    """What a payload carried for a tenant this deployment does not serve."""

    tenant: str
    reason: str
    signals: list[RiskSignal] = field(default_factory=list)
    changes: list[UserChange] = field(default_factory=list)


async def services_for_tenant(hub: TenantHub, tenant: str | None) -> tuple[Services, str | None]:
    """The Services acting for the tenant an alert names, and the tenant id its requests
    carry (None: the default tenant). Raises UnknownTenant."""
    if not tenant or hub.is_default(tenant):
        return hub.default, None
    try:
        services = await hub.services_for(tenant)
    except UnknownTenant:
        if not await hub.registry.list():
            return hub.default, None  # a single-tenant deployment: as it always was
        raise
    if services is hub.default:  # the default tenant is registered under its id
        return services, None
    return services, services.settings.tenant_id


async def split(hub: TenantHub, signals: Iterable[RiskSignal],
                changes: Iterable[UserChange]) -> tuple[list[Share], list[Refused]]:
    """Each tenant's share, the default tenant's first; and what is refused, per tenant."""
    named: dict[str | None, tuple[list[RiskSignal], list[UserChange]]] = {None: ([], [])}
    for signal in signals:
        named.setdefault(signal_tenant(signal), ([], []))[0].append(signal)
    for change in changes:
        named.setdefault(change.tenant or None, ([], []))[1].append(change)
    shares: dict[int, Share] = {}
    refused: list[Refused] = []
    for tenant, (sigs, chgs) in named.items():
        if not sigs and not chgs and tenant is not None:
            continue
        try:
            services, request_tenant = await services_for_tenant(hub, tenant)
        except UnknownTenant as exc:
            refused.append(Refused(tenant or "", exc.reason, sigs, chgs))
            continue
        share = shares.setdefault(id(services), Share(services, request_tenant))
        share.signals.extend(sigs)
        share.changes.extend(chgs)
    out = [s for s in shares.values() if s.signals or s.changes]
    return out, refused
