"""Poll Identity Protection `riskDetections` since a watermark kept in Table storage.

Why it is shaped like this:
- **No missed detections, however late they surface.** Offline detections (leaked
  credentials, anomalous token, atypical travel, ...) surface up to 48 hours after they are
  detected (MicrosoftDocs/entra-docs:docs/id-protection/concept-risk-detection-types.md,
  "Real-time and offline detections"). The list documents `$filter` but names no
  filterable property and no `lastUpdatedDateTime` semantics, and documents no order
  (https://learn.microsoft.com/en-us/graph/api/riskdetection-list). So each poll asks for
  `detectedDateTime ge` (the last *complete* poll's start - `MIN_OVERLAP`, at least 49
  hours), pages through every `@odata.nextLink`, and assumes no order within or across
  pages. The watermark (that start time) moves only when a whole poll has been taken in: a
  failure mid-way leaves it, and the next run reads the whole window again.
- **Exactly once.** What the window reads again (every detection, on up to 49 hours of
  polls) is skipped: intake persists every (user, detection id) it handled
  (`shared.intake.dedupe`, Table storage), so a detection is taken the first time it is
  seen and never again, even when it surfaces hours late; queue requests carry
  deterministic ids.
- **User change notifications** queued by intake (`shared.intake.user_checks`) are read
  here, after the detections, through the same pacing (`shared.intake.user_risk`).
- **At most one Identity Protection request per second**, retries included: a pacing
  transport sits *under* the retry transport of this poller's Graph client, and its clock
  is shared by every poll in the process (`Services.poll_pacer`).
- **No overlapping runs.** A lease row with an expiry is taken with ETag-conditional writes;
  a run that finds a live lease does nothing. A crashed holder's lease simply expires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.core.exceptions import (
    AzureError,
)

from shared.errors import ResponderError
from shared.intake.pipeline import IntakeOutcome, intake_result, record
from shared.intake.sources.errors import AlertError, Ignored
from shared.intake.sources.graph_detections import SOURCE_DETECTION, from_risk_detection
from shared.intake.sources.result import NormaliseResult
from shared.intake.user_risk import UserCheckSummary, check_queued_users
from shared.permissions import declare
from shared.services import Services
from shared.state import partitions
from shared.state.lease import Lease as SharedLease
from shared.tenant.graph.client import GraphClient, create_graph_client
from shared.tenant.graph.identity_protection import PERM_DETECTIONS_READ, detections_since
from shared.tenant.http import http_transport
from shared.tenant.pacing import Pacer

log = logging.getLogger("responder.poller")

declare(
    "alerts.poller",
    graph=[PERM_DETECTIONS_READ],
    why="poll Identity Protection riskDetections since a watermark (timer risk_poller)",
)

ROUTE = "poller"
POLLER_PARTITION = partitions.INTAKE_POLLER
WATERMARK_ROW = "riskDetections"
LOCK_ROW = "lock"
LATE_DETECTIONS = timedelta(hours=48)
"""How late an offline detection may surface after its detectedDateTime (documented)."""
MIN_OVERLAP = LATE_DETECTIONS + timedelta(hours=1)
"""Each poll re-reads at least this far before the watermark (48 h + clock margin)."""
IDENTITY_PROTECTION_INTERVAL = 1.0
"""Seconds between Identity Protection requests (its documented limit: 1 per second)."""
DEFAULT_PAGE_SIZE = 200
DEFAULT_LEASE_SECONDS = 600.0
"""Longer than any run (host.json functionTimeout is 10 minutes); renewed after each page."""


class PacedTransport(httpx.AsyncBaseTransport):
    """Paces Identity Protection requests; everything else passes straight through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pacer: Pacer) -> None:
        self._inner = inner
        self._pacer = pacer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/identityprotection/" not in request.url.path.lower():
            return await self._inner.handle_async_request(request)

        async def send() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            await response.aread()  # the request is over only when its body has arrived
            return response

        response: httpx.Response = await self._pacer.run(send)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def pacer_for(services: Services, interval: float = IDENTITY_PROTECTION_INTERVAL) -> Pacer:
    """The process-wide Identity Protection pacer of these services."""
    if services.poll_pacer is None:
        services.poll_pacer = Pacer(interval, shared=services.identity_budget)
    return services.poll_pacer


def paced_graph(services: Services, *, interval: float = IDENTITY_PROTECTION_INTERVAL,
                inner: httpx.AsyncBaseTransport | None = None) -> GraphClient:
    """A Graph client for the poller whose every attempt (retries too) is paced."""
    transport = PacedTransport(inner or http_transport(), pacer_for(services, interval))
    return create_graph_client(services.settings, services.credential, transport=transport)


