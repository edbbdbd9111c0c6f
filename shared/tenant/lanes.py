"""Within one instance: containment before clean-up, and few containments at once, a
tenant with fewer running first.

The instance's CPU is what a storm's containments queue for (each containment is a dozen
Graph and Table calls, about a tenth of a second of CPU). Starting every delivery the host
hands over at once (batchSize + newBatchThreshold, 48) makes all of them finish late: the
first account of a storm waits for the CPU with 47 others. Running a few at a time gives
the CPU the same work in the same total time, and each account is contained as soon as its
own calls are done. The slots also decide who goes next: the waiting delivery whose tenant
has the fewest containments running; and a tenant with none running here may start at
once in one of a few extra slots, so a tenant arriving during another tenant's storm is
served beside the storm, not behind it; and while that newcomer's first containment runs,
the storm starts no further containment (a second at most), so the newcomer has most of
the instance by the time its calls go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

CONTAINMENT_SLOTS = 16
"""Containments one instance runs at once. A containment waits on about a dozen calls of
10-50 ms each for a few tens of milliseconds of CPU, so 16 keep a core busy with room for
slow answers. Measured at N = 500 on 2 shared cores: 12 slots contained everyone after
11.9-12.3 s, 16 after 10.9-11.5 s, 24 after 11.3 s with the first account later (0.65 s
against 0.5-0.6 s): more only lengthen each containment."""

NEWCOMER_SLOTS = 2
"""Slots beyond CONTAINMENT_SLOTS for a tenant with no containment running here: a tenant
whose first account arrives during another tenant's storm starts at once instead of
waiting for one of the storm's containments to end. Two at most, so several tenants
arriving together cannot crowd the CPU; a storm of one tenant never uses them (its
containments run already)."""

INTAKE_AT_ONCE = 1
"""Stored payloads one instance takes in at a time. A storm arrives as several payloads of
50, delivered together; taken in side by side, their first requests are queued only after
the first chunk of every one is decided, and the first containment waits for all of them.
One at a time queues the first requests within a chunk's time; the total stays the same."""

NEWCOMER_AFTER = 30.0
"""A tenant with no containment started or ended here for this long (or ever) is a
newcomer."""

STORM_RUNS = 4
"""A tenant with this many containments running here is storming. While a newcomer's first
containment runs beside the storm of one other tenant, that tenant starts no further
containment until fewer than this many of its own run (URGENT_HOLD at most)."""

URGENT_HOLD = 1.0
"""Seconds at most a newcomer's first containment keeps a storm from starting more,
counted from the newcomer's start. Alone, a containment's password reset and session
revocation are done within a few tenths of a second; the bound keeps a slow newcomer (its
paced Identity Protection call, a slow tenant) from stalling the storm for long."""


@dataclass(eq=False)
class _Urgent:
    """A newcomer's first containment, running beside one other tenant's storm."""

    tenant: str
    expired: bool = False
    """URGENT_HOLD has passed: the storm starts containments again."""


