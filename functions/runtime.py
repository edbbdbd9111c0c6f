"""Where trigger adapters get their Services: built once per worker process from the app
settings, or injected by tests and the local host through `use_services` / `use_hub`.

`services()` is the default tenant's (RESPONDER_TENANT_ID), as it always was; `hub()` adds
the other registered tenants, each with Services of its own (shared.tenancy)."""

from __future__ import annotations

import asyncio

from shared.playbook.catalogue import check_policy
from shared.services import Services
from shared.settings import Settings
from shared.tenancy import TenantHub
from shared.tenant.credentials import credential_factory

_injected: Services | None = None
_built: Services | None = None
_lock = asyncio.Lock()
_injected_hub: TenantHub | None = None
_hub: TenantHub | None = None


def use_services(services: Services | None) -> None:
    """Inject the services every function uses (tests, the local host); None to clear."""
    global _injected
    _injected = services


def use_hub(hub: TenantHub | None) -> None:
    """Inject the tenant hub (tests that serve several tenants); None to clear. Its default
    Services are what `services()` returns while it is injected."""
    global _injected_hub
    _injected_hub = hub


async def services() -> Services:
    """The injected services, else the process-wide ones built from the environment."""
    global _built
    if _injected_hub is not None:
        return _injected_hub.default
    if _injected is not None:
        return _injected
    async with _lock:
        if _built is None:
            built = Services.create(Settings.from_env())
            check_policy(built.policy)  # a playbook naming an unknown step stops the start
            _built = built
    return _built


async def hub() -> TenantHub:
    """The tenant hub over `services()`: made once per default Services (no I/O; the
    registry is read only when a message names another tenant, and by fairness between
    tenants in a federated-app deployment, shared.playbook.fairness)."""
    global _hub
    if _injected_hub is not None:
        return _injected_hub
    default = await services()
    if _hub is None or _hub.default is not default:
        _hub = TenantHub(default, credential_factory(default.settings),
                         check_policy=check_policy)
    return _hub


async def services_for(tenant: str | None) -> Services:
    """The Services acting for `tenant` (None: the default tenant's); raises UnknownTenant."""
    return await (await hub()).services_for(tenant)
