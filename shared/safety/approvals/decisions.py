"""Using a link: check the token, record the decision once, journal it, resume the run.

Every refusal is journaled (the REFUSALS partition, and the run's own trail when the token
was genuine) before TokenRefused is raised.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.safety.approvals import config, escalation, store
from shared.safety.approvals.store import REFUSALS, Approval
from shared.safety.approvals.tokens import TokenRefused, nonce_digest, read_token
from shared.state import clock

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger("responder.approvals")

_STATE_FOR = {"approve": "approved", "deny": "denied"}


async def preview(services: Services, token: str) -> tuple[dict[str, Any], Approval]:
    """Check a token without using it (the confirmation page). Raises TokenRefused."""
    secret = config.secret_of(services)
    if secret is None:
        raise TokenRefused("not-configured", "approvals are not configured on this app",
                           status=503)
    claims = read_token(secret, token)
    approval = await _matching(services, claims)
    return claims, approval


async def _matching(services: Services, claims: dict[str, Any]) -> Approval:
    approval = await store.get_approval(services, claims["runId"])
    if approval is None:
        raise TokenRefused("unknown", "no approval is waiting for this run",
                           run_id=claims["runId"], status=404)
    if not hmac.compare_digest(approval.nonce_digests.get(claims["decision"], ""),
                               nonce_digest(claims["nonce"])):
        raise TokenRefused("forged", "the approval token does not belong to this approval",
                           run_id=claims["runId"])
    if approval.state != "pending":
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        raise TokenRefused("used", f"this approval was already {approval.state}{by}; a link "
                           "works once", run_id=claims["runId"], status=409)
    return approval


async def decide(services: Services, token: str, *, by: str, by_trust: str,
                 now: datetime | None = None) -> Approval:
    """Use a token: record the decision once, journal it, and queue the run's resumption."""
    when = now or clock.now()
    by = (by or "").strip()[:200] or "unknown"
    try:
        secret = config.secret_of(services)
        if secret is None:
            raise TokenRefused("not-configured", "approvals are not configured on this app",
                               status=503)
        claims = read_token(secret, token, when)
        approval = await _matching(services, claims)
        if when >= approval.expires_at:
            raise TokenRefused("expired", "the approval expired at "
                               f"{approval.expires_at.isoformat()}", run_id=approval.run_id)
        decided = await store.transition(services, approval, _STATE_FOR[claims["decision"]],
                                         decided_by=by, by_trust=by_trust, when=when)
        if decided is None:
            raise TokenRefused("used", "this approval was decided concurrently; a link works "
                               "once", run_id=approval.run_id, status=409)
    except TokenRefused as refused:
        await _journal_refusal(services, refused, by, by_trust, when)
        if refused.reason == "expired" and refused.run_id:
            await escalation.escalate_expired(services, now=when, only=refused.run_id)
        raise
    verb = "approved" if decided.state == "approved" else "denied"
    await services.journal.event(decided.run_id, f"approval-{verb}",
                                 f"{verb} by {by} ({by_trust}) at {when.isoformat()}",
                                 {"by": by, "byTrust": by_trust, "at": when.isoformat(),
                                  "steps": decided.steps})
    await escalation.enqueue_resume(services, decided, by)
    log.info("approval %s for run %s by %s", verb, decided.run_id, by,
             extra={"run_id": decided.run_id})
    return decided


async def _journal_refusal(services: Services, refused: TokenRefused, by: str, by_trust: str,
                           when: datetime) -> None:
    data = {"reason": refused.reason, "by": by, "byTrust": by_trust, "at": when.isoformat(),
            "runId": refused.run_id}
    message = f"approval token refused ({refused.reason}): {refused}"
    await services.journal.event(REFUSALS, "approval-refused", message, data)
    # Only a genuinely signed token may write into a run's own audit trail.
    if refused.run_id and refused.reason in ("expired", "used"):
        await services.journal.event(refused.run_id, "approval-refused", message, data)
    log.warning("approval token refused: %s", refused.reason)


async def cancel(services: Services, run_id: str, why: str) -> bool:
    """Cancel a pending approval (a release). True when it was pending."""
    approval = await store.get_approval(services, run_id)
    if approval is None or approval.state != "pending":
        return False
    done = await store.transition(services, approval, "cancelled", decided_by=why,
                                  by_trust="system", when=clock.now())
    if done:
        await services.journal.event(run_id, "approval-cancelled", why)
    return done is not None
