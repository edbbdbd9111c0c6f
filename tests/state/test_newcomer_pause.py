"""While a newcomer tenant's first containment runs beside one other tenant's storm, the
storm starts no further containment (a bounded time); nothing else is held back."""

from __future__ import annotations

import asyncio
import time

from shared.tenant import lanes as lanes_module
from shared.tenant.lanes import STORM_RUNS, LanePriority


class Tenant:
    """Containments of one tenant, each holding its slot until released; `started` records
    when each got its slot."""

    def __init__(self, lanes: LanePriority, name: str) -> None:
        self.lanes = lanes
        self.name = name
        self.started: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._held: list[asyncio.Event] = []

    def queue(self, n: int) -> None:
        self.tasks += [asyncio.create_task(self._one()) for _ in range(n)]

    async def _one(self) -> None:
        async with self.lanes.containing(self.name):
            self.started.append(time.monotonic())
            release = asyncio.Event()
            self._held.append(release)
            await release.wait()

    def release(self, n: int) -> None:
        """End `n` of the running containments, the earliest first."""
        for _ in range(n):
            self._held.pop(0).set()

    async def end(self) -> None:
        while len(self.started) < len(self.tasks) or self._held:
            if self._held:
                self.release(len(self._held))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _storm(lanes: LanePriority, running: int, waiting: int) -> Tenant:
    a = Tenant(lanes, "a")
    a.queue(running + waiting)
    await _settle()
    assert len(a.started) == running
    return a


async def test_a_storm_starts_no_more_containments_while_a_newcomers_first_runs():
    lanes = LanePriority(slots=8)
    a = await _storm(lanes, 8, 10)
    b = Tenant(lanes, "b")
    b.queue(1)
    await _settle()
    assert len(b.started) == 1, "B started at once, in a newcomer slot"
    assert lanes.urgent_runs == 1
    a.release(6)  # six of A's end: A fills up to a storm's floor, no further
    await _settle()
    assert len(a.started) == 8 + (STORM_RUNS - 2) and lanes.running == {"a": STORM_RUNS, "b": 1}
    assert lanes.deferred > 0
    b.release(1)  # B's first containment ends: A takes the free slots again
    await asyncio.wait_for(asyncio.gather(*b.tasks), 1)
    await _settle()
    assert lanes.running == {"a": 8} and len(a.started) == 8 + (STORM_RUNS - 2) + 4
    await a.end()
    assert len(a.started) == 18 and lanes.running == {} and lanes.active == 0


async def test_the_storm_resumes_after_the_bound_even_if_the_newcomer_does_not_end(
        monkeypatch):
    monkeypatch.setattr(lanes_module, "URGENT_HOLD", 0.3)
    lanes = LanePriority(slots=8)
    a = await _storm(lanes, 8, 8)
    b = Tenant(lanes, "b")
    b.queue(1)
    await _settle()
    b_start = b.started[0]
    a.release(8)  # all of A's running end; A refills only to the floor
    await _settle()
    assert len(a.started) == 8 + STORM_RUNS
    await asyncio.sleep(0.5)  # past the bound: A fills the free slots, B still running
    assert len(a.started) == 8 + 7 and len(b.started) == 1 and not b.tasks[0].done()
    assert max(a.started) - b_start >= 0.25
    await b.end()
    await a.end()


async def test_below_a_storm_nothing_is_deferred():
    lanes = LanePriority(slots=8)
    a = await _storm(lanes, STORM_RUNS - 1, 0)
    b = Tenant(lanes, "b")
    b.queue(1)
    await _settle()
    assert lanes.urgent_runs == 0
    a.queue(3)  # A's further containments start beside B at once
    await _settle()
    assert len(a.started) == STORM_RUNS - 1 + 3 and lanes.deferred == 0
    await b.end()
    await a.end()


async def test_a_tenant_seen_lately_is_no_newcomer():
    lanes = LanePriority(slots=8)
    async with lanes.containing("b"):
        pass
    a = await _storm(lanes, 8, 4)
    b = Tenant(lanes, "b")
    b.queue(1)
    await _settle()
    assert len(b.started) == 1 and lanes.urgent_runs == 0
    await b.end()
    await a.end()
    assert lanes.deferred == 0


async def test_beside_two_storms_a_newcomer_defers_no_one():
    """Several tenants storming each have their share already; holding them all back
    would stall every delivery behind them."""
    lanes = LanePriority(slots=8)
    async with lanes.containing("c"):  # C is no newcomer
        pass
    a = Tenant(lanes, "a")
    c = Tenant(lanes, "c")
    a.queue(4)
    c.queue(4)
    await _settle()
    a.queue(2)
    b = Tenant(lanes, "b")
    b.queue(1)
    await _settle()
    assert lanes.urgent_runs == 0
    await c.end()
    await _settle()
    assert len(a.started) == 6 and lanes.deferred == 0
    await b.end()
    await a.end()


async def test_one_tenant_alone_is_never_deferred():
    """A single-tenant deployment: no newcomer, no pause."""
    lanes = LanePriority(slots=4)
    a = await _storm(lanes, 4, 12)
    await a.end()
    assert len(a.started) == 16
    assert lanes.urgent_runs == 0 and lanes.deferred == 0
