"""What a step sees: the run, the resolved user, read-through caches of the tenant's
state, and the clients (read-only views in a dry run).

Reads are cached per run so that `collect_evidence` and the steps after it share one
read of each thing; a resumed run starts with an empty cache and reads afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from shared.models import RemediationRequest, StepResult, StepStatus
from shared.state.journal import StepWriter
from shared.tenant import exchange as exo
from shared.tenant.graph import auth_methods, directory, mail
from shared.tenant.pacing import LimitedExchange

if TYPE_CHECKING:
    from shared.policy import Policy
    from shared.services import Services
    from shared.state.journal import Journal, RunRecord
    from shared.tenant.exchange import ExchangeClient
    from shared.tenant.graph.client import GraphClient
    from shared.tenant.graph.directory import DirectoryUser

T = TypeVar("T")

@dataclass
class Plan:
    """What a step would do, computed from the real current state.

    `actions` are human-readable lines (shown in dry runs and reports); `data` carries what
    `apply` needs. An empty plan with `nothing` set means the tenant is already safe.
    """

    actions: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    nothing: str | None = None
    skip: str | None = None

    @classmethod
    def nothing_to_do(cls, why: str, **data: Any) -> Plan:
        return cls(nothing=why, data=data)

    @classmethod
    def skipped(cls, why: str) -> Plan:
        return cls(skip=why)


@dataclass
class StepContext:
    services: Services
    run: RunRecord
    request: RemediationRequest
    user: DirectoryUser
    dry_run: bool
    detected_at: datetime
    results: dict[str, StepResult] = field(default_factory=dict)
    planned_steps: tuple[str, ...] = ()
    writer: StepWriter | None = None
    """Records this delivery's step results, several per transaction (made on first use)."""
    applied: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    """Per step of this delivery: resolves once the step's change is made (False), or once
    the step ended without it and must be retried (True). Steps that come `after` it wait
    for this, not for its read-back and record."""

    def mark_applied(self, step: str, blocked: bool = False) -> None:
        """Let the steps `after` `step` go (blocked: they must wait for the redelivery)."""
        waiting = self.applied.get(step)
        if waiting is not None and not waiting.done():
            waiting.set_result(blocked)

    async def record_step(self, result: StepResult, attempt: int) -> None:
        """Store a step's outcome (its row and event); returns once it is stored."""
        if self.writer is None:
            self.writer = StepWriter(self.services.journal, self.run.run_id)
        await self.writer.record(result, attempt)
    _cache: dict[str, Any] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @property
    def graph(self) -> GraphClient:
        return self.services.graph.view(read_only=self.dry_run)

    @property
    def exchange(self) -> ExchangeClient:
        client = self.services.exchange.view(read_only=self.dry_run)
        return LimitedExchange(client, self.services.exchange_limit)  # type: ignore[return-value]

    @property
    def policy(self) -> Policy:
        return self.services.policy

    @property
    def journal(self) -> Journal:
        return self.services.journal

    @property
    def mailbox_id(self) -> str:
        """The identity Exchange cmdlets take for this user's mailbox."""
        return self.user.upn

    def succeeded(self, step: str) -> bool | None:
        """True/False for a step in this run; None when the step is not part of it."""
        if step not in self.planned_steps:
            return None
        result = self.results.get(step)
        return bool(result and result.status in (StepStatus.DONE, StepStatus.NOTHING_TO_DO,
                                                  StepStatus.PARTIAL, StepStatus.PLANNED))

    async def cached(self, key: str, loader: Callable[[], Awaitable[T]]) -> T:
        """Load once per run; concurrent callers wait for the first load."""
        if key not in self._cache:
            lock = self._locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._cache:
                    self._cache[key] = await loader()
        return cast(T, self._cache[key])  # each key is always loaded by the same reader

    def forget(self, key: str) -> None:
        self._cache.pop(key, None)

    # reads shared by evidence and steps ---------------------------------------------------
    async def domains(self) -> list[dict[str, Any]]:
        return await self.cached("domains", lambda: self.services.tenant_fact(
            "domains", lambda: directory.domains(self.graph)))

    async def organization_config(self) -> dict[str, Any]:
        return await self.cached("org", lambda: self.services.tenant_fact(
            "organization_config", lambda: exo.organization_config(self.exchange)))

    async def audit_bypass(self) -> bool | None:
        return await self.cached("bypass", lambda: exo.audit_bypass(self.exchange,
                                                                   self.mailbox_id))

    async def federated(self) -> bool:
        for d in await self.domains():
            if str(d.get("id", "")).lower() == self.user.domain:
                return str(d.get("authenticationType", "")).lower() == "federated"
        return False

    async def verified_domains(self) -> set[str]:
        found = {str(d.get("id", "")).lower() for d in await self.domains()}
        return found | {x.lower() for x in self.policy.inbox_rules.internal_domains}

    async def methods(self) -> list[dict[str, Any]]:
        return await self.cached("methods",
                                 lambda: auth_methods.list_methods(self.graph, self.user.id))

    async def per_user_mfa(self) -> str | None:
        return await self.cached("per_user_mfa",
                                 lambda: auth_methods.get_per_user_mfa(self.graph, self.user.id))

    async def risky_user(self) -> dict[str, Any] | None:
        return await self.cached(
            "risky_user", lambda: self.services.identity_reads.risky.submit(self.user.id))

    async def risk_detections(self) -> list[dict[str, Any]]:
        async def load() -> list[dict[str, Any]]:
            return await self.services.identity_reads.detections.submit(self.user.id) or []

        return await self.cached("risk_detections", load)

    async def folders(self) -> list[dict[str, Any]]:
        return await self.cached("folders", lambda: mail.list_folders(self.graph, self.user.id))

    async def rules(self) -> list[dict[str, Any]]:
        return await self.cached("rules", lambda: mail.list_rules(self.graph, self.user.id))

    async def mailbox(self) -> dict[str, Any] | None:
        return await self.cached("mailbox", lambda: exo.get_mailbox(self.exchange,
                                                                    self.mailbox_id))

    async def exchange_rules(self) -> list[dict[str, Any]]:
        return await self.cached(
            "exchange_rules",
            lambda: exo.inbox_rules(self.exchange, self.mailbox_id,
                                    include_hidden=self.policy.inbox_rules.include_hidden))

    async def blocked(self) -> list[dict[str, Any]]:
        async def load() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for address in dict.fromkeys(a.lower() for a in (self.user.upn, self.user.mail)
                                         if a):
                rows = await exo.blocked_senders(self.exchange, address)
                found.extend(r for r in rows
                             if str(r.get("SenderAddress", "")).lower() == address)
            return found

        return await self.cached("blocked", load)
