"""One sweep timer, every tenant: each tenant swept in turn, fairly, apart from the others.

- Order: the default tenant first (exactly as a single-tenant deployment sweeps it), then
  each enabled registered tenant in registry order.
- Fairness: one invocation has the default policy's `sweeps.maxSecondsPerRun` in all (it
  fits the host's function timeout); each tenant gets at most an equal share of what is left
  (and never more than its own policy allows), and its own `maxItemsPerRun`. A tenant cut
  short resumes from its own checkpoint on the next tick, in its own journal, under its own
  lease, like any bounded run; time a tenant does not use goes to the tenants after it.
- Isolation: a tenant's failure (a token refused after its consent was withdrawn, a 401,
  a Graph error) is its sweep report's (its journal) and its registry row's
  (`consentStatus`, `lastError`, shared.intake.tenant_health); the other tenants are swept
  all the same, and the next tick tries it again (a success sets `consentStatus` ok).
- Features: a tenant whose `features` name sweeps runs only those; features naming no sweep
  (steps only) leave its sweeps as they are, as they leave its playbooks when naming only
  sweeps (shared.tenancy.tenant_policy).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import UnknownTenant
from shared.intake.routing import services_for_tenant
from shared.intake.tenant_health import error_of, forget_services, is_auth_failure, note_outcome
from shared.state.clock import now
from shared.sweeps.base import SweepResult
from shared.sweeps.registry import all_sweeps
from shared.sweeps.runner import run_sweep

if TYPE_CHECKING:
    from shared.state.tenants import TenantRecord
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.sweeps.tenants")


@dataclass
class TenantSweep:
    """One tenant's run of the sweep."""

    tenant: str
    result: SweepResult


@dataclass
class TenantSweeps:
    """What one invocation did, tenant by tenant (default tenant first)."""

    sweep: str
    runs: list[TenantSweep] = field(default_factory=list)

    @property
    def failed(self) -> list[TenantSweep]:
        return [r for r in self.runs if r.result.status == "failed"]

    @property
    def status(self) -> str:
        return "failed" if self.failed else "ok"

    def summary(self) -> str:
        parts = [f"{r.tenant}: {r.result.summary()}" for r in self.runs]
        return f"sweep {self.sweep} across {len(self.runs)} tenant(s): " + "; ".join(parts)

    def result_of(self, tenant: str) -> SweepResult | None:
        wanted = tenant.lower()
        return next((r.result for r in self.runs if r.tenant.lower() == wanted), None)

    def to_dict(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "status": self.status,
                "tenants": [{"tenant": r.tenant, **r.result.to_dict()} for r in self.runs]}


def sweep_enabled_for(record: TenantRecord | None, name: str) -> bool:
    """Whether a tenant's `features` let this sweep run for it."""
    if record is None or not record.features:
        return True
    named = set(record.features) & set(all_sweeps())
    return not named or name in named


async def run_sweep_for_tenants(hub: TenantHub, name: str, *, dry_run: bool = False,
                                budget: int | None = None, trigger: str = "timer",
                                past_due: bool = False,
                                clock: Any = time.monotonic) -> TenantSweeps:
    """Run the sweep once for each tenant in turn; never stops for one tenant's trouble."""
    out = TenantSweeps(name)
    tenants = await _distinct(hub, await hub.tenants())
    total = float(hub.default.policy.sweeps.max_seconds_per_run)
    deadline = clock() + total
    for index, tenant in enumerate(tenants):
        share = max(0.0, deadline - clock()) / (len(tenants) - index)
        result = await _one_tenant(hub, tenant, name, dry_run=dry_run, budget=budget,
                                   trigger=trigger, past_due=past_due, seconds=share)
        out.runs.append(TenantSweep(tenant, result))
    return out


async def _distinct(hub: TenantHub, tenants: list[str]) -> list[str]:
    """The tenants without the default tenant twice (registered under its id while
    RESPONDER_TENANT_ID names one of its domains)."""
    out: list[str] = []
    for tenant in tenants:
        try:
            services, _ = await services_for_tenant(hub, tenant)
        except UnknownTenant:
            out.append(tenant)  # reported by its run
            continue
        if services is not hub.default or tenant == tenants[0]:
            out.append(tenant)
    return out


async def _one_tenant(hub: TenantHub, tenant: str, name: str, *, dry_run: bool,
                      budget: int | None, trigger: str, past_due: bool,
                      seconds: float) -> SweepResult:
    request_tenant: str | None = None
    try:
        services, request_tenant = await services_for_tenant(hub, tenant)
        record = await hub.registry.get(request_tenant) if request_tenant else None
        if not sweep_enabled_for(record, name):
            return _skipped(name, trigger, past_due, "not among the tenant's features")
        if request_tenant is not None:
            await services.journal.ensure()  # a tenant's first sweep makes its table
        result = await run_sweep(services, name, dry_run=dry_run, budget=budget,
                                 trigger=trigger, past_due=past_due, max_seconds=seconds)
    except UnknownTenant as exc:
        return _failed(name, trigger, past_due, exc.reason)
    except Exception as exc:  # storage, a token: this tenant's trouble only
        result = _failed(name, trigger, past_due, error_of(exc))
    error = "; ".join(result.errors) if result.status == "failed" else None
    if error:
        log.warning("sweep %s for tenant %s failed: %s", name, tenant, error)
        if is_auth_failure(error):
            await forget_services(hub, request_tenant)
    if result.status != "skipped" and not result.dry_run:
        await note_outcome(hub, request_tenant, error)
    return result


def _skipped(name: str, trigger: str, past_due: bool, why: str) -> SweepResult:
    result = SweepResult(sweep=name, status="skipped", trigger=trigger, past_due=past_due)
    result.note(why)
    result.finished_at = now()
    return result


def _failed(name: str, trigger: str, past_due: bool, error: str) -> SweepResult:
    result = SweepResult(sweep=name, status="failed", trigger=trigger, past_due=past_due,
                         complete=False)
    result.errors.append(error)
    result.finished_at = now()
    return result
