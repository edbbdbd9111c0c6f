"""Sweeps hand what they find to the same decision and deduplication as alert intake.

A sweep never builds a queue message itself: it makes a `RiskSignal` (a risky user, a
blocked sender, a forwarding mailbox) and submits it. When `shared.intake` offers
`submit_signals`, that is used, so a sweep's finding and an alert about the same user
collapse into one run. Until then (and as a fallback) the decision is `shared.policy.decide`
and deduplication is the journal's per-user run index.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.journal import now
from shared.models import RemediationRequest, RiskSignal

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger("responder.sweeps.submit")
ACTIVE_RUN_STATES = frozenset({"running", "waiting_approval"})
REQUESTED_BY = "sweep"


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
    policy = services.policy
    if policy.excluded_user(*identifiers, user_id):
        return "excluded account (policy exclusions.users): never touched"
    groups = list(policy.exclusions.groups)
    if groups and user_id:
        from shared.graph.directory import check_member_groups

        hits = await check_member_groups(services.graph, user_id, groups)
        if hits:
            return f"member of excluded group(s) {sorted(hits)}: never touched"
    return None


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
    """Submit signals through intake when it is there, else through the fallback below."""
    intake = _intake()
    if intake is not None:
        raw = await intake.submit_signals(services, list(signals), dry_run=dry_run)
        return [_from_intake(s, r) for s, r in zip(signals, _as_list(raw, len(signals)),
                                                   strict=False)]
    return [await _fallback(services, s, dry_run=dry_run) for s in signals]


def _intake() -> Any:
    try:
        module = importlib.import_module("shared.intake")
    except ModuleNotFoundError as exc:
        if exc.name not in ("shared.intake",):
            raise
        return None
    return module if hasattr(module, "submit_signals") else None


def _as_list(raw: Any, n: int) -> list[Any]:
    if isinstance(raw, list):
        return raw
    for attr in ("outcomes", "results", "submissions", "items"):
        value = getattr(raw, attr, None)
        if isinstance(value, list):
            return value
    return [raw] * n


def _from_intake(signal: RiskSignal, outcome: Any) -> Submission:
    """Read intake's per-signal outcome, whatever its exact shape."""
    def pick(*names: str) -> Any:
        for name in names:
            value = outcome.get(name) if isinstance(outcome, dict) else getattr(outcome, name,
                                                                                  None)
            if value is not None:
                return value
        return None

    request = pick("request")
    status = str(pick("status", "outcome", "decision") or ("enqueued" if request else "refused"))
    reason = str(pick("reason", "why") or "")
    request_id = pick("request_id", "requestId") or getattr(request, "request_id", None)
    playbook = getattr(request, "playbook", None) if request is not None else pick("playbook")
    return Submission(signal.user_id or signal.upn or "", status, reason, request_id, playbook)


async def _fallback(services: Services, signal: RiskSignal, *, dry_run: bool) -> Submission:
    from shared.policy import Refusal, decide

    user = signal.user_id or signal.upn or ""
    decision = decide(signal, services.policy, route="sweep")
    if isinstance(decision, Refusal):
        return Submission(user, "refused", decision.reason)
    why = await excluded(services, signal.upn, user_id=signal.user_id)
    if why:
        return Submission(user, "refused", why)
    window_hours = services.policy.dedupe_minutes / 60
    if window_hours and await recent_run(services, signal.user_id, signal.upn,
                                         hours=window_hours):
        return Submission(user, "deduplicated", "a run for this user is recent or still going")
    request = RemediationRequest.model_validate({
        **decision.model_dump(by_alias=True, exclude_none=True), "requestedBy": REQUESTED_BY,
    })
    if dry_run:
        return Submission(user, "would-enqueue", request.reason or "", request.request_id,
                          request.playbook)
    await services.storage.enqueue(services.settings.remediation_queue, request.to_message())
    log.info("sweep enqueued request %s for %s", request.request_id, user)
    return Submission(user, "enqueued", request.reason or "", request.request_id,
                      request.playbook)


def record(result: Any, finding: dict[str, Any], sub: Submission) -> None:
    """Put a submission in the sweep result: an action, or a finding left alone."""
    row = {**finding, "requestId": sub.request_id, "playbook": sub.playbook,
           "submission": sub.status}
    if sub.status in ("enqueued", "would-enqueue", "accepted", "queued", "upgraded"):
        result.actions.append({**row, "what": "remediation request"})
    else:
        result.skipped.append({**row, "why": sub.reason or sub.status})
