"""Sweeps hand what they find to the same decision and deduplication as alert intake.

A sweep never builds a queue message itself: it makes a `RiskSignal` (a risky user, a
blocked sender, a forwarding mailbox) and submits it to
`shared.intake.pipeline.intake_signals`, so a sweep's finding and an alert about the same
user collapse into one run, and exclusions, admin-initiated events and the deduplication
window apply exactly as they do to alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.models import RiskSignal
from shared.safety.exclusions import exclusion_reason
from shared.state.clock import now

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger("responder.sweeps.submit")
ACTIVE_RUN_STATES = frozenset({"running", "waiting_approval"})
ROUTE = "sweep"


@dataclass
class Submission:
    """The fate of one signal: enqueued, would-enqueue (dry run) or refused with a reason."""

    user: str
    status: str
    reason: str = ""
    request_id: str | None = None
    playbook: str | None = None


async def excluded(services: Services, *identifiers: str | None, user_id: str | None = None)\
        -> str | None:
    """Why this account is never touched (policy users or groups), or None."""
    return await exclusion_reason(services, *identifiers, user_id=user_id)


async def recent_run(services: Services, *keys: str | None, hours: float) -> dict[str, Any] | None:
    """A run for this user still going, or finished within `hours`; None if there is none.

    Dry runs do not count: they changed nothing.
    """
    horizon = now() - timedelta(hours=hours)
    for key in dict.fromkeys(k.lower() for k in keys if k):
        for row in await services.journal.runs_for_user(key):
            if row.get("dryRun"):
                continue
            state = str(row.get("state") or "")
            if state in ACTIVE_RUN_STATES:
                return row
            stamp = row.get("finishedAt") or row.get("updatedAt") or row.get("createdAt")
            if stamp is not None and stamp >= horizon:
                return row
    return None


async def submit_signals(services: Services, signals: Sequence[RiskSignal], *,
                         dry_run: bool) -> list[Submission]:
    """Decide, deduplicate and enqueue through intake (route `sweep`), one outcome per signal.

    A signal intake could not handle (storage down) raises, so the sweep stops before its
    checkpoint passes that item and the next run tries it again.
    """
    from shared.intake.pipeline import intake_signals

    outcome = await intake_signals(services, list(signals), route=ROUTE, dry_run=dry_run)
    for item in outcome.items:
        if item.error is not None:
            raise item.error
    out = []
    for item in outcome.items:
        request = item.request
        out.append(Submission(item.signal.user_id or item.signal.upn or "", item.outcome,
                              item.reason, request.request_id if request else None,
                              request.playbook if request else None))
    return out


def record(result: Any, finding: dict[str, Any], sub: Submission) -> None:
    """Put a submission in the sweep result: an action, or a finding left alone."""
    row = {**finding, "requestId": sub.request_id, "playbook": sub.playbook,
           "submission": sub.status}
    if sub.status in ("enqueued", "would-enqueue", "upgraded"):
        result.actions.append({**row, "what": "remediation request"})
    else:
        result.skipped.append({**row, "why": sub.reason or sub.status})
