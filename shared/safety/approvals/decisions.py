"""Using a link: check the token, record the decision once, journal it, resume the run.

The endpoint is anonymous, so what a refused request costs is what an attacker can make the
app spend. A refusal is therefore never written: it is logged (reason, and the run only for
a genuinely signed token) and counted in process (`refusal_counts`). No request queries a
partition: a token is checked from its own claims and at most one point read of its
approval row. What is journaled is bounded per approval: the decision (once, ETag), and the
escalation of an expired approval (once, ETag) when a late click finds it still pending.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import UnknownTenant
from shared.safety.approvals import config, escalation, store
from shared.safety.approvals.store import Approval
from shared.safety.approvals.tokens import (
    TokenRefused,
    nonce_digest,
    read_token,
    same_tenant,
    signed_claims,
)
from shared.state import clock

if TYPE_CHECKING:
    from shared.services import Services
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.approvals")

_STATE_FOR = {"approve": "approved", "deny": "denied"}
_REFUSALS: Counter[str] = Counter()


def refusal_counts() -> dict[str, int]:
    """Refused approval requests by reason since this process started (a metric: refusals
    are logged and counted, never stored, so hammering the endpoint grows nothing)."""
    return dict(_REFUSALS)


async def preview(services: Services, token: str, *, tenant: str | None = None) \
        -> tuple[dict[str, Any], Approval]:
    """Check a token without using it (the confirmation page). Raises TokenRefused.
    `tenant`: the tenant `services` act for, as the link named it (None: the default)."""
    secret = config.secret_of(services)
    if secret is None:
        raise TokenRefused("not-configured", "approvals are not configured on this app",
                           status=503)
    claims = read_token(secret, token, tenant=tenant)
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
                 now: datetime | None = None, tenant: str | None = None) -> Approval:
    """Use a token: record the decision once, journal it, and queue the run's resumption.

    `tenant`: the tenant `services` act for, as the link named it (None: the default). A
    token signed for another tenant is refused before any read: the approval row is looked
    up only in the journal of the tenant the token was made for."""
    when = now or clock.now()
    by = (by or "").strip()[:200] or "unknown"
    try:
        secret = config.secret_of(services)
        if secret is None:
            raise TokenRefused("not-configured", "approvals are not configured on this app",
                               status=503)
        try:
            claims = read_token(secret, token, when, tenant=tenant)
        except TokenRefused as refused:
            if refused.reason == "expired" and refused.run_id:  # signed claims: a real run
                await _escalate(services, None, refused.run_id, when)
            raise
        approval = await _matching(services, claims)
        if when >= approval.expires_at:
            await _escalate(services, approval, approval.run_id, when)
            raise TokenRefused("expired", "the approval expired at "
                               f"{approval.expires_at.isoformat()}", run_id=approval.run_id)
        decided = await store.transition(services, approval, _STATE_FOR[claims["decision"]],
                                         decided_by=by, by_trust=by_trust, when=when)
        if decided is None:
            raise TokenRefused("used", "this approval was decided concurrently; a link works "
                               "once", run_id=approval.run_id, status=409)
    except TokenRefused as refused:
        _count_refusal(refused, by)
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


async def _escalate(services: Services, approval: Approval | None, run_id: str,
                    when: datetime) -> None:
    """A late click on a still-pending approval escalates it now instead of at the next
    timer tick: once per approval (ETag), at most one point read. Never fails the refusal:
    the timer escalates anyway."""
    try:
        if approval is None:
            await escalation.escalate_run(services, run_id, when, trigger="expired link used")
        else:
            await escalation.escalate_approval(services, approval, when,
                                               trigger="expired link used")
    except Exception:  # the refusal stands; the timer retries the escalation
        log.warning("escalating approval of run %s after an expired link failed", run_id,
                    exc_info=True, extra={"run_id": run_id})


async def services_for_link(hub: TenantHub, token: str, tenant: str | None, *,
                            by: str = "") -> Services:
    """The Services of the tenant a link names (`tenant=` in the link), once its token is
    shown to be signed for that very tenant: a caller's tenant never reaches the registry
    unless the app itself signed it. Refusals are counted, never stored. The default
    tenant (no tenant in the link) needs no lookup at all."""
    try:
        if not tenant:
            return hub.default
        secret = config.secret_of(hub.default)
        if secret is None:
            raise TokenRefused("not-configured", "approvals are not configured on this app",
                               status=503)
        claims = signed_claims(secret, token)
        if not same_tenant(claims["tenant"], tenant):
            raise TokenRefused("wrong-tenant", "the approval token was not made for this "
                               "tenant")
        try:
            return await hub.services_for(tenant)
        except UnknownTenant as exc:
            raise TokenRefused("unknown-tenant", "this app no longer serves the tenant of "
                               "this approval", run_id=claims["runId"], status=404) from exc
    except TokenRefused as refused:
        _count_refusal(refused, by)
        raise


def _count_refusal(refused: TokenRefused, by: str) -> None:
    """Log and count a refusal; never stored (no write per anonymous request)."""
    _REFUSALS[refused.reason] += 1
    # Only a genuinely signed token names a run worth logging; `by` is whatever was typed.
    log.warning("approval token refused (%s, %d since start)%s by %r", refused.reason,
                _REFUSALS[refused.reason],
                f" for run {refused.run_id}" if refused.run_id else "", by[:80],
                extra={"refusal_reason": refused.reason, "run_id": refused.run_id or ""})


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
