"""Aggregates confirmCompromised across concurrent runs into one call with many user ids.

Identity Protection allows one request per second per tenant. In a storm, hundreds of runs
each want to confirm one user: they wait here briefly, and one POST carries them all. The
calls are spaced at least `min_interval` apart. One aggregator lives per process (owned by
`Services`), never as a module-level global.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

Sender = Callable[[Sequence[str]], Awaitable[None]]


class ConfirmAggregator:
    """Collect user ids for up to `window` seconds (or `max_ids`), then send them together."""

    def __init__(self, send: Sender, *, window: float = 0.3, max_ids: int = 60,
                 min_interval: float = 1.05) -> None:
        self._send = send
        self._window = window
        self._max_ids = max_ids
        self._min_interval = min_interval
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_call = 0.0
        self.calls = 0

    async def confirm(self, user_id: str) -> None:
        """Wait until `user_id` has been confirmed (or raise what the call raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.setdefault(user_id, []).append(fut)
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if len(self._pending) >= self._max_ids:
            self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        await fut

    async def _run(self) -> None:
        assert self._wakeup is not None
        while self._pending:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._window)
            except TimeoutError:
                pass
            self._wakeup.clear()
            gap = self._min_interval - (time.monotonic() - self._last_call)
            if gap > 0:
                await asyncio.sleep(gap)
            ids = list(self._pending)[: self._max_ids]
            waiters = [f for uid in ids for f in self._pending.pop(uid)]
            self._last_call = time.monotonic()
            self.calls += 1
            try:
                await self._send(ids)
            except Exception as exc:  # handed to every waiter, who decides
                for f in waiters:
                    if not f.done():
                        f.set_exception(exc)
            else:
                for f in waiters:
                    if not f.done():
                        f.set_result(None)
