"""The per-tenant Identity Protection budget shared by instances through Table storage:
three Services (three Functions instances, each with its own pacing gate) against an
emulator that allows one Identity Protection request per second."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from shared.policy import Policy
from shared.services import Services
from shared.tenant.credentials import StaticTokenCredential
from shared.tenant.graph import identity_protection
from tests.conftest import TOKEN

CALLS_PER_INSTANCE = 3


def _identity_calls(emulator) -> list[dict]:
    return [e for e in emulator.requests()
            if "/identityprotection/" in e["path"].lower()]


async def _storm(settings, emulator, *, shared: bool) -> list[dict]:
    emulator.configure(throttle={"identity_protection": {"rps": 1.0}})
    emulator.clear_log()
    users = [u["id"] for u in emulator.state()["users"]][:CALLS_PER_INSTANCE]
    instances = [Services.create(settings, credential=StaticTokenCredential(TOKEN),
                                 policy=Policy(), shared_budget=shared) for _ in range(3)]
    try:
        await instances[0].journal.ensure()

        async def one(svc: Services, uid: str) -> None:
            async with svc.confirm.gate.turn():
                await identity_protection.risky_users_by_id(svc.graph, [uid])

        outcomes = await asyncio.wait_for(asyncio.gather(
            *(one(svc, uid) for svc in instances for uid in users), return_exceptions=True), 120)
    finally:
        for svc in instances:
            await svc.close()
    if shared:  # with the budget every call goes through; without it one may give up
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
    return _identity_calls(emulator)


async def _gate_sharing(svc: Services, row: str) -> tuple[Any, Any]:
    """A 0.3 s Identity Protection gate whose slots come from the shared budget row `row`."""
    from shared.state.budget import TenantBudget
    from shared.tenant.pacing import IntervalGate

    await svc.journal.ensure()
    budget = TenantBudget(svc.journal, row)
    gate = IntervalGate(0.3)
    gate.shared = budget
    return budget, gate


async def test_three_instances_share_one_budget_and_are_never_throttled(settings, emulator):
    calls = await _storm(settings, emulator, shared=True)
    assert [c for c in calls if c["status"] == 429] == []
    assert len(calls) == 3 * CALLS_PER_INSTANCE
    stamps = sorted(c["t"] for c in calls)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.95, gaps  # one request per second at the service, all instances


async def test_a_retried_request_takes_a_slot_of_its_own(settings, emulator):
    """A request retried inside its slot (here after a 503) must not reach the service
    between the slots the other instances reserved: the retry reserves again."""
    emulator.add_fault(method="GET", path_regex=r"(?i)/identityprotection/", status=503,
                       count=2)
    calls = await _storm(settings, emulator, shared=True)
    assert [c["status"] for c in calls].count(503) == 2
    assert [c for c in calls if c["status"] == 429] == []
    assert len(calls) == 3 * CALLS_PER_INSTANCE + 2
    stamps = sorted(c["t"] for c in calls)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.95, gaps


async def test_without_the_shared_budget_the_instances_are_throttled(settings, emulator):
    """The control: three gates that each keep one request per second offer three (a call
    may even give up after its retries: that is the throttling too)."""
    calls = await _storm(settings, emulator, shared=False)
    assert any(c["status"] == 429 for c in calls)


async def test_the_budget_row_survives_storage_failure_by_pacing_locally(settings, emulator):
    """A budget whose storage fails does not block the call: it waits one spacing."""
    from shared.state.budget import TenantBudget

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        budget = TenantBudget(svc.journal, "identity-protection")

        async def broken(*_a, **_k):
            raise ConnectionResetError("storage down")

        budget._reserve = broken  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        start = loop.time()
        await budget.wait_turn(0.2)
        assert loop.time() - start >= 0.19 and budget.fallbacks == 1
    finally:
        await svc.close()


async def test_a_sender_that_wakes_late_for_its_slot_takes_a_new_one(settings):
    """A starved instance that wakes more than the margin after its slot must not send
    then (it could land within a second of the next instance's slot): it reserves again,
    behind the slots already taken."""
    import time

    from shared.state import partitions
    from shared.state.budget import LATENESS, MARGIN, TenantBudget

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        await svc.journal.ensure()
        late = TenantBudget(svc.journal, "late-sender")
        other = TenantBudget(svc.journal, "late-sender")
        await other.wait_turn(0.5)  # the slot now; the next is 0.5 s + margin later
        before = await svc.journal.read_row(partitions.RATE_BUDGETS, "late-sender")

        async def starve() -> None:
            await asyncio.sleep(0.05)
            time.sleep(0.5 + MARGIN + LATENESS + 0.2)  # noqa: ASYNC251 - a starved loop, on purpose

        starver = asyncio.create_task(starve())
        await late.wait_turn(0.5)
        await starver
        after = await svc.journal.read_row(partitions.RATE_BUDGETS, "late-sender")
        assert late.reservations == 2, vars(late)  # it reserved again
        assert late.late == 1
        # The missed slot and the new one (taken after the wake, so later still).
        assert float(after.values["nextAt"]) - float(before.values["nextAt"]) \
            >= 2 * (0.5 + MARGIN) - 0.01
    finally:
        await svc.close()


async def test_a_turn_gone_stale_before_the_request_leaves_takes_a_fresh_slot(settings):
    """The retry transport checks the turn just before the request leaves: a slot older
    than the margin (the SDK's middleware ran late on a starved process) is exchanged for
    a new one, and the request is sent in that; a fresh turn is sent as it is."""
    import httpx

    from shared.state.budget import LATENESS, MARGIN, TenantBudget
    from shared.state.clock import now
    from shared.tenant.retry import RetryTransport, paced

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(now().timestamp())
        return httpx.Response(200)

    try:
        await svc.journal.ensure()
        budget = TenantBudget(svc.journal, "stale-turn")
        first = await budget.wait_turn(0.3)
        turn = budget.turn(0.3, first)
        await asyncio.sleep(LATENESS + 0.1)  # the middleware took longer than LATENESS
        async with httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(answer))) \
                as client:
            with paced(turn):
                await client.get("http://127.0.0.1/stale")
            assert budget.stale == 1 and budget.reservations == 2, vars(budget)
            assert first is not None and turn.slot is not None
            assert turn.slot >= first + 0.3 + MARGIN - 0.01  # behind the slot it gave up
            assert sent[0] >= turn.slot - 0.01

            fresh = budget.turn(0.3, await budget.wait_turn(0.3))
            with paced(fresh):
                await client.get("http://127.0.0.1/fresh")
            assert budget.stale == 1 and budget.reservations == 3
    finally:
        await svc.close()


async def test_a_turn_exchanged_for_a_fresh_slot_does_not_widen_the_tenant_spacing(settings):
    """Waiting for a fresh slot makes the call slow but it was not refused: the gate keeps
    its spacing (widening it on every stale turn spaced a storm's confirmations up to 8 s
    apart, and every run waiting on them waited too)."""
    import httpx

    from shared.state.budget import LATENESS
    from shared.tenant.retry import RetryTransport

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        budget, gate = await _gate_sharing(svc, "stale-gate")
        transport = RetryTransport(httpx.MockTransport(lambda _r: httpx.Response(200)))
        async with httpx.AsyncClient(transport=transport) as client:
            async with gate.turn():
                await asyncio.sleep(LATENESS + 0.1)  # the middleware ran late
                await client.get("http://127.0.0.1/stale")
        assert budget.stale == 1
        assert gate.interval == 0.3
    finally:
        await svc.close()


async def test_a_slot_reserved_far_ahead_is_ignored_and_the_row_starts_again(settings):
    """An instance whose clock runs an hour ahead (or slots abandoned on a starved process)
    leaves the next slot far in the future: no instance sleeps on it, the row starts again
    from now."""
    from shared.state import partitions
    from shared.state.budget import MAX_AHEAD, TenantBudget
    from shared.state.clock import now

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        await svc.journal.ensure()
        await svc.journal.create_row(partitions.RATE_BUDGETS, "far-ahead",
                                     {"nextAt": now().timestamp() + 3600})
        budget = TenantBudget(svc.journal, "far-ahead")
        started = now().timestamp()
        slot = await asyncio.wait_for(budget.wait_turn(0.3), timeout=10)
        assert slot is not None and slot - started < 1.0
        assert budget.resets == 1
        row = await svc.journal.read_row(partitions.RATE_BUDGETS, "far-ahead")
        assert row is not None and row.values["nextAt"] - now().timestamp() < MAX_AHEAD
        following = await asyncio.wait_for(budget.wait_turn(0.3), timeout=10)
        assert following is not None and following >= slot + 0.3  # spacing holds again
        assert budget.resets == 1
    finally:
        await svc.close()


async def test_a_slow_answer_does_not_leave_the_next_turn_stale(settings):
    """The gate's own spacing is waited before the shared slot is reserved, so the slot is
    fresh when the request leaves even after a slow answer (waiting after it made nearly
    every call behind a slow one take a second slot)."""
    import httpx

    from shared.tenant.retry import RetryTransport

    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.5)  # the service answered late
        return httpx.Response(200)

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        budget, gate = await _gate_sharing(svc, "slow-answer")
        async with httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(slow))) \
                as client:
            for _ in range(3):
                async with gate.turn():
                    await client.get("http://127.0.0.1/identity")
        assert budget.stale == 0
        assert budget.reservations == 3
    finally:
        await svc.close()


async def test_a_late_request_and_a_slower_path_still_leave_a_second_at_the_service(settings):
    """Instance A's request leaves 0.15 s after its slot and takes 0.15 s longer to reach
    the service than instance B's, which leaves on time in the next slot. The service must
    still see them at least a second apart (Identity Protection's rate): a turn that late
    is exchanged for a fresh slot, and the slots are spaced wider than a request may be
    late."""
    import httpx

    from shared.state.budget import TenantBudget
    from shared.state.clock import now
    from shared.tenant.retry import RetryTransport, paced

    arrived: dict[str, float] = {}

    def path_of(delay: float):
        async def answer(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(delay)  # the way to the service
            arrived[request.url.path] = now().timestamp()
            return httpx.Response(200)
        return answer

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        await svc.journal.ensure()
        a = TenantBudget(svc.journal, "jitter")
        b = TenantBudget(svc.journal, "jitter")
        turn_a = a.turn(1.0, await a.wait_turn(1.0))
        slow = httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(path_of(0.15))))
        fast = httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(path_of(0.0))))

        async def send_a() -> None:
            await asyncio.sleep(0.15)  # A's middleware ran late
            with paced(turn_a):
                await slow.get("http://127.0.0.1/a")

        async def send_b() -> None:
            turn_b = b.turn(1.0, await b.wait_turn(1.0))  # the next slot, taken at once
            with paced(turn_b):
                await fast.get("http://127.0.0.1/b")

        try:
            await asyncio.wait_for(asyncio.gather(send_a(), send_b()), 10)
        finally:
            await slow.aclose()
            await fast.aclose()
        assert abs(arrived["/a"] - arrived["/b"]) >= 1.0, arrived
    finally:
        await svc.close()


async def test_each_page_of_a_paged_read_takes_a_slot_of_its_own(settings):
    """A call that sends several requests in one turn (a list read that pages) sends the
    first in its slot and reserves a fresh slot for each further one: the service never
    sees two of them within the spacing."""
    import httpx

    from shared.state.budget import LATENESS, MARGIN, TenantBudget
    from shared.state.clock import now
    from shared.tenant.retry import RetryTransport, paced

    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(now().timestamp())
        return httpx.Response(200)

    svc = Services.create(settings, credential=StaticTokenCredential(TOKEN), policy=Policy())
    try:
        await svc.journal.ensure()
        budget = TenantBudget(svc.journal, "paged-read")
        turn = budget.turn(0.3, await budget.wait_turn(0.3))
        async with httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(answer))) \
                as client:
            with paced(turn):
                for page in range(3):
                    await client.get(f"http://127.0.0.1/detections?page={page}")
        assert budget.reservations == 3 and budget.further == 2, vars(budget)
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert min(gaps) >= 0.3 + MARGIN - LATENESS - 0.01, gaps
    finally:
        await svc.close()


async def test_without_a_shared_budget_the_pages_of_a_read_keep_the_gate_spacing():
    """In a process that paces on its own, the further requests of one turn (pages) leave
    at least the gate's interval after the one before."""
    import time

    import httpx

    from shared.tenant.pacing import IntervalGate
    from shared.tenant.retry import RetryTransport

    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(200)

    gate = IntervalGate(0.3)
    async with httpx.AsyncClient(transport=RetryTransport(httpx.MockTransport(answer))) \
            as client:
        async with gate.turn():
            for page in range(3):
                await client.get(f"http://127.0.0.1/risky?page={page}")
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.29, gaps
