"""Aggregates per-user calls across concurrent runs into one call with many user ids.

Identity Protection allows one request per second per tenant: in a storm, hundreds of runs
each want to confirm one user; they wait here briefly and one POST carries them all, the
calls spaced at least `min_interval` apart. Group membership adds work the same way (one
PATCH adds up to 20 members) and save directory-write budget. Aggregators live in
`Services` (one per process), never as module-level globals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

Sender = Callable[[Sequence[str]], Awaitable[Mapping[str, Any] | None]]


class Aggregator:
    """Collect user ids for up to `window` seconds (or `max_ids`), then send them together."""

    def __init__(self, send: Sender, *, window: float = 0.3, max_ids: int = 60,
                 min_interval: float = 1.05) -> None:
        self._send = send
        self._window = window
        self._max_ids = max_ids
        self._min_interval = min_interval
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_call = 0.0
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
            gap = self._min_interval - (time.monotonic() - self._last_call)
            if gap > 0:
                await asyncio.sleep(gap)
            ids = list(self._pending)[: self._max_ids]
            waiters = {uid: self._pending.pop(uid) for uid in ids}
            self._last_call = time.monotonic()
            self.calls += 1
            try:
                results = await self._send(ids) or {}
            except Exception as exc:  # handed to every waiter, who decides
                for futs in waiters.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(exc)
            else:
                for uid, futs in waiters.items():
                    for f in futs:
                        if not f.done():
                            f.set_result(results.get(uid))
