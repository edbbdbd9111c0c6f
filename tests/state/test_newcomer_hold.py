"""While a newcomer tenant's first containment runs, the Graph and Exchange requests of a
storming tenant's containments wait (a bounded time); nothing else waits."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.tenant import lanes as lanes_module
from shared.tenant.http import AiohttpTransport
from shared.tenant.lanes import STORM_RUNS, LanePriority, hold_for_newcomers
from shared.tenant.retry import RetryTransport
from tests.tenant.loopback import Server, serve


class Storm:
    """`n` containments of tenant "a" holding their slots until `done` is set."""

    def __init__(self, lanes: LanePriority, n: int) -> None:
        self.lanes = lanes
        self.done = asyncio.Event()
        self.tasks = [asyncio.create_task(self._one()) for _ in range(n)]

    async def _one(self) -> None:
        async with self.lanes.containing("a"):
            await self.done.wait()

    async def in_a_containment(self, request: asyncio.Future[None]) -> float:
        """A request of one more "a" containment: when it was let go."""
        async with self.lanes.containing("a"):
            await hold_for_newcomers()
            request.set_result(None)
            return time.monotonic()

    async def end(self) -> None:
        self.done.set()
        await asyncio.gather(*self.tasks)


async def _newcomer(lanes: LanePriority, tenant: str, started: asyncio.Event,
                    release: asyncio.Event) -> float:
    """A containment of `tenant` that runs until `release`; when it ended."""
    async with lanes.containing(tenant):
        started.set()
        await hold_for_newcomers()  # its own requests never wait
        await release.wait()
    return time.monotonic()


async def test_a_storming_tenants_request_waits_until_the_newcomers_containment_ends():
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS)
    await asyncio.sleep(0)
    started, release = asyncio.Event(), asyncio.Event()
    b = asyncio.create_task(_newcomer(lanes, "b", started, release))
    await started.wait()
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    a = asyncio.create_task(storm.in_a_containment(sent))
    await asyncio.sleep(0.1)
    assert not sent.done(), "A's request left while B's first containment ran"
    release.set()
    b_ended, a_sent = await asyncio.gather(b, a)
    assert a_sent >= b_ended
    assert lanes.held_requests == 1 and lanes.held_seconds >= 0.1
    await storm.end()


async def test_the_hold_ends_after_its_bound_even_if_the_newcomer_does_not(monkeypatch):
    monkeypatch.setattr(lanes_module, "URGENT_HOLD", 0.3)
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS)
    await asyncio.sleep(0)
    started, release = asyncio.Event(), asyncio.Event()
    b = asyncio.create_task(_newcomer(lanes, "b", started, release))
    await started.wait()
    t0 = time.monotonic()
    a_sent = await asyncio.wait_for(storm.in_a_containment(
        asyncio.get_running_loop().create_future()), 5)
    assert 0.2 <= a_sent - t0 < 1.0, "held for about the bound, not until B ends"
    assert not b.done()
    release.set()
    await b
    await storm.end()


async def test_a_tenant_below_a_storm_is_not_held():
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS - 2)  # with the request's own: one short of a storm
    await asyncio.sleep(0)
    started, release = asyncio.Event(), asyncio.Event()
    b = asyncio.create_task(_newcomer(lanes, "b", started, release))
    await started.wait()
    sent = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(storm.in_a_containment(sent), 0.5)
    assert lanes.held_requests == 0
    release.set()
    await b
    await storm.end()


async def test_a_tenant_seen_lately_is_no_newcomer():
    """B's second containment within NEWCOMER_AFTER of its first holds no one."""
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS)
    await asyncio.sleep(0)
    async with lanes.containing("b"):
        pass
    started, release = asyncio.Event(), asyncio.Event()
    b = asyncio.create_task(_newcomer(lanes, "b", started, release))
    await started.wait()
    sent = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(storm.in_a_containment(sent), 0.5)
    assert lanes.held_requests == 0
    release.set()
    await b
    await storm.end()


async def test_requests_outside_a_containment_and_the_newcomers_own_tasks_are_not_held():
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS + 1)
    await asyncio.sleep(0)
    own: list[float] = []

    async def newcomer() -> None:
        async with lanes.containing("b"):
            async def step() -> None:  # a parallel step of B's run: its own task
                await hold_for_newcomers()
                own.append(time.monotonic())
            await asyncio.wait_for(asyncio.gather(step(), step()), 0.5)
            # a sweep's request, say: no containment in its context
            await asyncio.wait_for(asyncio.create_task(
                hold_for_newcomers(), context=contextvars.Context()), 0.5)

    await newcomer()
    assert len(own) == 2 and lanes.held_requests == 0
    await asyncio.wait_for(hold_for_newcomers(), 0.5)
    await storm.end()


async def test_a_single_tenant_storm_holds_nothing():
    """One tenant (a single-tenant deployment): no newcomer, nothing waits."""
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, 8)
    await asyncio.sleep(0)
    sent = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(storm.in_a_containment(sent), 0.5)
    assert lanes.held_requests == 0
    await storm.end()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    runner = await serve(state)
    yield state
    await runner.cleanup()


async def test_the_retry_transport_holds_the_storm_and_lets_the_newcomer_through(server):
    """Through the transport under the Graph and Exchange clients: B's request reaches the
    server at once, A's only after B's containment ended."""
    lanes = LanePriority(slots=16)
    storm = Storm(lanes, STORM_RUNS)
    await asyncio.sleep(0)
    started, release = asyncio.Event(), asyncio.Event()
    b_ended: list[float] = []

    async with httpx.AsyncClient(transport=RetryTransport(AiohttpTransport())) as client:
        async def b() -> None:
            async with lanes.containing("b"):
                started.set()
                await client.get(f"{server.url}/b")
                await release.wait()
                b_ended.append(time.monotonic())

        async def a() -> None:
            async with lanes.containing("a"):
                await client.get(f"{server.url}/a")

        b_task = asyncio.create_task(b())
        await started.wait()
        a_task = asyncio.create_task(a())
        await asyncio.sleep(0.2)
        assert [s["path"] for s in server.seen] == ["/b"]
        release.set()
        await asyncio.wait_for(asyncio.gather(b_task, a_task), 5)
    assert [s["path"] for s in server.seen] == ["/b", "/a"]
    assert server.seen[1]["t"] >= b_ended[0]
    await storm.end()
