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
served beside the storm, not behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

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

    @property
    def waiting(self) -> int:
        """Containments waiting for a slot."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def containing(self, tenant: str = "") -> AsyncIterator[None]:
        await self._take_slot(tenant)
        try:
            yield
        finally:
            self._last_end = time.monotonic()
            self._give_back(tenant)

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
        if self.active < self.slots and not self._waiting:
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
            else:
                self._waiting.remove(entry)
            raise

    def _give_back(self, tenant: str) -> None:
        self._count(tenant, -1)
        while self._waiting and self.active < self.slots:
            # the tenant with the fewest running goes first; among equals, the earliest
            entry = min(self._waiting, key=lambda e: (self.running.get(e[1], 0), e[0]))
            self._waiting.remove(entry)
            _, who, turn = entry
            if turn.done():  # cancelled while it waited
                continue
            self._count(who, 1)
            turn.set_result(None)

    def _count(self, tenant: str, step: int) -> None:
        self.active += step
        left = self.running.get(tenant, 0) + step
        if left > 0:
            self.running[tenant] = left
        else:
            self.running.pop(tenant, None)
