"""Within one instance, a clean-up delivery waits while containments run, and never longer
than its bound."""

from __future__ import annotations

import asyncio
import time

from shared.tenant.pacing import LanePriority


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
