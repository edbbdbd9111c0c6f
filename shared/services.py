"""Everything a run needs, built once per process from Settings and passed explicitly.

Functions get it from `functions.runtime`; tests and the local host build their own with
injected credentials and transports. No module-level singletons hold service clients.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx

from shared.policy import Policy, load_policy
from shared.settings import Settings
from shared.state.budget import TenantBudget
from shared.state.journal import Journal
from shared.state.storage import Storage, create_storage
from shared.tenant.credentials import AsyncTokenCredential, build_credential, storage_credential
from shared.tenant.exchange import ExchangeClient
from shared.tenant.graph.client import GraphClient, create_graph_client
from shared.tenant.graph.directory import add_group_members
from shared.tenant.graph.identity_protection import confirm_compromised
from shared.tenant.identity_reads import IdentityReads
from shared.tenant.lanes import LanePriority
from shared.tenant.pacing import AdaptiveLimit, Aggregator, Pacer, SlotSource

T = TypeVar("T")
IDENTITY_PROTECTION_BUDGET = "identity-protection"
"""The budget row of Identity Protection requests (reads and confirmCompromised alike)."""


@dataclass
class Services:
    settings: Settings
    policy: Policy
    credential: AsyncTokenCredential
    graph: GraphClient
    exchange: ExchangeClient
    storage: Storage
    journal: Journal
    confirm: Aggregator
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Identifies this process's deliveries in run leases (see Journal.claim_run)."""
    group_adds: dict[str, Aggregator] = field(default_factory=dict)
    exchange_limit: AdaptiveLimit = field(default_factory=AdaptiveLimit)
    """Concurrency of Exchange admin calls, shared by every run of the process."""
    lanes: LanePriority = field(default_factory=LanePriority)
    """Containment before clean-up, a few containments at a time, within this instance
    (shared.playbook.runner lanes); one per process, shared by every tenant it serves
    (shared.tenancy.TenantHub)."""
    poll_pacer: Pacer | None = None
    """Spacing of the risk poller's Identity Protection requests, retries included; made
    by the first poll of the process (shared.intake.poller.pacer_for)."""
    identity_budget: SlotSource | None = None
    """Identity Protection's one request per second per tenant, shared with every other
    instance of the app through Table storage (shared.state.budget); None in tests that
    pace one process only."""
    notify_transport: httpx.AsyncBaseTransport | None = None
    """Transport of notification webhook deliveries; None = the network (tests inject)."""
    owns_storage: bool = True
    """False for another tenant's Services: the storage clients are the default's."""
    enabled_steps: frozenset[str] | None = None
    """The tenant's `features` (shared.tenancy): when they name steps, a request's explicit
    `actions` may use only those (shared.playbook.runner refuses the others); None: any."""
    _identity_reads: IdentityReads | None = None

    _ttl_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _ttl_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def tenant_fact(self, key: str, loader: Callable[[], Awaitable[T]],
                          ttl: float = 300.0) -> T:
        """Tenant-wide facts (verified domains, organisation config) read once per `ttl`
        per process, not once per run: a storm of 500 runs needs them once."""
        lock = self._ttl_locks.setdefault(key, asyncio.Lock())
        async with lock:  # the first run of a storm loads it; the others wait for that
            now = time.monotonic()
            hit = self._ttl_cache.get(key)
            if hit and now - hit[0] < ttl:
                return cast(T, hit[1])  # one key, one loader
            value = await loader()
            self._ttl_cache[key] = (now, value)
            return value

    @property
    def identity_reads(self) -> IdentityReads:
        """The process's aggregated Identity Protection readers, made on first use and
        paced by the same gate as confirmCompromised."""
        if self._identity_reads is None:
            self._identity_reads = IdentityReads.create(self.graph, self.confirm.gate)
        return self._identity_reads

    def group_adder(self, group_id: str) -> Aggregator:
        """One aggregator per group: concurrent runs share PATCHes of up to 20 members."""
        if group_id not in self.group_adds:
            async def send(ids: Any) -> dict[str, bool]:
                return await add_group_members(self.graph, group_id, list(ids))

            self.group_adds[group_id] = Aggregator(send, window=0.2, max_ids=20,
                                                   min_interval=0.0)
        return self.group_adds[group_id]

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        credential: AsyncTokenCredential | None = None,
        policy: Policy | None = None,
        graph_transport: httpx.AsyncBaseTransport | None = None,
        exchange_transport: httpx.AsyncBaseTransport | None = None,
        confirm_window: float = 0.3,
        shared_budget: bool = True,
        storage_hooks: Mapping[str, Callable[..., None]] | None = None,
        storage: Storage | None = None,
    ) -> Services:
        """`storage`: another tenant's Services share the default's storage (the account and
        its queues are the deployment's; each tenant has its own table and container)."""
        credential = credential or build_credential(settings)
        policy = policy or load_policy(settings.policy_path)
        graph = create_graph_client(settings, credential, transport=graph_transport)
        exchange = ExchangeClient(settings, credential, transport=exchange_transport)
        owns_storage = storage is None
        if storage is None:
            storage_cred = (None if settings.storage_connection
                            else storage_credential(settings, credential))
            storage = create_storage(settings, storage_cred, request_hooks=storage_hooks)
        journal = Journal(storage, settings.journal_table, settings.evidence_container)

        async def send(ids: Any) -> None:
            await confirm_compromised(graph, ids)

        confirm = Aggregator(send, window=confirm_window)
        budget = TenantBudget(journal, IDENTITY_PROTECTION_BUDGET) if shared_budget else None
        confirm.gate.shared = budget
        return cls(settings, policy, credential, graph, exchange, storage, journal, confirm,
                   identity_budget=budget, owns_storage=owns_storage)

    async def close(self) -> None:
        await self.graph.close()
        await self.exchange.close()
        if self.owns_storage:
            await self.storage.close()
        await self.credential.close()
