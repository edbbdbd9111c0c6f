"""Aggregates per-user calls across concurrent runs into one call with many user ids.

Identity Protection allows one request per second per tenant: in a storm, hundreds of runs
each want to confirm one user; they wait here briefly and one POST carries them all, the
calls spaced at least `min_interval` apart. Group membership adds work the same way (one
PATCH adds up to 20 members) and save directory-write budget. Aggregators live in
`Services` (one per process), never as module-level globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from shared.tenant.retry import PacedTurn, paced

Sender = Callable[[Sequence[str]], Awaitable[Mapping[str, Any] | None]]


class SlotSource(Protocol):
    """Time slots shared beyond this process (shared.state.budget.TenantBudget): all the
    app's instances together keep a per-tenant rate."""

    async def wait_turn(self, spacing: float) -> float | None: ...

    def turn(self, spacing: float, slot: float | None) -> PacedTurn: ...


class LocalTurn:
    """A paced call's turn when no budget is shared beyond this process: the process's own
    spacing holds the call's first request; each further request of the call (the next
    page of a list, a retry) leaves at least `spacing` after the one before, so a paged
    read never sends two requests within the service's rate."""

    def __init__(self, spacing: float = 0.0) -> None:
        self.spacing = spacing
        self.retries = 0
        self._last_sent: float | None = None

    async def before_send(self) -> None:
        if self._last_sent is not None:
            gap = self._last_sent + self.spacing - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
        self._last_sent = time.monotonic()

    async def again(self) -> None:
        self.retries += 1


async def _shared_turn(shared: SlotSource | None, spacing: float) -> PacedTurn:
    """Wait for a slot in the shared budget (none beyond this process: a local turn); the
    turn the call's requests keep to."""
    if shared is None:
        return LocalTurn(spacing)
    return shared.turn(spacing, await shared.wait_turn(spacing))


class IntervalGate:
    """Spaces calls at least `min_interval` apart, first come first served.

    Identity Protection allows one request per second per tenant for reads and writes
    alike: every aggregator that calls it shares one gate, so together they never exceed
    the rate (a 429 there comes without Retry-After and costs a blind backoff)."""

    def __init__(self, min_interval: float, max_interval: float = 8.0) -> None:
        self.min_interval = min_interval
        self.max_interval = max(min_interval, max_interval)
        self.interval = min_interval
        """The current spacing: it doubles when a call needed retries (other instances of
        the app share the tenant's rate: a 429 without Retry-After is the only sign) and
        shrinks back towards `min_interval` while calls go through at once. Counted
        retries, not elapsed time: a call that waited for a fresh shared slot before it
        left, or ran on a starved event loop, was slow but not refused."""
        self._last = 0.0
        self._lock: asyncio.Lock | None = None
        self.shared: SlotSource | None = None
        """When set, the slots come from the budget all instances share (the tenant's
        rate is for all of them), not from this process's own spacing."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the service for one call. The interval counts from the previous call's
        answer, so the server sees the calls at least `min_interval` apart even when the
        event loop was slow to send one."""
        if self.min_interval <= 0:
            yield
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            gap = self.interval - (time.monotonic() - self._last)
            if gap > 0:  # never closer than the interval to this process's last answer
                await asyncio.sleep(gap)
            # the shared slot is the last wait: a local sleep after it would leave the turn
            # stale by the time the request leaves, and the call would take a second slot
            turn = await _shared_turn(self.shared, self.interval)
            try:
                with paced(turn):
                    yield
            finally:
                self._last = time.monotonic()
                if turn.retries:
                    self.interval = min(self.max_interval, self.interval * 2)
                else:
                    self.interval = max(self.min_interval, self.interval * 0.9)