@dataclass
class PollResult:
    """What one poll did."""

    ran: bool = True
    """False when another run held the lease (nothing was done)."""
    since: datetime | None = None
    watermark: datetime | None = None
    pages: int = 0
    detections: int = 0
    completed: bool = False
    error: str | None = None
    outcome: IntakeOutcome = field(default_factory=lambda: IntakeOutcome(ROUTE))
    users: UserCheckSummary = field(default_factory=UserCheckSummary)

    def summary(self) -> dict[str, Any]:
        return {
            "ran": self.ran, "completed": self.completed, "pages": self.pages,
            "detections": self.detections, "error": self.error,
            "since": self.since.isoformat() if self.since else None,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            **self.outcome.summary(), **self.users.summary(),
        }


class Lease(SharedLease):
    """The poller's lease row (one poller at a time per tenant)."""

    def __init__(self, services: Services, seconds: float) -> None:
        super().__init__(services.journal, POLLER_PARTITION, LOCK_ROW, seconds)


class LeaseLost(ResponderError):
    """Another run took over the lease; this one stops without moving the watermark."""


async def read_watermark(services: Services) -> datetime | None:
    """The start of the last poll that took in its whole window (None before the first)."""
    row = await services.journal.get_item(POLLER_PARTITION, WATERMARK_ROW)
    value = (row or {}).get("watermark")
    return value if isinstance(value, datetime) else None


async def _read_floor(services: Services) -> datetime | None:
    """Where the first poll started reading: later windows never reach before it, so the
    first-poll look-back stays the limit of how old a detection the responder acts on."""
    row = await services.journal.get_item(POLLER_PARTITION, WATERMARK_ROW)
    value = (row or {}).get("floor")
    return value if isinstance(value, datetime) else None


def _page_signals(page: list[dict[str, Any]]) -> NormaliseResult:
    """One page of detections as signals; a bad item is a problem, never the page's end."""
    result = NormaliseResult()
    for index, item in enumerate(page):
        try:
            result.signals.append(from_risk_detection(item))
        except Ignored as exc:
            result.ignore(f"value[{index}]", str(exc))
        except AlertError as exc:
            result.problem(f"value[{index}]", exc, SOURCE_DETECTION)
    return result


async def poll_once(
    services: Services,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    lookback_minutes: float | None = None,
    overlap_minutes: float | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    interval: float = IDENTITY_PROTECTION_INTERVAL,
    graph: GraphClient | None = None,
    tenant: str | None = None,
) -> PollResult:
    """One poll: take the lease, read detections since the watermark, take them in.

    Never raises for Graph or storage trouble: the result says what failed, the watermark
    stays at the last complete page, and the failure is recorded in the intake journal.
    `tenant`: `services` are that (non-default) tenant's (`shared.intake.tenant_polls`):
    its lease, watermark and dedupe rows are in its journal, and its requests name it.
    """
    await services.journal.ensure()
    lease = Lease(services, lease_seconds)
    if not await lease.acquire():
        log.info("risk poll skipped: another run holds the lease")
        return PollResult(ran=False)
    own_graph = graph is None
    client = graph or paced_graph(services, interval=interval)
    try:
        return await _poll(services, client, lease, page_size,
                           services.settings.poll_lookback_minutes
                           if lookback_minutes is None else lookback_minutes,
                           services.settings.poll_overlap_minutes
                           if overlap_minutes is None else overlap_minutes, tenant)
    finally:
        if own_graph:
            await client.close()
        await lease.release()


async def _poll(services: Services, graph: GraphClient, lease: Lease, page_size: int,
                lookback: float, overlap: float, tenant: str | None = None) -> PollResult:
    started = datetime.now(UTC)
    watermark = await read_watermark(services)
    floor = await _read_floor(services)
    if watermark is None:
        since = floor or started - timedelta(minutes=lookback)
    else:
        since = watermark - max(timedelta(minutes=overlap), MIN_OVERLAP)
        if floor is not None:
            since = max(since, floor)
    result = PollResult(since=since, watermark=watermark)
    try:
        async for page in detections_since(graph, since, top=page_size):
            result.pages += 1
            result.detections += len(page)
            taken = await intake_result(services, _page_signals(page), route=ROUTE,
                                        tenant=tenant)
            result.outcome.extend(taken)
            if taken.errors:
                raise taken.errors[0]
            if not await lease.renew():
                raise LeaseLost("the poll lease was taken over by another run")
        # The whole window is in: the next window starts MIN_OVERLAP before this start.
        result.watermark = started
        await services.journal.put_item(POLLER_PARTITION, WATERMARK_ROW, watermark=started,
                                        floor=floor or since, updatedAt=datetime.now(UTC))
        result.completed = True
        result.users = await check_queued_users(services, graph, renew=lease.renew,
                                                tenant=tenant)
    except (ResponderError, AlertError, AzureError, httpx.HTTPError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("risk poll stopped after %d page(s): %s", result.pages, result.error)
        await record(services, "poll-failed", result.error[:4000],
                     {"route": ROUTE, "pages": result.pages, "completed": result.completed,
                      "watermark": result.watermark.isoformat() if result.watermark else None})
    log.info("risk poll: %s", result.summary())
    return result
