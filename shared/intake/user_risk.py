"""The paced risk read a user change notification may cause, and nothing more.

For each user queued by `shared.intake.user_checks`, in order of arrival and at most
`MAX_PER_POLL` per poll, the risk poller:
1. skips (recording why) excluded accounts, users with a request in the dedupe window, and
   users the responder ran on recently (`RECENT_RUN`): the responder's own password reset
   or disable fires a notification, which must not start another run;
2. reads `GET /identityProtection/riskyUsers/{id}` through the same Identity Protection
   pacing as the poll (https://learn.microsoft.com/en-in/graph/api/riskyuser-get?view=graph-rest-1.0,
   IdentityRiskyUser.Read.All; 404 when Identity Protection holds no record for the user);
3. takes in a `graph.riskyUser` signal only when that record says `riskState` atRisk or
   confirmedCompromised with a `riskLevel` of low, medium or high. The decision still
   refuses admin-initiated states (a confirmCompromised by this responder).
A row is removed once handled, only if no newer notification changed it meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.intake.dedupe import Deduper
from shared.intake.pipeline import intake_signals, record
from shared.intake.sources.common import norm
from shared.intake.sources.graph_detections import from_risky_user
from shared.intake.user_checks import PARTITION
from shared.permissions import declare
from shared.services import Services
from shared.tenant.graph.client import GraphClient
from shared.tenant.graph.identity_protection import PERM_RISKY_READ, get_risky_user

log = logging.getLogger("responder.intake.user_risk")

declare(
    "alerts.user-risk-check",
    graph=[PERM_RISKY_READ],
    why="read the risk of a user named by a change notification (risk_poller, paced)",
)

ROUTE = "user-check"
MAX_PER_POLL = 60
"""Risk reads per poll: a minute of Identity Protection's 1 request per second."""
RECENT_RUN = timedelta(hours=24)
"""A user the responder ran on within this long is not read again because of a change
notification: the run's own writes (password reset, disable) fire those notifications."""
AT_RISK_STATES = frozenset({"atrisk", "confirmedcompromised"})
ACTIONABLE_LEVELS = frozenset({"low", "medium", "high"})


@dataclass
class UserCheckSummary:
    """What one pass over the queued users did."""

    read: int = 0
    started: int = 0
    skipped: int = 0
    left: int = 0

    def summary(self) -> dict[str, int]:
        return {"userChecksRead": self.read, "userChecksStarted": self.started,
                "userChecksSkipped": self.skipped, "userChecksLeft": self.left}


async def _recent_run(services: Services, user_key: str, now: datetime) -> str | None:
    """Why a recent (or unfinished) run of the responder for this user blocks a re-read."""
    for row in await services.journal.runs_for_user(user_key):
        if row.get("dryRun"):
            continue
        touched = row.get("updatedAt") or row.get("createdAt")
        if isinstance(touched, datetime) and touched + RECENT_RUN > now:
            return (f"the responder ran on this user recently (run {row.get('RowKey')}, "
                    f"{row.get('state')}): its own changes fire user notifications")
    return None


def _not_at_risk(risky: dict[str, Any]) -> str | None:
    state, level = norm(risky.get("riskState")), norm(risky.get("riskLevel"))
    if state in AT_RISK_STATES and level in ACTIONABLE_LEVELS:
        return None
    return (f"Identity Protection reports riskState {risky.get('riskState')!r}, riskLevel "
            f"{risky.get('riskLevel')!r}: not at risk, nothing to start")


async def check_queued_users(services: Services, graph: GraphClient, *,
                             limit: int = MAX_PER_POLL,
                             renew: Callable[[], Awaitable[bool]] | None = None,
                             now: datetime | None = None,
                             tenant: str | None = None) -> UserCheckSummary:
    """Read the risk of queued users (paced by `graph`'s transport) and take in what is real.

    A Graph failure stops the pass and propagates (the rows stay for the next poll).
    `tenant`: the services are that (non-default) tenant's; its requests name it."""
    now = now or datetime.now(UTC)
    result = UserCheckSummary()
    rows = sorted(await services.journal.items(PARTITION),
                  key=lambda r: r.get("at") or now)
    result.left = max(0, len(rows) - limit)
    deduper = Deduper(services.journal, window_minutes=services.policy.dedupe_minutes)
    for index, row in enumerate(rows[:limit]):
        key = str(row["RowKey"])
        current = await services.journal.read_row(PARTITION, key)
        if current is None:
            continue
        user_id = str(row.get("userId") or "") or None
        upn = str(row.get("upn") or "") or None
        reason = await _skip_reason(services, deduper, user_id, upn, now)
        outcome = "skipped"
        if reason is None and user_id is not None:
            risky = await get_risky_user(graph, user_id)
            result.read += 1
            reason = ("Identity Protection has no risk record for the user (404)"
                      if risky is None else _not_at_risk(risky))
            if reason is None and risky is not None:
                taken = await intake_signals(services, [from_risky_user(risky)], route=ROUTE,
                                             tenant=tenant)
                if taken.errors:
                    raise taken.errors[0]
                item = taken.items[0]
                outcome, reason = item.outcome, item.reason or item.outcome
                if item.outcome in ("enqueued", "upgraded"):
                    result.started += 1
        if outcome == "skipped":
            result.skipped += 1
        await record(services, "user-check", reason or outcome,
                     {"route": ROUTE, "user": user_id or upn, "outcome": outcome,
                      "changeType": row.get("changeType"), "notifiedVia": row.get("route")})
        await services.journal.delete_row_if(PARTITION, key, current.etag)
        if renew is not None and index % 10 == 9 and not await renew():
            break
    return result


async def _skip_reason(services: Services, deduper: Deduper, user_id: str | None,
                       upn: str | None, now: datetime) -> str | None:
    """Why this user's risk is not read at all, or None to read it."""
    if services.policy.excluded_user(user_id, upn):
        return "excluded account (policy exclusions.users): never touched"
    if user_id is None:
        return ("the notification names the user only by UPN; riskyUsers/{id} takes the "
                "object id")
    for key in (k for k in (user_id, upn) if k):
        window = await deduper.live_window(key, now)
        if window is not None:
            return (f"a {window.get('level')} request ({window.get('requestId')}) for this "
                    "user is already in the dedupe window")
        recent = await _recent_run(services, key, now)
        if recent is not None:
            return recent
    return None
