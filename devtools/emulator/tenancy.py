"""The tenants one emulator hosts, each with its own state, throttling and consent.

One multi-tenant app is consented in several customer tenants. Each hosted tenant keeps:
- its own `Tenant` state (Graph and Exchange see only that tenant's objects);
- its own throttling buckets: Graph's limits are per app *and tenant* (Identity Protection's
  1 request per second is per tenant), https://learn.microsoft.com/en-us/graph/throttling-limits
- its consent: admin consent creates the app's service principal in that tenant; removing
  it (deleting the enterprise app) is how a customer withdraws consent. After that Entra
  refuses to issue tokens for the tenant (AADSTS700016, see identity.py).

Tokens already issued are refused here as soon as consent is withdrawn. A real tenant may go
on accepting such a token until it expires: continuous access evaluation for workload
identities covers single-tenant apps only, multi-tenant apps are out of its scope
(https://learn.microsoft.com/en-us/entra/identity/conditional-access/concept-continuous-access-evaluation-workload).
The emulator compresses that window to zero so tests see the end state at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .tenant import Tenant
from .throttle import Throttler


@dataclass
class Hosted:
    """One tenant the emulator serves and the app's standing in it."""

    tenant: Tenant
    throttler: Throttler
    consented: bool = True
    permissions: frozenset[str] | None = None
    """Application permissions consented in this tenant; None = the app's full grant."""
    generation: int = 0
    """Bumped at each withdrawal: tokens issued under an older generation stay refused even
    after consent is granted again (a new consent makes a new service principal)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    def names(self) -> set[str]:
        """Every name a URL may use for this tenant: its id and its domains (lower case)."""
        with self.tenant.lock:
            return {self.tenant.tenant_id.lower()} | {
                str(d["id"]).lower() for d in self.tenant.domains}

    def withdraw(self) -> None:
        with self.lock:
            self.consented = False
            self.generation += 1

    def grant(self, permissions: Iterable[str] | None = None) -> None:
        with self.lock:
            self.consented = True
            self.permissions = None if permissions is None else frozenset(permissions)

    def public(self, default: bool) -> dict[str, Any]:
        with self.lock:
            return {
                "tenantId": self.tenant.tenant_id,
                "displayName": self.tenant.display_name,
                "default": default,
                "consented": self.consented,
                "permissions": None if self.permissions is None else sorted(self.permissions),
            }


class Tenancy:
    """The hosted tenants, default first. Few tenants: lookups are linear and always read
    the tenant's current id (a control call may reload a tenant with another id)."""

    def __init__(self, default: Tenant, throttle_config: dict[str, Any]):
        self._lock = threading.Lock()
        self._hosted: list[Hosted] = [Hosted(default, Throttler(throttle_config))]

    @property
    def default(self) -> Hosted:
        return self._hosted[0]

    def all(self) -> list[Hosted]:
        with self._lock:
            return list(self._hosted)

    def add(self, tenant: Tenant, throttle_config: dict[str, Any], *, consented: bool = True,
            permissions: Iterable[str] | None = None) -> Hosted:
        hosted = Hosted(tenant, Throttler(throttle_config), consented=consented,
                        permissions=None if permissions is None else frozenset(permissions))
        with self._lock:
            taken = set().union(*(h.names() for h in self._hosted))
            clash = hosted.names() & taken
            if clash:
                raise ValueError(f"tenant already hosted: {sorted(clash)[0]}")
            self._hosted.append(hosted)
        return hosted

    def find(self, name: str) -> Hosted | None:
        """The tenant a tenant id (as in a token's `tid`) names, else None."""
        key = name.strip().lower()
        for hosted in self.all():
            if hosted.tenant.tenant_id.lower() == key:
                return hosted
        return None

    def find_by_name(self, name: str) -> Hosted | None:
        """The tenant a URL names: its id or one of its domains."""
        key = name.strip().lower()
        if not key:
            return None
        for hosted in self.all():
            if key in hosted.names():
                return hosted
        return None

    def get(self, name: str) -> Hosted:
        hosted = self.find_by_name(name)
        if hosted is None:
            raise ValueError(f"tenant not hosted: {name}")
        return hosted

    def reset_throttling(self, throttle_config: dict[str, Any]) -> None:
        for hosted in self.all():
            hosted.throttler = Throttler(throttle_config)

    def configure_throttling(self, changes: dict[str, Any]) -> None:
        for hosted in self.all():
            hosted.throttler.configure(changes)
