"""JSON `$batch`: up to 20 requests per POST, built by hand and sent through the SDK adapter.

msgraph-core's batch classes drop JSON response bodies and serialise `dependsOn` under the
wrong key, so the body is built here. Each item is throttled on its own: a 429 item is
resent alone (with its dependants) after its own Retry-After, without repeating the items
that already succeeded. Responses are matched by id, since they come back in any order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ServiceError
from shared.tenant.graph.client import ApiVersion, GraphClient, error_from_response
from shared.tenant.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

MAX_BATCH = 20


@dataclass(frozen=True)
class BatchRequest:
    """One request in a batch. `url` is relative to the version: `/users/{id}`."""

    id: str
    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    permission: str | None = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method.upper(), "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            item["body"] = self.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            item["headers"] = headers
        if self.depends_on:
            item["dependsOn"] = list(self.depends_on)
        return item


@dataclass
class BatchResult:
    """One item's outcome: status, headers, body, and the typed error when it failed."""

    id: str
    status: int
    headers: dict[str, str]
    body: Any
    error: ServiceError | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def chunk(requests: Sequence[BatchRequest]) -> list[list[BatchRequest]]:
    """Split into POSTs of at most 20, never separating an item from what it depends on."""
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("batch request ids must be unique")
    chunks: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    current_ids: set[str] = set()
    for req in requests:
        needs_same_chunk = any(dep in current_ids for dep in req.depends_on)
        if len(current) >= MAX_BATCH and not needs_same_chunk:
            chunks.append(current)
            current, current_ids = [], set()
        elif len(current) >= MAX_BATCH:
            raise ValueError("a dependency chain longer than 20 cannot be batched")
        current.append(req)
        current_ids.add(req.id)
    if current:
        chunks.append(current)
    return chunks


async def run_batch(
    client: GraphClient,
    requests: Sequence[BatchRequest],
    *,
    version: ApiVersion = "v1.0",
    policy: RetryPolicy | None = None,
    priority: bool = False,
) -> dict[str, BatchResult]:
    """Send every request; return results by id. Per-item 429/503/504 are retried alone."""
    policy = policy or RetryPolicy()
    rng = random.Random()
    results: dict[str, BatchResult] = {}
    for part in chunk(requests):
        await _run_chunk(client, part, version, policy, rng, priority, results)
    return results


async def _run_chunk(
    client: GraphClient,
    part: list[BatchRequest],
    version: ApiVersion,
    policy: RetryPolicy,
    rng: random.Random,
    priority: bool,
    results: dict[str, BatchResult],
) -> None:
    by_id = {r.id: r for r in part}
    pending = list(part)
    attempt = 0
    waited = 0.0
    while pending:
        attempt += 1
        sent_ids = {r.id for r in pending}
        payload = {"requests": [_strip_done_deps(r, sent_ids).to_json() for r in pending]}
        body = await client.request("POST", "/$batch", body=payload, version=version,
                                    priority=priority)
        answered = {str(item.get("id")): item for item in (body or {}).get("responses", [])}
        retry: list[BatchRequest] = []
        waits: list[float | None] = []
        for req in pending:
            item = answered.get(req.id)
            if item is None:
                retry.append(req)
                waits.append(None)
                continue
            status = int(item.get("status", 0))
            headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
            result = BatchResult(req.id, status, headers, item.get("body"), attempts=attempt)
            if status in RETRY_STATUSES:
                retry.append(req)
                waits.append(parse_retry_after(headers.get("Retry-After")))
                results[req.id] = result
                continue
            if status >= 400:
                result.error = error_from_response(status, headers, result.body,
                                                   method=req.method, path=req.url,
                                                   permission=req.permission)
            results[req.id] = result
        # a dependant of a retried item was answered 424: it must go again with it
        retry_ids = {r.id for r in retry}
        for req in pending:
            if req.id not in retry_ids and results.get(req.id) and \
                    results[req.id].status == 424 and any(d in retry_ids for d in req.depends_on):
                retry.append(req)
                waits.append(None)
        if not retry:
            return
        known = [w for w in waits if w is not None]
        wait = policy.delay(attempt, max(known) if known else None, waited, rng)
        if wait is None:
            for req in retry:
                res = results.get(req.id)
                if res is None:
                    res = BatchResult(req.id, 0, {}, None, attempts=attempt)
                    results[req.id] = res
                res.error = error_from_response(res.status or 503, res.headers, res.body,
                                                method=req.method, path=req.url,
                                                permission=req.permission)
            return
        await asyncio.sleep(wait)
        waited += wait
        pending = [by_id[i] for i in dict.fromkeys(r.id for r in retry)]


def _strip_done_deps(req: BatchRequest, sent_ids: set[str]) -> BatchRequest:
    """On a resend, dependencies that already succeeded in an earlier POST are dropped."""
    deps = tuple(d for d in req.depends_on if d in sent_ids)
    if deps == req.depends_on:
        return req
    return BatchRequest(req.id, req.method, req.url, req.body, req.headers, deps, req.permission)
