"""Approvals: privileged users' disruptive steps wait for a person to say yes.

- **Who is privileged**: a user holding a directory role (found in Graph's
  `/users/{id}/transitiveMemberOf`, so roles held through role-assignable groups count) whose
  roleTemplateId is in `policy.privileged.roleTemplateIds`. A directoryRole whose template
  cannot be read counts as privileged (fail safe), and so does a user whose memberships
  cannot be read at all.
- **What waits**: steps marked disruptive that are not in `policy.privileged.alwaysSafeSteps`.
  The rest of the run goes ahead at once (revoking sessions cannot make things worse).
- **The links** carry a token: base64url(JSON claims) "." base64url(HMAC-SHA256(secret,
  claims)), secret from the app setting `RESPONDER_APPROVAL_SECRET`. Claims name the run,
  the decision, a random nonce (only its digest is stored) and the expiry. A token is
  single-use: deciding moves the approval row from `pending` with an ETag-conditional
  update, so a second use (or a concurrent double click) is refused. Tokens are never
  logged or journaled; they exist only in the notification that carries the links.
- **Expiry** never drops an approval silently: `escalate_expired` (a timer) marks it expired,
  journals it, notifies everyone again, and resumes the run, which records the waiting
  steps as skipped and the run as failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as _html
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.errors import ResponderError, ServiceError
from shared.models import RemediationRequest
from shared.permissions import declare
from shared.safety import notify
from shared.state import partitions
from shared.state.journal import safe_key
from shared.tenant.graph import directory
from shared.tenant.graph.directory import PERM_ROLE_READ, PERM_USER_READ

if TYPE_CHECKING:
    from shared.models import StepResult
    from shared.services import Services
    from shared.state.journal import RunRecord
    from shared.tenant.graph.directory import DirectoryUser

log = logging.getLogger("responder.approvals")

declare("approvals", graph=(PERM_USER_READ, PERM_ROLE_READ),
        why="find privileged users: directory roles (with roleTemplateId) in the user's "
            "transitiveMemberOf; without RoleManagement.Read.Directory roles come back "
            "without their template and every role holder counts as privileged")

PARTITION = partitions.APPROVALS
REFUSALS = partitions.APPROVAL_REFUSALS
SECRET_SETTING = "RESPONDER_APPROVAL_SECRET"  # noqa: S105 - a setting name
BASE_URL_SETTING = "RESPONDER_APPROVAL_BASE_URL"
TRUST_HEADER_SETTING = "RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER"
MIN_SECRET_CHARS = 32
DECISIONS = ("approve", "deny")
_STATE_FOR = {"approve": "approved", "deny": "denied"}


def utcnow() -> datetime:
    """The clock (a function so tests can move it)."""
    return datetime.now(UTC)


class TokenRefused(ResponderError):
    """An approval token that is malformed, forged, expired, already used or unknown."""

    def __init__(self, reason: str, message: str, *, run_id: str | None = None,
                 status: int = 403) -> None:
        super().__init__(message)
        self.reason = reason
        self.run_id = run_id
        self.status = status


@dataclass
class Approval:
    """One pending (or decided) approval: one per run."""

    run_id: str
    state: str
    user: str
    upn: str
    user_id: str
    steps: list[str]
    roles: list[str]
    created_at: datetime
    expires_at: datetime
    decided_by: str = ""
    by_trust: str = ""
    decided_at: datetime | None = None
    nonce_digests: dict[str, str] = field(default_factory=dict)
    etag: str | None = None

    @classmethod
    def from_entity(cls, e: Any) -> Approval:
        meta = getattr(e, "metadata", None) or {}
        return cls(
            run_id=e["runId"], state=e["state"], user=e.get("user", ""), upn=e.get("upn", ""),
            user_id=e.get("userId", ""), steps=json.loads(e.get("steps") or "[]"),
            roles=json.loads(e.get("roles") or "[]"), created_at=e["createdAt"],
            expires_at=e["expiresAt"], decided_by=e.get("decidedBy", ""),
            by_trust=e.get("byTrust", ""), decided_at=e.get("decidedAt"),
            nonce_digests={d: e.get(f"{d}Nonce", "") for d in DECISIONS},
            etag=meta.get("etag"),
        )

    def public(self) -> dict[str, Any]:
        """What reports show (no nonce digests)."""
        return {"runId": self.run_id, "state": self.state, "steps": self.steps,
                "roles": self.roles, "createdAt": self.created_at.isoformat(),
                "expiresAt": self.expires_at.isoformat(), "decidedBy": self.decided_by,
                "byTrust": self.by_trust,
                "decidedAt": self.decided_at.isoformat() if self.decided_at else None}


@dataclass
class Gate:
    """What the runner must hold back, and what it must record as skipped."""

    held: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    approval: Approval | None = None


# --- privileged users ----------------------------------------------------------------------


async def privileged_roles(services: Services, user_id: str) -> list[str]:
    """Names of the privileged directory roles the user holds (transitively); [] if none.

    Retryable errors propagate; a permanent error counts as privileged (fail safe).
    """
    wanted = {t.lower() for t in services.policy.privileged.role_template_ids}
    try:
        objects = await directory.member_of(services.graph, user_id)
    except ServiceError as exc:
        if exc.retryable:
            raise
        return [f"unknown (memberships could not be read: {exc.code or exc.status})"]
    found: list[str] = []
    for obj in objects:
        if not str(obj.get("@odata.type", "")).endswith("directoryRole"):
            continue
        template = str(obj.get("roleTemplateId") or "").lower()
        if not template:
            found.append(f"directory role {obj.get('id')} (template not readable)")
        elif template in wanted:
            found.append(str(obj.get("displayName") or template))
    return found


# --- tokens --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def secret_of(services: Services) -> bytes | None:
    value = services.settings.extra.get(SECRET_SETTING, "")
    return value.encode("utf-8") if len(value) >= MIN_SECRET_CHARS else None


def make_token(secret: bytes, run_id: str, decision: str, nonce: str,
               expires_at: datetime) -> str:
    claims = _b64(json.dumps({"r": run_id, "d": decision, "n": nonce,
                              "e": int(expires_at.timestamp())},
                             separators=(",", ":")).encode("utf-8"))
    mac = hmac.new(secret, claims.encode("ascii"), hashlib.sha256).digest()
    return f"{claims}.{_b64(mac)}"


def read_token(secret: bytes, token: str, now: datetime | None = None) -> dict[str, Any]:
    """Verify the signature (constant time) and the expiry; return the claims."""
    if not token or len(token) > 2000 or token.count(".") != 1:
        raise TokenRefused("malformed", "the approval token is malformed")
    claims_text, mac_text = token.split(".")
    try:
        mac = _unb64(mac_text)
    except ValueError as exc:
        raise TokenRefused("malformed", "the approval token is malformed") from exc
    expected = hmac.new(secret, claims_text.encode("ascii", "replace"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise TokenRefused("forged", "the approval token's signature is not valid")
    try:
        claims = json.loads(_unb64(claims_text))
        run_id, decision = str(claims["r"]), str(claims["d"])
        expires = datetime.fromtimestamp(int(claims["e"]), UTC)
        str(claims["n"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenRefused("malformed", "the approval token is malformed") from exc
    if decision not in DECISIONS:
        raise TokenRefused("malformed", "the approval token names no decision")
    if (now or utcnow()) >= expires:
        raise TokenRefused("expired", f"the approval link expired at {expires.isoformat()}",
                           run_id=run_id)
    return {"runId": run_id, "decision": decision, "nonce": str(claims["n"]),
            "expiresAt": expires}


def links(services: Services, run_id: str, nonces: dict[str, str],
          expires_at: datetime) -> list[tuple[str, str]] | None:
    """Approve and deny links; None when no secret is configured."""
    secret = secret_of(services)
    if secret is None:
        return None
    host = services.settings.website_hostname
    base = (services.settings.extra.get(BASE_URL_SETTING, "").strip()
            or (f"https://{host}/api/approvals" if host else "/api/approvals"))
    # The token rides in the fragment: browsers never send it to the server with the
    # GET (so it is in no access log); the page posts it in the body on confirmation.
    return [(f"{'Approve' if d == 'approve' else 'Deny'} disruptive steps",
             f"{base}#token={make_token(secret, run_id, d, nonces[d], expires_at)}")
            for d in DECISIONS]


# --- the runner's gate ---------------------------------------------------------------------


def candidates(services: Services, disruptive: list[str], done: dict[str, StepResult]) \
        -> list[str]:
    """The run's disruptive steps (as the step registry declares them) that are not done
    and that the policy does not call always safe."""
    safe = set(services.policy.privileged.always_safe_steps)
    return [s for s in disruptive if s not in done and s not in safe]


async def gate(services: Services, run: RunRecord, user: DirectoryUser, disruptive: list[str],
               done: dict[str, StepResult], dry_run: bool) -> Gate:
    """Decide what waits. Opens (and announces) the approval the first time it is needed."""
    if dry_run or not services.policy.privileged.require_approval:
        return Gate()
    waiting = candidates(services, disruptive, done)
    if not waiting:
        return Gate()
    approval = await get_approval(services, run.run_id)
    if approval is None:
        roles = await privileged_roles(services, user.id)
        if not roles:
            return Gate()
        approval = await open_approval(services, run, user, waiting, roles)
    if approval.state == "approved":
        return Gate(approval=approval)
    if approval.state == "pending":
        why = (f"waiting for approval (privileged user: {', '.join(approval.roles)}); "
               f"expires {approval.expires_at.isoformat()}")
        return Gate(held={s: why for s in waiting}, approval=approval)
    reasons = {
        "denied": f"denied by {approval.decided_by or 'unknown'} ({approval.by_trust}) at "
                  f"{approval.decided_at.isoformat() if approval.decided_at else '?'}",
        "expired": f"not done: the approval expired at {approval.expires_at.isoformat()} "
                   "without a decision (escalated)",
        "cancelled": "not done: the approval was cancelled (the run was released)",
    }
    why = reasons.get(approval.state, f"not done: approval {approval.state}")
    return Gate(skipped={s: why for s in waiting}, approval=approval)


async def get_approval(services: Services, run_id: str) -> Approval | None:
    journal = services.journal
    await journal.ensure()
    try:
        entity = await journal.table.get_entity(PARTITION, safe_key(run_id))
    except ResourceNotFoundError:
        return None
    return Approval.from_entity(entity)


async def open_approval(services: Services, run: RunRecord, user: DirectoryUser,
                        steps: list[str], roles: list[str]) -> Approval:
    """Record a pending approval and announce it with approve/deny links (once per run)."""
    journal = services.journal
    await journal.ensure()
    created = utcnow()
    expires = created + timedelta(hours=services.policy.privileged.approval_hours)
    nonces = {d: secrets.token_urlsafe(24) for d in DECISIONS}
    entity = {
        "PartitionKey": PARTITION, "RowKey": safe_key(run.run_id), "runId": run.run_id,
        "state": "pending", "user": run.user, "upn": user.upn, "userId": user.id,
        "steps": json.dumps(steps), "roles": json.dumps(roles), "createdAt": created,
        "expiresAt": expires, **{f"{d}Nonce": _digest(n) for d, n in nonces.items()},
    }
    try:
        await journal.table.create_entity(entity)
    except ResourceExistsError:  # a concurrent delivery opened it first
        existing = await get_approval(services, run.run_id)
        assert existing is not None
        return existing
    await journal.event(run.run_id, "approval-requested",
                        f"privileged user ({', '.join(roles)}): {', '.join(steps)} wait for "
                        f"approval until {expires.isoformat()}",
                        {"steps": steps, "roles": roles, "expiresAt": expires.isoformat()})
    approval_links = links(services, run.run_id, nonces, expires)
    lines = [f"{user.upn} holds privileged role(s): {', '.join(roles)}.",
             f"Waiting for approval: {', '.join(steps)}.",
             "Steps that are always safe (for example revoking sessions) go ahead now.",
             f"The links expire at {expires.isoformat()}; then the request is escalated."]
    if approval_links is None:
        lines.append(f"No approval links: the app setting {SECRET_SETTING} is not set (or "
                     f"shorter than {MIN_SECRET_CHARS} characters). The request will expire "
                     "and be escalated.")
    await notify.send(services, notify.Notification(
        event="approval.needed", title=f"approval needed to contain {user.upn}",
        lines=lines, run_id=run.run_id, links=approval_links or [],
        facts={"run": run.run_id, "user": f"{user.upn} ({user.id})",
               "expires": expires.isoformat()},
        data={"steps": steps, "roles": roles, "expiresAt": expires.isoformat()}))
    return Approval.from_entity(entity)


# --- decisions -----------------------------------------------------------------------------


async def preview(services: Services, token: str) -> tuple[dict[str, Any], Approval]:
    """Check a token without using it (the confirmation page). Raises TokenRefused."""
    secret = secret_of(services)
    if secret is None:
        raise TokenRefused("not-configured", "approvals are not configured on this app",
                           status=503)
    claims = read_token(secret, token)
    approval = await _matching(services, claims)
    return claims, approval


async def _matching(services: Services, claims: dict[str, Any]) -> Approval:
    approval = await get_approval(services, claims["runId"])
    if approval is None:
        raise TokenRefused("unknown", "no approval is waiting for this run",
                           run_id=claims["runId"], status=404)
    if not hmac.compare_digest(approval.nonce_digests.get(claims["decision"], ""),
                               _digest(claims["nonce"])):
        raise TokenRefused("forged", "the approval token does not belong to this approval",
                           run_id=claims["runId"])
    if approval.state != "pending":
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        raise TokenRefused("used", f"this approval was already {approval.state}{by}; a link "
                           "works once", run_id=claims["runId"], status=409)
    return approval


async def decide(services: Services, token: str, *, by: str, by_trust: str,
                 now: datetime | None = None) -> Approval:
    """Use a token: record the decision once, journal it, and queue the run's resumption.

    Every refusal is journaled (REFUSALS partition, and the run's when the token was
    genuine) before TokenRefused is raised.
    """
    when = now or utcnow()
    by = (by or "").strip()[:200] or "unknown"
    try:
        secret = secret_of(services)
        if secret is None:
            raise TokenRefused("not-configured", "approvals are not configured on this app",
                               status=503)
        claims = read_token(secret, token, when)
        approval = await _matching(services, claims)
        if when >= approval.expires_at:
            raise TokenRefused("expired", "the approval expired at "
                               f"{approval.expires_at.isoformat()}", run_id=approval.run_id)
        decided = await _transition(services, approval, _STATE_FOR[claims["decision"]],
                                    decided_by=by, by_trust=by_trust, when=when)
        if decided is None:
            raise TokenRefused("used", "this approval was decided concurrently; a link works "
                               "once", run_id=approval.run_id, status=409)
    except TokenRefused as refused:
        await _journal_refusal(services, refused, by, by_trust, when)
        if refused.reason == "expired" and refused.run_id:
            await escalate_expired(services, now=when, only=refused.run_id)
        raise
    verb = "approved" if decided.state == "approved" else "denied"
    await services.journal.event(decided.run_id, f"approval-{verb}",
                                 f"{verb} by {by} ({by_trust}) at {when.isoformat()}",
                                 {"by": by, "byTrust": by_trust, "at": when.isoformat(),
                                  "steps": decided.steps})
    await _enqueue_resume(services, decided, by)
    log.info("approval %s for run %s by %s", verb, decided.run_id, by,
             extra={"run_id": decided.run_id})
    return decided


async def _transition(services: Services, approval: Approval, state: str, *, decided_by: str,
                      by_trust: str, when: datetime) -> Approval | None:
    """pending -> state, only if nobody changed the row since it was read (ETag)."""
    patch = {"PartitionKey": PARTITION, "RowKey": safe_key(approval.run_id), "state": state,
             "decidedBy": decided_by, "byTrust": by_trust, "decidedAt": when}
    try:
        await services.journal.table.update_entity(
            patch, mode=UpdateMode.MERGE, etag=approval.etag,
            match_condition=MatchConditions.IfNotModified)
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
    approval.state, approval.decided_by, approval.by_trust = state, decided_by, by_trust
    approval.decided_at = when
    return approval


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


async def _enqueue_resume(services: Services, approval: Approval, by: str) -> None:
    request = RemediationRequest.model_validate({
        "user": approval.user_id or approval.user, "action": "resume",
        "runId": approval.run_id, "requestId": f"resume-{approval.run_id}-{approval.state}",
        "source": "approval", "requestedBy": by[:400],
        "reason": f"approval {approval.state}"})
    await services.storage.enqueue(services.settings.remediation_queue, request.to_message())


async def _requeue_lost_resume(services: Services, row: dict[str, Any], when: datetime) -> None:
    """A decision is stored before its resume message is queued; if queueing failed, the run
    would wait forever. A decided approval whose run still waits gets its resume again
    (resuming is idempotent: the request id is the same)."""
    decided_at = row.get("decidedAt")
    if isinstance(decided_at, datetime) and (when - decided_at).total_seconds() < 300:
        return  # give the first resume message time to be processed
    run = await services.journal.get_run(str(row.get("runId")))
    if run is None or run.state != "waiting_approval":
        return
    approval = await get_approval(services, run.run_id)
    if approval is not None and approval.state == row.get("state"):
        await services.journal.event(run.run_id, "approval-resume-requeued",
                                     "the run still waited after its approval was decided: "
                                     "resume queued again")
        await _enqueue_resume(services, approval, "timer")


async def cancel(services: Services, run_id: str, why: str) -> bool:
    """Cancel a pending approval (a release). True when it was pending."""
    approval = await get_approval(services, run_id)
    if approval is None or approval.state != "pending":
        return False
    done = await _transition(services, approval, "cancelled", decided_by=why,
                             by_trust="system", when=utcnow())
    if done:
        await services.journal.event(run_id, "approval-cancelled", why)
    return done is not None


# --- expiry --------------------------------------------------------------------------------


async def escalate_expired(services: Services, *, now: datetime | None = None,
                           only: str | None = None) -> list[str]:
    """Expire overdue pending approvals: journal, notify (escalation), resume the run."""
    when = now or utcnow()
    rows = await services.journal.items(PARTITION)
    escalated: list[str] = []
    for row in rows:
        if only and row.get("runId") != only:
            continue
        if row.get("state") in ("approved", "denied", "expired"):
            await _requeue_lost_resume(services, row, when)
            continue
        if row.get("state") != "pending":
            continue
        expires = row.get("expiresAt")
        if not isinstance(expires, datetime) or when < expires:
            continue
        approval = await get_approval(services, row["runId"])
        if approval is None or approval.state != "pending":
            continue
        if await _transition(services, approval, "expired", decided_by="",
                             by_trust="system", when=when) is None:
            continue  # a decision or another timer won: nothing to escalate here
        escalated.append(approval.run_id)
        message = (f"approval for {', '.join(approval.steps)} expired at "
                   f"{approval.expires_at.isoformat()} without a decision: escalated")
        await services.journal.event(approval.run_id, "approval-expired", message,
                                     {"steps": approval.steps})
        deliveries = await notify.send(services, notify.Notification(
            event="approval.escalated",
            title=f"ESCALATION: approval to contain {approval.upn} expired",
            lines=[message, "The waiting steps were not done. Decide now: re-run the "
                   "remediation for this user, or release the run if it was a false "
                   "positive."],
            run_id=approval.run_id,
            facts={"run": approval.run_id, "user": f"{approval.upn} ({approval.user_id})",
                   "roles": ", ".join(approval.roles)},
            data={"steps": approval.steps, "expiredAt": approval.expires_at.isoformat()}))
        await services.journal.event(approval.run_id, "approval-escalated",
                                     f"escalated: {notify.summary(deliveries)}",
                                     {"channels": [d.channel for d in deliveries if d.ok]})
        await _enqueue_resume(services, approval, "expiry")
    return escalated


# --- the approval page (functions/approvals_http.py is the thin adapter) --------------------

TRUSTED = "authenticated (App Service Authentication header)"
SELF_ASSERTED = "self-asserted (not verified: whoever held the link)"
PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
}


def who(services: Services, principal_header: str | None, by_field: str | None) \
        -> tuple[str, str]:
    """The decider as the request shows it, and how far that can be trusted.

    `x-ms-client-principal-name` is set by App Service Authentication, which strips any
    client-supplied copy, but only when it is enabled: so it is trusted only when the app
    setting RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER is true. Otherwise the name is
    whatever the person typed (or the header claims) and is journaled as self-asserted.
    """
    trust = services.settings.extra.get(TRUST_HEADER_SETTING, "").strip().lower() == "true"
    header = (principal_header or "").strip()
    if trust and header:
        return header[:200], TRUSTED
    name = (by_field or "").strip() or header
    return (name[:200] or "anonymous"), SELF_ASSERTED


def page(title: str, body_html: str, *, script_nonce: str | None = None,
         script: str = "") -> str:
    csp = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    if script_nonce:
        csp += f"; script-src 'nonce-{script_nonce}'"
    tag = f"<script nonce=\"{script_nonce}\">{script}</script>" if script_nonce else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
            f"<title>{_html.escape(title)}</title><style>body{{font:15px system-ui,sans-serif;"
            "margin:40px;max-width:640px}button{font-size:15px;padding:6px 18px}</style>"
            f"</head><body><h1>{_html.escape(title)}</h1>{body_html}{tag}</body></html>")


_FILL_FROM_FRAGMENT = (
    "(function(){var m=/[#&]token=([^&]+)/.exec(location.hash);"
    "if(m){document.getElementById('token').value=decodeURIComponent(m[1]);"
    "history.replaceState(null,'',location.pathname);}})();"
)


def confirmation_page(query_token: str = "", detail: str = "") -> str:
    """GET never decides (mail link scanners open links): it shows a form that POSTs."""
    nonce = secrets.token_urlsafe(12)
    body = (f"<p>{_html.escape(detail) if detail else 'Confirm the decision in your link.'}"
            "</p><form method=\"post\">"
            f"<input type=\"hidden\" id=\"token\" name=\"token\" "
            f"value=\"{_html.escape(query_token, quote=True)}\">"
            "<p><label>Your name (recorded as given, unless sign-in is enabled): "
            "<input name=\"by\" maxlength=\"200\"></label></p>"
            "<p><button type=\"submit\">Confirm</button></p></form>")
    return page("Responder approval", body, script_nonce=nonce, script=_FILL_FROM_FRAGMENT)


async def describe_token(services: Services, token: str) -> str:
    """A one-line preview for the GET page; never raises."""
    try:
        claims, approval = await preview(services, token)
    except TokenRefused as exc:
        return f"This link cannot be used: {exc}"
    verb = "APPROVE" if claims["decision"] == "approve" else "DENY"
    return (f"{verb} {', '.join(approval.steps)} for {approval.upn} (run {approval.run_id}); "
            f"link valid until {approval.expires_at.isoformat()}.")


def escape(text: str) -> str:
    return _html.escape(text, quote=True)
