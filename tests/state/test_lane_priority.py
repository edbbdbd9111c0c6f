"""Within one instance, a clean-up delivery waits while containments run or wait, and never
longer than its bound; containments run a few at a time, a tenant with fewer running first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from shared.tenant.lanes import LanePriority


async def test_clean_up_waits_for_the_containments_of_this_instance():
    lanes = LanePriority(max_wait=5.0, quiet=0.05)
    order: list[str] = []

    async def contain(i: int) -> None:
        async with lanes.containing():
            await asyncio.sleep(0.2)
            order.append(f"contain-{i}")

    async def clean_up() -> None:
        await asyncio.sleep(0.01)  # arrives while the containments run
        await lanes.cleanup_turn()
        order.append("clean-up")

    await asyncio.gather(contain(1), contain(2), clean_up())
    assert order[-1] == "clean-up" and set(order[:2]) == {"contain-1", "contain-2"}


async def test_clean_up_is_never_starved_past_its_bound():
    lanes = LanePriority(max_wait=0.3, quiet=0.05)
    async with lanes.containing():  # a containment that never ends while we wait
        start = time.monotonic()
        await lanes.cleanup_turn()
        waited = time.monotonic() - start
    assert 0.3 <= waited < 1.5


async def test_no_containment_no_wait():
    lanes = LanePriority(max_wait=5.0, quiet=0.05)
    start = time.monotonic()
    await lanes.cleanup_turn()
    assert time.monotonic() - start < 0.5


async def test_no_more_containments_run_at_once_than_there_are_slots():
    lanes = LanePriority(slots=3)
    running = peak = 0

    async def contain() -> None:
        nonlocal running, peak
        async with lanes.containing("a"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    await asyncio.gather(*(contain() for _ in range(10)))
    assert peak == 3
    assert lanes.active == 0 and lanes.waiting == 0 and lanes.running == {}
    assert lanes.queued_peak == 7


def _held_containments(lanes: LanePriority) -> tuple[
        list[str], asyncio.Event, Callable[[str, str], Awaitable[None]]]:
    """The order containments start in, the event that ends them all, and a containment
    of `tenant` named `name` that holds its slot until that event."""
    order: list[str] = []
    release = asyncio.Event()

    async def contain(tenant: str, name: str) -> None:
        async with lanes.containing(tenant):
            order.append(name)
            await release.wait()

    return order, release, contain


async def test_a_tenant_with_fewer_running_takes_the_next_free_slot():
    """Tenant B arrives during tenant A's storm with no extra slot left: B waits for one
    slot, not for A's queue."""
    lanes = LanePriority(slots=2, newcomer_slots=0)
    order, release, contain = _held_containments(lanes)
    storm = [asyncio.create_task(contain("a", f"a{i}")) for i in range(6)]
    await asyncio.sleep(0.01)  # a0, a1 run; a2..a5 wait
    newcomer = asyncio.create_task(contain("b", "b0"))
    await asyncio.sleep(0.01)
    assert order == ["a0", "a1"] and lanes.waiting == 5
    release.set()
    await asyncio.gather(*storm, newcomer)
    assert order[2] == "b0", order
    assert order[3:] == ["a2", "a3", "a4", "a5"]


async def test_a_tenant_with_none_running_starts_beside_the_storm():
    """Tenant B's first account arrives while tenant A's storm holds every slot and has
    more waiting: B starts at once in an extra slot; a second account of B, and a third
    tenant once the extra slots are taken, wait like everyone else."""
    lanes = LanePriority(slots=2, newcomer_slots=1)
    order, release, contain = _held_containments(lanes)
    storm = [asyncio.create_task(contain("a", f"a{i}")) for i in range(4)]
    await asyncio.sleep(0.01)
    b = [asyncio.create_task(contain("b", f"b{i}")) for i in range(2)]
    await asyncio.sleep(0.01)
    c = asyncio.create_task(contain("c", "c0"))
    await asyncio.sleep(0.01)
    assert order == ["a0", "a1", "b0"], order
    assert lanes.active == 3 and lanes.running == {"a": 2, "b": 1}
    release.set()
    await asyncio.wait_for(asyncio.gather(*storm, *b, c), 5)
    assert lanes.active == 0 and lanes.running == {} and lanes.waiting == 0
    assert sorted(order) == ["a0", "a1", "a2", "a3", "b0", "b1", "c0"]


async def _one_running_one_waiting(second: str) -> tuple[
        LanePriority, asyncio.Event, asyncio.Task[None], asyncio.Task[None]]:
    """One slot: tenant a's containment holds it until the event is set; `second`'s waits."""
    lanes = LanePriority(slots=1, newcomer_slots=0)
    hold = asyncio.Event()

    async def contain(tenant: str) -> None:
        async with lanes.containing(tenant):
            await hold.wait()

    first = asyncio.create_task(contain("a"))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(contain(second))
    await asyncio.sleep(0.01)
    return lanes, hold, first, waiting


async def test_a_containment_cancelled_while_it_waits_gives_no_slot_away():
    lanes, hold, first, waiting = await _one_running_one_waiting("b")
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert lanes.waiting == 0 and lanes.running == {"a": 1}
    hold.set()
    await first
    assert lanes.active == 0 and lanes.running == {}
    async with lanes.containing("c"):  # the slot is free again
        assert lanes.running == {"c": 1}


async def test_clean_up_waits_while_containments_wait_for_a_slot():
    lanes = LanePriority(max_wait=5.0, quiet=0.05, slots=1)
    order: list[str] = []

    async def contain(i: int) -> None:
        async with lanes.containing("a"):
            await asyncio.sleep(0.1)
            order.append(f"contain-{i}")

    async def clean_up() -> None:
        await asyncio.sleep(0.01)
        await lanes.cleanup_turn()
        order.append("clean-up")

    await asyncio.gather(contain(1), contain(2), contain(3), clean_up())
    assert order == ["contain-1", "contain-2", "contain-3", "clean-up"]


async def test_a_containment_cancelled_as_a_slot_is_handed_out_leaves_quietly():
    """Cancelled while it waits, and a slot handed out before its task wakes: the hand-out
    skips it and the cancellation finds nothing left to remove."""
    lanes, hold, first, waiting = await _one_running_one_waiting("a")
    hold.set()  # the first ends on its next step, and hands its slot out
    waiting.cancel()  # its turn is cancelled now; the task sees it only after that
    await first
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()
    assert lanes.active == 0 and lanes.waiting == 0 and lanes.running == {}