class LanePriority:
    """Containment goes before clean-up, and runs in `slots` at a time.

    Each queue trigger has its own concurrency, so the clean-up lane could take the
    instance's CPU and connections while accounts still wait to be contained: a clean-up
    delivery waits until no containment has run or waited in this instance for `quiet`
    seconds, so every queued account is contained before clean-up takes the CPU.
    `max_wait` (2 minutes: a storm of about 1,000 accounts on one instance) only keeps
    clean-up from starving under an endless stream; the host keeps the waiting message
    invisible meanwhile. One per process, shared by every tenant the process serves."""

    def __init__(self, max_wait: float = 120.0, quiet: float = 0.2,
                 slots: int = CONTAINMENT_SLOTS, newcomer_slots: int = NEWCOMER_SLOTS) -> None:
        self.max_wait = max_wait
        self.quiet = quiet
        self.slots = max(1, slots)
        self.newcomer_slots = max(0, newcomer_slots)
        self.active = 0
        """Containments holding a slot."""
        self.running: dict[str, int] = {}
        """Containments holding a slot, per tenant."""
        self._waiting: list[tuple[int, str, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._last_end = float("-inf")
        self.waited = 0.0
        """Seconds clean-up deliveries spent waiting, all together (for the benchmark)."""
        self.queued_peak = 0
        """The most containments that waited for a slot at once (for the benchmark)."""
        self._intake = asyncio.Semaphore(INTAKE_AT_ONCE)
        self._seen: dict[str, float] = {}
        """Tenant -> when one of its containments last started or ended here."""
        self._urgent: list[_Urgent] = []
        """Newcomers' first containments running now."""
        self.urgent_runs = 0
        """Newcomers' first containments that narrowed a storm (for the benchmark)."""
        self.deferred = 0
        """Times a freed slot was kept from a storming tenant for a newcomer (likewise)."""

    @property
    def waiting(self) -> int:
        """Containments waiting for a slot."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def containing(self, tenant: str = "") -> AsyncIterator[None]:
        newcomer = self._is_newcomer(tenant)
        await self._take_slot(tenant)
        urgent: _Urgent | None = None
        if newcomer and self._one_storm_beside(tenant):
            urgent = _Urgent(tenant)
            self._urgent.append(urgent)
            self.urgent_runs += 1
            asyncio.get_running_loop().call_later(URGENT_HOLD, self._expire, urgent)
        try:
            yield
        finally:
            self._last_end = time.monotonic()
            if urgent is not None:
                self._urgent.remove(urgent)
            self._give_back(tenant)

    def _expire(self, urgent: _Urgent) -> None:
        urgent.expired = True
        self._fill()

    def _is_newcomer(self, tenant: str) -> bool:
        last = self._seen.get(tenant)
        return tenant not in self.running and (
            last is None or time.monotonic() - last >= NEWCOMER_AFTER)

    def _one_storm_beside(self, tenant: str) -> bool:
        """Exactly one other tenant is storming here. With several, each already has its
        share of the instance, and keeping them all from starting would stall the host's
        intake (no delivery completes, no new batch is fetched) for everyone behind."""
        return sum(1 for t, n in self.running.items()
                   if t != tenant and n >= STORM_RUNS) == 1

    def _paused(self, tenant: str) -> bool:
        """A storming tenant starts no further containment while a newcomer's first runs."""
        if not self._urgent or self.running.get(tenant, 0) < STORM_RUNS:
            return False
        return any(u.tenant != tenant and not u.expired for u in self._urgent)

    @contextlib.asynccontextmanager
    async def intake_turn(self) -> AsyncIterator[None]:
        """Take in one stored payload (INTAKE_AT_ONCE at a time, first come first)."""
        async with self._intake:
            yield

    async def cleanup_turn(self) -> None:
        start = time.monotonic()
        while time.monotonic() - start < self.max_wait:
            if self.active == 0 and not self._waiting \
                    and time.monotonic() - self._last_end >= self.quiet:
                break
            await asyncio.sleep(self.quiet / 2)
        self.waited += time.monotonic() - start

    async def _take_slot(self, tenant: str) -> None:
        if self.active < self.slots and not self._waiting and not self._paused(tenant):
            self._count(tenant, 1)
            return
        if tenant not in self.running and self.active < self.slots + self.newcomer_slots:
            self._count(tenant, 1)  # a tenant's first: beside the storm, not behind it
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._order), tenant, turn)
        self._waiting.append(entry)
        self.queued_peak = max(self.queued_peak, len(self._waiting))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_back(tenant)  # handed a slot while being cancelled: pass it on
            elif entry in self._waiting:  # (a slot handed out meanwhile skipped it already)
                self._waiting.remove(entry)
            raise

    def _give_back(self, tenant: str) -> None:
        self._count(tenant, -1)
        self._fill()

    def _fill(self) -> None:
        """Hand free slots to waiting containments: the tenant with the fewest running
        first, among equals the earliest; none to a tenant paused for a newcomer."""
        while self._waiting and self.active < self.slots:
            ready = [e for e in self._waiting if not self._paused(e[1])]
            if not ready:
                self.deferred += 1
                return
            entry = min(ready, key=lambda e: (self.running.get(e[1], 0), e[0]))
            self._waiting.remove(entry)
            _, who, turn = entry
            if turn.done():  # cancelled while it waited
                continue
            self._count(who, 1)
            turn.set_result(None)

    def _count(self, tenant: str, step: int) -> None:
        self.active += step
        self._seen[tenant] = time.monotonic()
        if len(self._seen) > 4096:  # forget the tenants not seen for a while
            old = time.monotonic() - NEWCOMER_AFTER
            self._seen = {t: at for t, at in self._seen.items() if at >= old}
        left = self.running.get(tenant, 0) + step
        if left > 0:
            self.running[tenant] = left
        else:
            self.running.pop(tenant, None)
