"""The one retry policy for every Graph and Exchange call, as an httpx transport.

Why a transport: msgraph-sdk's request adapter and the Exchange client both sit on httpx,
so one wrapper under both gives the same behaviour everywhere: 429, 503, 504, timeouts and
dropped connections are retried; `Retry-After` is honoured in seconds (fractional too) or
as an HTTP date; without it (Identity Protection sends none) the wait grows exponentially
with jitter; attempts and the total wait are bounded, so nothing retries forever.
kiota's own RetryHandler is left out of the pipeline so that waits are not compounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from shared.tenant.http import http_transport

RETRY_STATUSES = frozenset({429, 503, 504})
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, or None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds and shape of retries. One instance is built from Settings."""

    max_attempts: int = 6
    max_total_wait: float = 120.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    give_up_retry_after: float = 180.0
    """A server asking for this long or more is not waited for (kiota does the same)."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter for attempt 1, 2, ... (no Retry-After given)."""
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def delay(
        self, attempt: int, retry_after: float | None, waited: float, rng: random.Random
    ) -> float | None:
        """How long to wait before the next attempt, or None to stop retrying."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after >= self.give_up_retry_after:
            return None
        wait = retry_after if retry_after is not None else self.backoff(attempt, rng)
        if waited + wait > self.max_total_wait:
            return None
        return wait


@dataclass
class RetryStats:
    """Counters a benchmark or a run report reads; shared by every call of one client."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    gave_up: int = 0
    waited_seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)


Sleep = Callable[[float], Awaitable[None]]


class PacedTurn(Protocol):
    """A paced call's turn: in a budget shared with other instances (shared.state.budget)
    or this process's own (shared.tenant.pacing.LocalTurn)."""

    retries: int
    """Retries the call needed: the pacer's sign that the rate is contested (a slow call
    is not one: the wait for a fresh slot and a starved event loop also take time)."""

    async def before_send(self) -> None:
        """Called just before the request leaves: a turn that went stale meanwhile (the
        SDK's middleware ran late on a starved process) is exchanged for a fresh one."""

    async def again(self) -> None:
        """Called before a retry: the retried request takes a turn of its own (and counts
        in `retries`)."""


PACED_TURN: contextvars.ContextVar[PacedTurn | None] = (
    contextvars.ContextVar("paced_turn", default=None))
"""Set while a paced call holds its turn (RetryTransport checks it before every send), so a
request reaches the service in its own slot, never between two that other instances
reserved."""


@contextlib.contextmanager
def paced(turn: PacedTurn | None) -> Iterator[None]:
    """Within this block, every request sent (and retried) keeps to `turn`."""
    token = PACED_TURN.set(turn)
    try:
        yield
    finally:
        PACED_TURN.reset(token)


class RetryTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and applies a RetryPolicy to every request sent through it."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        stats: RetryStats | None = None,
    ) -> None:
        self._inner = inner or http_transport()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = stats or RetryStats()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            self.stats.requests += 1
            turn = PACED_TURN.get()
            if turn is not None:
                await turn.before_send()
            try:
                response = await self._inner.handle_async_request(request)
            except TRANSIENT_ERRORS:
                self.stats.transport_errors += 1
                wait = self.policy.delay(attempt, None, waited, self._rng)
                if wait is None:
                    self.stats.gave_up += 1
                    raise
            else:
                status = response.status_code
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                if status not in RETRY_STATUSES:
                    return response
                if status == 429:
                    self.stats.throttled += 1
                else:
                    self.stats.server_errors += 1
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = self.policy.delay(attempt, retry_after, waited, self._rng)
                if wait is None:
                    self.stats.gave_up += 1
                    return response
                await response.aread()
                await response.aclose()
            self.stats.retries += 1
            started = time.monotonic()
            await self._sleep(wait)
            slept = max(wait, time.monotonic() - started) if self._sleep is asyncio.sleep else wait
            waited += slept
            self.stats.waited_seconds += slept
            if turn is not None:  # a paced call: its retry needs a slot of its own
                await turn.again()

    async def aclose(self) -> None:
        await self._inner.aclose()
