"""A local stand-in for the Functions host's queue semantics, driving `function_app` against
Azurite (Core Tools cannot be installed on every machine; this is the embedded default).

What it mirrors: base64 message bodies, `dequeue_count`, a failed message becomes visible
again after host.json's `visibilityTimeout`, and after `maxDequeueCount` failed deliveries
it moves to `<queue>-poison`; up to `batchSize` + `newBatchThreshold` messages run
concurrently per queue function. Functions are
invoked in-process with real `azure.functions.queue.QueueMessage` objects.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage

from shared.settings import APP_SETTINGS, EXTRA_SETTINGS, cleanup_queue_for, overflow_queue_for
from shared.state.storage import Storage, poison_queue_name

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("responder.localhost")
_FUNCTIONS_CACHE: dict[int, list[Any]] = {}
BACKED_OFF_FUNCTIONS = frozenset({"remediation_overflow"})
"""Queue functions polled as the host polls a queue it finds empty: each empty poll doubles
the wait before the next, up to host.json's maxPollingInterval (the queue trigger's random
exponential back-off, https://learn.microsoft.com/en-us/azure/azure-functions/functions-
bindings-storage-queue-trigger#polling-algorithm; jitter left out). The overflow lane's
queue is empty unless the deployment serves several tenants; the other queues keep the
constant fast polling every benchmark was measured with."""


def app_functions(app: func.FunctionApp) -> list[Any]:
    """`get_functions()` may be called only once per app object: cache its result."""
    key = id(app)
    if key not in _FUNCTIONS_CACHE:
        _FUNCTIONS_CACHE[key] = app.get_functions()
    return _FUNCTIONS_CACHE[key]


def host_queue_settings() -> dict[str, Any]:
    host = json.loads((ROOT / "host.json").read_text())
    return host.get("extensions", {}).get("queues", {})


def _seconds(value: str | None, default: float) -> float:
    if not value:
        return default
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def with_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The environment over the settings' documented defaults, so a queue trigger whose
    setting the caller did not pass (a newer queue) listens on its default queue."""
    defaults = {s.name: s.default for s in (*APP_SETTINGS, *EXTRA_SETTINGS) if s.default}
    merged = {**defaults, **env}
    if "RESPONDER_CLEANUP_QUEUE" not in env:  # derived, as Settings.from_env derives it
        merged["RESPONDER_CLEANUP_QUEUE"] = cleanup_queue_for(merged["REMEDIATION_QUEUE"])
    if "RESPONDER_OVERFLOW_QUEUE" not in env:
        merged["RESPONDER_OVERFLOW_QUEUE"] = overflow_queue_for(merged["REMEDIATION_QUEUE"])
    return merged


def resolve_setting(name: str, env: Mapping[str, str]) -> str:
    """`%NAME%` binding expressions resolve from app settings, as the host does."""
    return re.sub(r"%([^%]+)%", lambda m: env.get(m.group(1), ""), name)


@dataclass
class HostStats:
    delivered: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0
    by_function: dict[str, int] = field(default_factory=dict)


@dataclass
class QueueFunction:
    name: str
    queue: str
    call: Callable[..., Any]
    arg: str


