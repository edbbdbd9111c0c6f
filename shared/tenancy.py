"""One deployment, many tenants: which `Services` act for a tenant.

The default tenant (RESPONDER_TENANT_ID) keeps the very Services it always had: no lookup,
no extra storage or Graph call. Any other tenant must be in the registry (shared.state.
tenants) and enabled; it gets Services of its own (credential, Graph and Exchange clients,
journal table, evidence container, aggregators, rate budgets, policy), built once per
process, so nothing tenant-scoped is shared. Only the storage account is shared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shared.errors import PolicyError, UnknownTenant
from shared.policy import Exclusions, Policy, load_policy, parse_policy
from shared.services import Services
from shared.settings import Settings, SettingsError, tenant_domain, tenant_guid
from shared.state.tenants import TenantRecord, TenantRegistry
from shared.tenant.credentials import AsyncTokenCredential, CredentialFactory
from shared.tenant.pacing import TenantShares

log = logging.getLogger("responder.tenancy")

ServicesBuilder = Callable[[Settings, AsyncTokenCredential, Policy, Services], Services]
"""(tenant settings, tenant credential, tenant policy, default Services) -> Services."""


def build_tenant_services(settings: Settings, credential: AsyncTokenCredential,
                          policy: Policy, default: Services) -> Services:
    """The tenant's own Services over the default's storage clients."""
    return Services.create(settings, credential=credential, policy=policy,
                           storage=default.storage)


def tenant_policy(base: Policy, record: TenantRecord) -> Policy:
    """The tenant's policy: its named or inline policy (else `base`), plus its exclusions
    and notify targets, and with its playbooks narrowed to its enabled steps (a playbook
    left with none is dropped; a risk level may not point at one)."""
    if isinstance(record.policy, dict):
        policy = parse_policy(record.policy, origin=f"tenant {record.tenant_id} policy")
    elif isinstance(record.policy, str):
        policy = load_policy(record.policy)
    else:
        policy = base
    if record.exclusions:
        users = tuple(dict.fromkeys([*policy.exclusions.users, *record.exclusions]))
        policy = policy.model_copy(update={
            "exclusions": Exclusions(users=users, groups=policy.exclusions.groups)})
    if record.notify:
        update = {("webhook_url" if t.lower().startswith("https://") else "soc_mailbox"): t
                  for t in record.notify}
        policy = policy.model_copy(update={"notify": policy.notify.model_copy(update=update)})
    enabled = set(record.features)
    named_steps = {s for steps in policy.playbooks.values() for s in steps} & enabled
    if named_steps:  # features naming sweeps only leave the playbooks as they are
        narrowed = {name: tuple(s for s in steps if s in enabled)
                    for name, steps in policy.playbooks.items()}
        playbooks = {name: steps for name, steps in narrowed.items() if steps}
        lost = sorted(f"{level} -> {name}" for level, name in
                      policy.risk_level_playbooks.items() if name not in playbooks)
        if lost:
            raise PolicyError(f"tenant {record.tenant_id}: its features leave no step in the "
                              f"playbook of risk level(s) {', '.join(lost)}")
        policy = policy.model_copy(update={"playbooks": playbooks})
    return policy


class TenantHub:
    """The default Services plus, on demand, one Services per registered tenant."""

    def __init__(self, default: Services, credential_factory: CredentialFactory, *,
                 registry: TenantRegistry | None = None,
                 build: ServicesBuilder = build_tenant_services,
                 check_policy: Callable[[Policy], object] | None = None) -> None:
        """`check_policy`: the playbook catalogue's check (a layer above), applied to each
        tenant's policy as the app applies it to its own at start."""
        self.default = default
        self._check_policy = check_policy
        self.registry = registry or TenantRegistry(default.storage,
                                                   default.settings.tenants_table)
        self._credential_factory = credential_factory
        self._build = build
        self._services: dict[str, Services] = {}
        self._lock = asyncio.Lock()
        self.shares = TenantShares()
        """This instance's containments in flight per tenant (fairness between tenants,
        shared.playbook.fairness): one per process, as the hub is."""

    def is_default(self, tenant: str | None) -> bool:
        return self.default.settings.is_default_tenant(tenant)

    def _is_default_record(self, record: TenantRecord) -> bool:
        return self.is_default(record.tenant_id) or any(self.is_default(d)
                                                        for d in record.domains)

    async def record_for(self, tenant: str) -> TenantRecord | None:
        """The registry row a tenant id or an accepted domain names."""
        if tenant_guid(tenant):
            return await self.registry.get(tenant)
        if tenant_domain(tenant):
            return await self.registry.by_domain(tenant)
        return None

    async def services_for(self, tenant: str | None) -> Services:
        """The Services acting for `tenant`; raises UnknownTenant when this deployment does
        not serve it (not registered, disabled, or its credential cannot be made)."""
        if not tenant or self.is_default(tenant):
            return self.default
        record = await self.record_for(tenant)
        if record is None:
            raise UnknownTenant(f"unknown tenant: {tenant[:100]!r} is not registered")
        if self._is_default_record(record):
            # the default tenant registered (RESPONDER_TENANT_ID may be one of its domains):
            # still the one default Services, never a second set of tables for it
            return self.default
        if not record.enabled:
            raise UnknownTenant(f"unknown tenant: {record.tenant_id} is disabled")
        cached = self._services.get(record.tenant_id)
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._services.get(record.tenant_id)
            if cached is None:
                cached = self._create(record)
                self._services[record.tenant_id] = cached
        return cached

    def _create(self, record: TenantRecord) -> Services:
        try:
            settings = self.default.settings.for_tenant(record.tenant_id)
            policy = tenant_policy(self.default.policy, record)
            if self._check_policy is not None:
                self._check_policy(policy)
            credential = self._credential_factory(record.tenant_id)
        except (SettingsError, PolicyError, ValueError) as exc:
            raise UnknownTenant(f"unknown tenant: {record.tenant_id} cannot be served: "
                                f"{exc}") from exc
        log.info("services made for tenant %s", record.tenant_id)
        services = self._build(settings, credential, policy, self.default)
        # its playbooks are narrowed above; explicit `actions` are bounded by the runner
        services.enabled_steps = frozenset(record.features) or None
        # one instance, one CPU: containment slots and the clean-up wait span its tenants
        services.lanes = self.default.lanes
        return services

    async def tenant_of_domain(self, domain: str) -> str | None:
        """The tenant id whose accepted domains include `domain` (an alert naming a UPN only);
        None when no registered tenant lists it. Async: it may read the registry."""
        record = await self.registry.by_domain(domain)
        return record.tenant_id if record else None

    async def tenants(self) -> list[str]:
        """The default tenant, then every enabled registered tenant (registry order)."""
        out = [self.default.settings.tenant_id]
        out += [r.tenant_id for r in await self.registry.list()
                if r.enabled and not self._is_default_record(r)]
        return out

    async def forget(self, tenant: str) -> None:
        """Drop (and close) one tenant's Services, so the next use builds a fresh
        credential: after a refused token, a cached one would stay refused."""
        async with self._lock:
            services = self._services.pop(tenant.lower(), None)
        if services is not None:
            try:
                await services.close()
            except Exception:
                log.debug("closing the Services of tenant %s failed", tenant, exc_info=True)

    async def close(self) -> None:
        """Close every tenant's Services (the default's belongs to whoever made it)."""
        services, self._services = list(self._services.values()), {}
        for svc in services:
            await svc.close()
