"""A per-tenant request budget shared by every instance of the app, through Table storage.

Identity Protection allows one request per second per tenant, for all apps together, and
answers an excess with 429 and no Retry-After
(https://learn.microsoft.com/en-us/graph/throttling-limits#identity-protection-and-conditional-access-service-limits).
A pacer inside one process cannot keep N Functions instances under that: here each call
first reserves the next free time slot in one row (`nextAt`, written only if the row
still has the ETag it was read with), then waits for its slot. Of two instances racing
for a slot exactly one wins; the other re-reads and takes the next. Any other
per-tenant limit can use a row of its own.
"""

from __future__ import annotations

import asyncio
import logging
import random

from shared.state import partitions
from shared.state.clock import now
from shared.state.journal import Journal

log = logging.getLogger("responder.budget")
LATENESS = 0.1
"""Seconds a request may leave after its slot. A turn older than this when the request is
about to leave (a starved event loop, slow middleware) is exchanged for a fresh slot."""
MARGIN = 0.3
"""Seconds added to every slot's spacing. A request may leave up to LATENESS after its
slot and the next one exactly on time, so the service sees them at least spacing +
MARGIN - LATENESS apart: 0.2 s to spare for the difference in how long two requests from
different instances (machines, processes, event loops) take to reach it. The service
answers a request that comes too soon with 429 and no Retry-After, a blind back-off."""
MAX_AHEAD = 60.0
"""A reserved time further ahead than this is not a queue of turns (a few instances hold
one turn each, about a second apart) but a row gone wrong: an instance whose clock runs
ahead, or slots abandoned on a starved process. It is ignored and the row starts again
from now, so no instance ever sleeps on it for minutes."""
MAX_RACES = 20
"""Reservations lost to other instances (or slots missed) before this call gives up
sharing: bounded, so a contended or failing row slows a call down (a local wait) instead of
blocking it."""


class TenantBudget:
    """Time slots of one rate-limited service, shared through the row `name`."""

    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name
        self.reservations = 0
        self.races = 0
        self.fallbacks = 0
        self.late = 0
        self.stale = 0
        self.resets = 0
        """Rows found reserved more than MAX_AHEAD seconds ahead and started again."""
        self.further = 0
        """Slots taken for a call's further requests (the next page of a list)."""

    async def wait_turn(self, spacing: float) -> float | None:
        """Reserve the next slot (at least `spacing` seconds after the slot before it, by
        any instance) and sleep until it comes. The slot (epoch seconds), or None when
        this call paced itself locally (the row unavailable or contended)."""
        for _ in range(MAX_RACES):
            try:
                slot = await self._reserve(spacing)
            except Exception as exc:  # storage down: pace locally, the 429 retry covers
                log.warning("budget %s unavailable (%s): pacing locally", self.name,
                            type(exc).__name__)
                self.fallbacks += 1
                await asyncio.sleep(spacing)
                return None
            if slot is not None:
                self.reservations += 1
                wait = slot - now().timestamp()
                if wait > 0:
                    await asyncio.sleep(wait)
                if now().timestamp() - slot <= LATENESS:
                    return slot
                # Woken (or the row answered) later than LATENESS: sending now could
                # land within a second of the next instance's slot. Take a fresh slot.
                self.late += 1
                continue
            self.races += 1
            await asyncio.sleep(random.uniform(0.005, 0.03))
        self.fallbacks += 1
        await asyncio.sleep(spacing)
        return None

    def turn(self, spacing: float, slot: float | None) -> SharedTurn:
        """The turn a call holds from `slot`, for the retry transport to check."""
        return SharedTurn(self, spacing, slot)

    async def _reserve(self, spacing: float) -> float | None:
        """The reserved slot (epoch seconds), or None when another instance won the row."""
        current = await self.journal.read_row(partitions.RATE_BUDGETS, self.name)
        stamp = now().timestamp()
        if current is None:
            etag = await self.journal.create_row(partitions.RATE_BUDGETS, self.name,
                                                 {"nextAt": stamp + spacing + MARGIN})
            return stamp if etag is not None else None
        ahead = float(current.values.get("nextAt") or 0.0)
        if ahead - stamp > MAX_AHEAD:
            log.warning("budget %s: next slot %.0f s ahead, starting again from now",
                        self.name, ahead - stamp)
            self.resets += 1
            ahead = stamp
        slot = max(stamp, ahead)
        etag = await self.journal.write_row_if(partitions.RATE_BUDGETS, self.name,
                                               {"nextAt": slot + spacing + MARGIN},
                                               current.etag)
        return slot if etag is not None else None


class SharedTurn:
    """A call's slot, checked by the retry transport just before each request leaves.

    Between `wait_turn` and the wire lie the SDK's middleware and the event loop; on a
    starved process that can take longer than LATENESS, and a request sent then could
    land within a second of the next instance's slot. So a turn older than LATENESS at
    send time is exchanged for a fresh slot, and each retry takes a slot of its own."""

    def __init__(self, budget: TenantBudget, spacing: float, slot: float | None) -> None:
        self.budget = budget
        self.spacing = spacing
        self.slot = slot
        self.retries = 0
        self.used = False
        """A request went out in `slot` already: the call's next request (the next page
        of a list) needs a slot of its own."""

    async def before_send(self) -> None:
        if self.used:
            self.budget.further += 1
            self.slot = await self.budget.wait_turn(self.spacing)
        for _ in range(MAX_RACES):
            if self.slot is None or now().timestamp() - self.slot <= LATENESS:
                break
            self.budget.stale += 1
            self.slot = await self.budget.wait_turn(self.spacing)
        self.used = True

    async def again(self) -> None:
        self.retries += 1
        self.slot = await self.budget.wait_turn(self.spacing)
        self.used = False