class LocalHost:
    """Polls the app's queue-triggered functions' queues and invokes them like the host."""

    def __init__(
        self,
        app: func.FunctionApp,
        storage: Storage,
        env: Mapping[str, str] | None = None,
        *,
        visibility_timeout: float | None = None,
        max_dequeue_count: int | None = None,
        batch_size: int | None = None,
        poll_interval: float = 0.05,
        lease_seconds: float = 300,
    ) -> None:
        cfg = host_queue_settings()
        self.storage = storage
        self.env = dict(os.environ if env is None else env)
        self.visibility_timeout = (visibility_timeout if visibility_timeout is not None
                                   else _seconds(cfg.get("visibilityTimeout"), 0))
        self.max_dequeue_count = max_dequeue_count or int(cfg.get("maxDequeueCount", 5))
        # The host runs up to batchSize + newBatchThreshold messages at once per instance.
        self.batch_size = batch_size or (int(cfg.get("batchSize", 16))
                                         + int(cfg.get("newBatchThreshold", 8)))
        self.poll_interval = poll_interval
        self.max_polling_interval = _seconds(cfg.get("maxPollingInterval"), 60)
        self._backoff: dict[str, tuple[float, float]] = {}
        """Backed-off queue functions: (next poll at, current wait)."""
        self.lease_seconds = lease_seconds
        self.stats = HostStats()
        self.functions = self._queue_functions(app)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._busy: dict[str, int] = {}
        """Messages running per queue function (each has its own concurrency limit)."""

    def _queue_functions(self, app: func.FunctionApp) -> list[QueueFunction]:
        found = []
        env = with_defaults(self.env)
        for fn in app_functions(app):
            trigger = next((b for b in fn.get_bindings() if b.type == "queueTrigger"), None)
            if trigger is None:
                continue
            found.append(QueueFunction(fn.get_function_name(),
                                       resolve_setting(trigger.queue_name, env),
                                       fn.get_user_function(), trigger.name))
        return found

    async def poll_once(self) -> int:
        """Receive what is visible now and start it; returns how many messages started."""
        started = 0
        for qf in self.functions:
            backed_off = qf.name in BACKED_OFF_FUNCTIONS
            if backed_off and time.monotonic() < self._backoff.get(qf.name, (0.0, 0.0))[0]:
                continue
            # The host's concurrency is per queue function ("per job method"): at most
            # batchSize + newBatchThreshold messages each (QueuesOptions.BatchSize,
            # https://azuresdkdocs.z19.web.core.windows.net/dotnet/Microsoft.Azure.WebJobs.
            # Extensions.Storage.Queues/5.3.3/api/Microsoft.Azure.WebJobs.Host/
            # Microsoft.Azure.WebJobs.Host.QueuesOptions.html).
            room = self.batch_size - self._busy.get(qf.name, 0)
            if room <= 0:
                continue
            client = await self.storage.known_queue(qf.queue)
            # One Get Messages call for the whole batch, as the host makes: without a page
            # size the SDK fetches one message per call, and it pages on until its limit.
            pages = client.receive_messages(messages_per_page=min(32, room),
                                            visibility_timeout=int(self.lease_seconds))
            batch = []
            try:
                async for page in pages.by_page():
                    batch = [m async for m in page]
                    break
            except ResourceNotFoundError:  # deleted meanwhile: created on the next poll
                self.storage.forget_queue(qf.queue)
            for m in batch:
                task = asyncio.create_task(self._deliver(qf, client, m))
                self._in_flight.add(task)
                self._busy[qf.name] = self._busy.get(qf.name, 0) + 1
                task.add_done_callback(self._in_flight.discard)
                task.add_done_callback(lambda _t, name=qf.name: self._done(name))
                started += 1
            if backed_off:
                self._back_off(qf.name, len(batch))
        return started

    def _back_off(self, name: str, found: int) -> None:
        if found:
            self._backoff.pop(name, None)
            return
        wait = self._backoff.get(name, (0.0, self.poll_interval / 2))[1]
        wait = min(self.max_polling_interval, max(self.poll_interval, wait * 2))
        self._backoff[name] = (time.monotonic() + wait, wait)

    def _done(self, name: str) -> None:
        self._busy[name] = self._busy.get(name, 1) - 1

    async def _deliver(self, qf: QueueFunction, client: Any, m: Any) -> None:
        self.stats.delivered += 1
        self.stats.by_function[qf.name] = self.stats.by_function.get(qf.name, 0) + 1
        content = m.content if isinstance(m.content, str) else str(m.content)
        msg = QueueMessage(id=m.id, body=content.encode("utf-8"), dequeue_count=m.dequeue_count,
                           expiration_time=m.expires_on, insertion_time=m.inserted_on,
                           time_next_visible=m.next_visible_on, pop_receipt=m.pop_receipt)
        lease = {"receipt": m.pop_receipt}
        renewer = asyncio.create_task(self._renew(client, m.id, lease))
        try:
            result = qf.call(**{qf.arg: msg})
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise  # host killed: the lease expires and the message comes back
        except Exception as exc:
            self.stats.failed += 1
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            if m.dequeue_count >= self.max_dequeue_count:
                self.stats.poisoned += 1
                await self.storage.enqueue(poison_queue_name(qf.queue), content)
                await client.delete_message(m.id, lease["receipt"])
                log.warning("message %s poisoned after %s deliveries: %s", m.id,
                            m.dequeue_count, type(exc).__name__)
            else:
                await client.update_message(m.id, lease["receipt"],
                                            visibility_timeout=int(self.visibility_timeout))
            return
        finally:
            renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        self.stats.succeeded += 1
        await client.delete_message(m.id, lease["receipt"])

    async def _renew(self, client: Any, message_id: str, lease: dict[str, str]) -> None:
        """Keep a running message invisible, as the host does: every half lease, extend it
        (a long run must not be delivered twice; a killed host stops renewing, so the
        message comes back one lease later)."""
        while True:
            await asyncio.sleep(max(0.5, self.lease_seconds / 2))
            try:
                receipt = await client.update_message(message_id, lease["receipt"],
                                                      visibility_timeout=int(self.lease_seconds))
            except Exception as exc:  # the next delivery will sort it out
                log.warning("could not renew the lease of message %s: %s", message_id,
                            type(exc).__name__)
                return
            lease["receipt"] = receipt.pop_receipt

    async def run_until_idle(self, limit_seconds: float = 120.0,
                             idle_seconds: float = 0.5) -> HostStats:
        """Deliver until every queue is empty and nothing runs, or the timeout passes."""
        deadline = time.monotonic() + limit_seconds
        idle_since: float | None = None
        while time.monotonic() < deadline:
            started = await self.poll_once()
            if started or self._in_flight:
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle_seconds and \
                        await self._queues_empty():
                    break
            await asyncio.sleep(self.poll_interval)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=max(0.1, deadline - time.monotonic()))
        return self.stats

    async def _queues_empty(self) -> bool:
        for qf in self.functions:
            props = await self.storage.queue(qf.queue).get_queue_properties()
            if props.approximate_message_count:
                return False
        return True

    async def kill(self) -> None:
        """Stop abruptly, as a crashed host would: in-flight work is abandoned mid-step."""
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=5)