class Aggregator:
    """Collect user ids for up to `window` seconds (or `max_ids`), then send them together."""

    def __init__(self, send: Sender, *, window: float = 0.3, max_ids: int = 60,
                 min_interval: float = 1.05, gate: IntervalGate | None = None) -> None:
        self._send = send
        self._window = window
        self._max_ids = max_ids
        self.gate = gate or IntervalGate(min_interval)
        """Spacing of the calls; aggregators of one rate-limited service share one gate."""
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.calls = 0

    async def submit(self, user_id: str) -> Any:
        """Wait until `user_id` went out in a call; returns that id's result from the sender
        (or raises what the call raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.setdefault(user_id, []).append(fut)
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if len(self._pending) >= self._max_ids:
            self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await fut

    async def confirm(self, user_id: str) -> Any:
        """Alias kept for readability at the confirmCompromised call site."""
        return await self.submit(user_id)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while self._pending:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._window)
            except TimeoutError:
                pass
            self._wakeup.clear()
            async with self.gate.turn():
                ids = list(self._pending)[: self._max_ids]
                waiters = {uid: self._pending.pop(uid) for uid in ids}
                self.calls += 1
                error: Exception | None = None
                results: Mapping[str, Any] = {}
                try:
                    results = await self._send(ids) or {}
                except Exception as exc:  # handed to every waiter, who decides
                    error = exc
            if error is not None:
                for futs in waiters.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(error)
            else:
                for uid, futs in waiters.items():
                    for f in futs:
                        if not f.done():
                            f.set_result(results.get(uid))


class AdaptiveLimit:
    """How many calls to one service may be in flight at once, found by AIMD.

    The Exchange admin endpoint publishes no rate, and its 429s carry a short Retry-After:
    hundreds of concurrent runs that all wait exactly that long retry together, are
    throttled together, and exhaust their attempts. Halving the concurrency when a call was
    throttled and growing it by one per `limit` clean calls settles just under whatever the
    service allows, without knowing the number."""

    def __init__(self, start: int = 4, floor: int = 1, ceiling: int = 64,
                 cooldown: float = 1.0) -> None:
        self.limit = float(start)
        self.floor = floor
        self.ceiling = ceiling
        self.cooldown = cooldown
        self.in_flight = 0
        self._last_cut = 0.0
        self._cond: asyncio.Condition | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def record(self, throttled: bool) -> None:
        now = time.monotonic()
        if throttled:
            if now - self._last_cut >= self.cooldown:  # one cut per burst of 429s
                self.limit = max(float(self.floor), self.limit / 2)
                self._last_cut = now
        else:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)


class LimitedExchange:
    """An Exchange client whose calls go through an AdaptiveLimit (same interface)."""

    def __init__(self, client: Any, limit: AdaptiveLimit) -> None:
        self._client = client
        self._limit = limit

    async def invoke(self, *args: Any, **kwargs: Any) -> Any:
        async with self._limit.slot():
            before = self._client.stats.throttled
            try:
                return await self._client.invoke(*args, **kwargs)
            finally:
                self._limit.record(self._client.stats.throttled > before)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Pacer:
    """Spaces requests at least `interval` apart, from the end of one to the start of the
    next (so network jitter cannot squeeze two into one second at the server)."""

    def __init__(self, interval: float, shared: SlotSource | None = None) -> None:
        self.interval = interval
        self.shared = shared
        """The budget all instances share, when set (see IntervalGate.shared)."""
        self._lock = asyncio.Lock()
        self._last_end = float("-inf")

    async def run(self, send: Any) -> Any:
        async with self._lock:
            wait = self._last_end + self.interval - time.monotonic()
            if wait > 0:  # never closer than the interval to this process's last answer
                await asyncio.sleep(wait)
            turn = await _shared_turn(self.shared, self.interval)  # the last wait (above)
            try:
                with paced(turn):
                    return await send()
            finally:
                self._last_end = time.monotonic()


LANE_CONCURRENCY = 48
"""Deliveries one instance runs at once per queue function: host.json's queues batchSize +
newBatchThreshold (a test checks they agree)."""


class TenantShares:
    """Within one instance, how many containments each tenant holds (running, or moved and
    waiting here for a turn in the overflow lane), and whether a tenant already holds its
    share of the containment lane.

    Every tenant's requests share one remediation queue, a FIFO: a storm in one tenant
    would put another tenant's first request behind all of it. A tenant's share is the
    lane's concurrency divided among the tenants with work here plus one place kept for a
    tenant not seen yet (never more tenants than the deployment serves), at least one. The
    worker moves a delivery of a tenant at or over its share aside (the overflow lane), so
    the queue drains and a newcomer is reached at once. Pure bookkeeping: no I/O.
    """

    def __init__(self, capacity: int = LANE_CONCURRENCY) -> None:
        self.capacity = max(1, capacity)
        self.in_flight: dict[str, int] = {}
        """Containments running, per tenant (both lanes)."""
        self.waiting: dict[str, int] = {}
        """Overflow deliveries waiting for a turn, per tenant: they count in the share (a
        tenant whose moved requests wait here is not also given the remediation lane, and
        its requests keep their order), not in the instance's running total."""
        self.moved = 0
        """Deliveries moved aside by this instance (for the benchmark and tests)."""

    def holding(self, tenant: str) -> int:
        return self.in_flight.get(tenant, 0) + self.waiting.get(tenant, 0)

    @property
    def total(self) -> int:
        """Containments running in this instance, all tenants."""
        return sum(self.in_flight.values())

    def share(self, tenant: str, served: int) -> int:
        """`tenant`'s share of the lane now, among `served` tenants."""
        busy = {t for t in (*self.in_flight, *self.waiting) if self.holding(t) > 0}
        among = max(1, min(served, len(busy | {tenant}) + 1))
        return max(1, self.capacity // among)

    def try_take(self, tenant: str, served: int) -> bool:
        """Count one more containment of `tenant` if it is under its share; False (nothing
        counted) when it already holds it. Check and count happen at once (no await)."""
        if self.holding(tenant) >= self.share(tenant, served):
            self.moved += 1
            return False
        self.take(tenant)
        return True

    def take(self, tenant: str) -> None:
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1

    def give_back(self, tenant: str) -> None:
        _decrement(self.in_flight, tenant)

    async def overflow_turn(self, tenant: str, served: int, max_wait: float = 30.0,
                            step: float = 0.05) -> None:
        """A moved delivery waits (at most `max_wait` seconds, so it is never starved) while
        its tenant runs its share already, or the instance a full lane: moving makes room
        for other tenants and keeps the room free for them; it adds no capacity (more runs
        at once on a busy instance would only slow every one, a newcomer's first).
        Counted as `tenant`'s from the start; running (`in_flight`) once its turn comes."""
        self.waiting[tenant] = self.waiting.get(tenant, 0) + 1
        try:
            deadline = time.monotonic() + max_wait
            while time.monotonic() < deadline:
                if self.total < self.capacity and \
                        self.in_flight.get(tenant, 0) < self.share(tenant, served):
                    break
                await asyncio.sleep(step)
        finally:
            _decrement(self.waiting, tenant)
        self.take(tenant)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
