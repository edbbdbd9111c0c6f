"""Identity Protection: risky users, their history, detections, confirm and dismiss.

The service allows one request per second per tenant and answers 429 without Retry-After,
so callers aggregate user ids (see shared.tenant.pacing) and never `$batch` these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from shared.errors import BadRequest, NotFound
from shared.tenant.graph.client import GraphClient, build_path
from shared.tenant.graph.odata import datetime_literal, eq, in_, quote_literal

PERM_RISKY_READ = "IdentityRiskyUser.Read.All"
PERM_RISKY_WRITE = "IdentityRiskyUser.ReadWrite.All"
PERM_DETECTIONS_READ = "IdentityRiskEvent.Read.All"
IDS_PER_READ = 40
"""User ids per `$filter=... in (...)` read: one call instead of 40 at 1 request per second.
Graph documents `$filter` (and `$top` up to 500) on riskyUsers and riskDetections but no cap
on `in` values (unverified); 40 ids keep the URL near 2 KB, and a 400 halves the list, down
to one-user reads."""


async def get_risky_user(graph: GraphClient, user_id: str) -> dict[str, Any] | None:
    """The user's risk record, or None when Identity Protection has none."""
    try:
        record: dict[str, Any] | None = await graph.request(
            "GET", build_path("/identityProtection/riskyUsers/{}", user_id),
            permission=PERM_RISKY_READ)
        return record
    except NotFound:
        return None


async def risky_user_history(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    try:
        return await graph.list_all(
            build_path("/identityProtection/riskyUsers/{}/history", user_id),
            permission=PERM_RISKY_READ,
        )
    except NotFound:
        return []


async def list_risky_users(
    graph: GraphClient, levels: Sequence[str], state: str = "atRisk"
) -> list[dict[str, Any]]:
    """Risky users at the given levels and state (one filtered, paged query)."""
    level_filter = " or ".join(f"riskLevel eq {quote_literal(lv)}" for lv in levels)
    flt = f"({level_filter}) and riskState eq {quote_literal(state)}"
    return await graph.list_all("/identityProtection/riskyUsers", params={"$filter": flt},
                                permission=PERM_RISKY_READ)


async def detections_since(
    graph: GraphClient, since: datetime, *, top: int = 500
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of risk detections detected at or after `since`, in no particular order.

    https://learn.microsoft.com/en-us/graph/api/riskdetection-list documents `$filter`,
    `$select` and `$top` but no `$orderby` and no order: callers must not assume one."""
    params = {
        "$filter": f"detectedDateTime ge {datetime_literal(since)}",
        "$top": str(top),
    }
    async for page in graph.pages("/identityProtection/riskDetections", params=params,
                                  permission=PERM_DETECTIONS_READ):
        yield page


async def _post_ids(graph: GraphClient, action: str, user_ids: Sequence[str]) -> None:
    await graph.request("POST", f"/identityProtection/riskyUsers/{action}",
                        body={"userIds": list(user_ids)}, priority=True,
                        permission=PERM_RISKY_WRITE)


async def post_user_ids_split_on_400(
    graph: GraphClient, action: str, user_ids: Sequence[str]
) -> None:
    """confirmCompromised/dismiss for many ids; halve and retry on 400 (no documented max)."""
    try:
        await _post_ids(graph, action, user_ids)
    except BadRequest:
        if len(user_ids) <= 1:
            raise
        mid = len(user_ids) // 2
        await post_user_ids_split_on_400(graph, action, user_ids[:mid])
        await post_user_ids_split_on_400(graph, action, user_ids[mid:])


async def confirm_compromised(graph: GraphClient, user_ids: Sequence[str]) -> None:
    await post_user_ids_split_on_400(graph, "confirmCompromised", user_ids)


async def dismiss(graph: GraphClient, user_ids: Sequence[str]) -> None:
    await post_user_ids_split_on_400(graph, "dismiss", user_ids)


async def _read_in(graph: GraphClient, path: str, field: str, ids: Sequence[str],
                   permission: str) -> list[dict[str, Any]]:
    """All items whose `field` is one of `ids` (one filtered, paged read; halved on 400)."""
    flt = in_(field, list(ids)) if len(ids) > 1 else eq(field, ids[0])
    try:
        return await graph.list_all(path, params={"$filter": flt, "$top": "500"},
                                    permission=permission)
    except BadRequest:
        if len(ids) <= 1:
            raise
        mid = len(ids) // 2
        return (await _read_in(graph, path, field, ids[:mid], permission)
                + await _read_in(graph, path, field, ids[mid:], permission))


async def risky_users_by_id(graph: GraphClient,
                            user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Risk records of many users in one read: user id -> record (absent: no record).

    Storm runs aggregate their reads here (shared.tenant.pacing): per-user GETs would
    cost a second each at Identity Protection's rate."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(user_ids), IDS_PER_READ):
        chunk = list(user_ids[start:start + IDS_PER_READ])
        for item in await _read_in(graph, "/identityProtection/riskyUsers", "id", chunk,
                                   PERM_RISKY_READ):
            found[str(item.get("id"))] = item
    return found


async def detections_by_user(graph: GraphClient,
                             user_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Risk detections of many users in one read: user id -> detections (oldest first).

    The evidence keeps these as the user's risk history: each history item of a risky user
    is the effect of one of these detections, and one read serves 40 users."""
    found: dict[str, list[dict[str, Any]]] = {str(u): [] for u in user_ids}
    for start in range(0, len(user_ids), IDS_PER_READ):
        chunk = list(user_ids[start:start + IDS_PER_READ])
        for item in await _read_in(graph, "/identityProtection/riskDetections", "userId",
                                   chunk, PERM_DETECTIONS_READ):
            found.setdefault(str(item.get("userId")), []).append(item)
    for items in found.values():
        items.sort(key=lambda d: str(d.get("detectedDateTime") or ""))
    return found
