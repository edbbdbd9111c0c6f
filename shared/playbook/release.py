"""Release: undo a run after a false positive, from what the run journaled.

Only what the run itself changed is undone, from its step records (each change keeps the
value it replaced) and its evidence snapshot: inbox rules it disabled are enabled again
(Graph, or Exchange for hidden rules), the account is re-enabled if the run disabled it,
the Conditional Access group membership it added is removed, per-user MFA goes back to the
recorded state (a false positive should not leave a user with an MFA prompt they never
had; turn it back on by hand if you want it kept), mailbox forwarding is restored to the
recorded values, the user's risk is dismissed and the user is released from the
restricted-senders list. Some things cannot be undone, and the release says so: the
password (nobody knows the old one), removed authentication methods (the user registers
them again), revoked sessions (the user signs in again). Mailbox auditing stays on.

Idempotent: every undo is a "set to this value" call; a finished release is not repeated;
a release that partly failed is retried (queue redelivery or running it again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import ServiceError, ValidationError
from shared.logs import run_context
from shared.models import RemediationRequest, StepResult, StepStatus
from shared.permissions import declare
from shared.playbook.runner import RetryableRunError, RunOutcome
from shared.playbook.steps.followup import PENDING_UNBLOCKS
from shared.safety import approvals, notify
from shared.safety.exclusions import exclusion_reason
from shared.services import Services
from shared.state.journal import now, safe_key
from shared.tenant import exchange as exo
from shared.tenant.graph import auth_methods, directory, identity_protection, mail

log = logging.getLogger("responder.release")
RELEASE_ROW = "release"
declare(
    "release",
    graph=("User.Read.All", "User.EnableDisableAccount.All", "GroupMember.ReadWrite.All",
           "MailboxSettings.ReadWrite", "IdentityRiskyUser.ReadWrite.All",
           "Policy.ReadWrite.AuthenticationMethod"),
    exchange=("Exchange.ManageAsApp",),
    roles=("User Administrator", "Exchange Administrator"),
    why="undo a run after a false positive: re-enable rules and the account, leave the MFA "
        "group, restore forwarding and per-user MFA, dismiss risk, release restricted senders",
)

CANNOT_UNDO = {
    "reset_password": "cannot be undone: the old password is unknown (by design); the user "
                      "sets a new one through SSPR or a Temporary Access Pass",
    "remove_suspicious_auth_methods": "cannot be undone: removed authentication methods must "
                                      "be registered again by the user",
    "revoke_sessions": "nothing to undo: the user signs in again",
}
KEPT = {
    "enable_mailbox_audit": "kept: mailbox auditing stays on (it is the safe state)",
}
_FINISHED = (StepStatus.DONE, StepStatus.PARTIAL)


@dataclass
class Undo:
    """One release item: what it restores, and the call that restores it (None: report)."""

    key: str
    summary: str
    action: Callable[[], Awaitable[str | None]] | None = None
    status: StepStatus = StepStatus.DONE
    changes: list[dict[str, Any]] | None = None


def _changes(results: dict[str, StepResult], step: str) -> list[dict[str, Any]]:
    r = results.get(step)
    return list(r.changes) if r is not None and r.status in _FINISHED else []


def plan_release(services: Services, run: Any, results: dict[str, StepResult],
                 evidence: dict[str, Any] | None) -> list[Undo]:
    """Every item of the release, in a safe order, from the run's records."""
    graph, ex = services.graph, services.exchange
    uid, mailbox = run.user_id, run.upn or run.user
    items: list[Undo] = []

    for c in _changes(results, "disable_account"):
        if c.get("what") == "accountEnabled":
            async def enable() -> None:
                await directory.set_account_enabled(graph, uid, True)
            items.append(Undo("account", "account re-enabled (sign-in allowed)", enable))

    for c in _changes(results, "disable_malicious_inbox_rules"):
        if c.get("what") != "inboxRule":
            continue
        rule_id, via, name = str(c.get("id")), c.get("via"), c.get("name") or c.get("id")

        async def enable_rule(rule_id: str = rule_id, via: Any = via) -> None:
            if via == "exchange":
                await exo.set_inbox_rule_enabled(ex, mailbox, rule_id, True)
            else:
                await mail.set_rule_enabled(graph, uid, rule_id, True)
        hidden = " (hidden, through Exchange)" if via == "exchange" else ""
        items.append(Undo(f"inboxRule:{rule_id}", f"inbox rule '{name}'{hidden} re-enabled",
                          enable_rule))

    for c in _changes(results, "clear_mailbox_forwarding"):
        before = c.get("from") or (evidence or {}).get("mailbox") or {}
        values = {k: before.get(k) for k in ("ForwardingSmtpAddress", "ForwardingAddress",
                                             "DeliverToMailboxAndForward")}
        values["DeliverToMailboxAndForward"] = bool(values["DeliverToMailboxAndForward"])

        async def forwarding(values: dict[str, Any] = values) -> None:
            await exo.set_mailbox(ex, mailbox, **values)
        target = values["ForwardingSmtpAddress"] or values["ForwardingAddress"]
        items.append(Undo("mailboxForwarding", f"mailbox forwarding restored to {target}",
                          forwarding))

    for c in _changes(results, "require_mfa"):
        if c.get("what") == "groupMembership" and c.get("group"):
            group = str(c["group"])

            async def leave(group: str = group) -> str | None:
                removed = await directory.remove_group_member(graph, group, uid)
                return None if removed else "was no longer a member"
            items.append(Undo(f"group:{group}", f"removed from the Conditional Access group "
                              f"{group} the run added", leave))
        elif c.get("what") == "perUserMfaState" and c.get("from"):
            state = str(c["from"])

            async def mfa(state: str = state) -> None:
                await auth_methods.enforce_per_user_mfa(graph, uid, state)
            items.append(Undo("perUserMfa", f"per-user MFA restored to {state}", mfa))

    confirmed = bool(_changes(results, "confirm_compromised"))

    async def dismiss() -> str | None:
        risky = await identity_protection.get_risky_user(graph, uid)
        if not risky or risky.get("riskState") not in ("atRisk", "confirmedCompromised"):
            return "no risk to dismiss"
        await identity_protection.dismiss(graph, [uid])
        return None
    items.append(Undo("risk", "user risk dismissed in Identity Protection"
                      + (" (the run had confirmed it compromised)" if confirmed else ""),
                      dismiss))

    async def unblock() -> str | None:
        released: list[str] = []
        for address in dict.fromkeys(a.lower() for a in (run.upn, (evidence or {}).get(
                "user", {}).get("mail")) if a):
            rows = await exo.blocked_senders(ex, address)
            if any(str(r.get("SenderAddress", "")).lower() == address for r in rows):
                await exo.remove_blocked_sender(ex, address)
                released.append(address)
            await services.journal.delete_item(PENDING_UNBLOCKS, address)
        return None if released else "not on the restricted-senders list"
    items.append(Undo("restrictedSenders", "released from the restricted-senders list",
                      unblock))

    for step, why in CANNOT_UNDO.items():
        changed = _changes(results, step)
        if changed:
            detail = ""
            if step == "remove_suspicious_auth_methods":
                names = [f"{(c.get('removed') or {}).get('kind')} "
                         f"'{(c.get('removed') or {}).get('displayName') or '?'}'"
                         for c in changed]
                detail = f" (removed: {', '.join(names)})"
            items.append(Undo(f"cannotUndo:{step}", f"{step}: {why}{detail}",
                              status=StepStatus.SKIPPED, changes=changed))
    for step, why in KEPT.items():
        if _changes(results, step):
            items.append(Undo(f"kept:{step}", f"{step}: {why}", status=StepStatus.SKIPPED))
    return items


async def release_run(services: Services, request: RemediationRequest, *,
                      dry_run: bool | None = None) -> RunOutcome:
    """Undo what the run `request.run_id` changed. Raises ValidationError for a bad target,
    RetryableRunError when some undo failed transiently (the queue retries the rest)."""
    if not request.run_id:
        raise ValidationError("a release needs runId (the run to undo)")
    run = await services.journal.get_run(safe_key(request.run_id))
    if run is None:
        raise ValidationError(f"no run {request.run_id!r} to release")
    with run_context(run.run_id, action="release"):
        dry = bool(request.dry_run or dry_run or services.settings.dry_run)
        return await _release(services, run, request, dry)


async def _release(services: Services, run: Any, request: RemediationRequest,
                   dry: bool) -> RunOutcome:
    journal = services.journal
    previous = await journal.get_item(run.run_id, RELEASE_ROW)
    if previous and previous.get("state") == "released":
        return RunOutcome(run, items_from_record(previous), already_done=True)
    if run.dry_run:
        raise ValidationError(f"run {run.run_id} was a dry run: it changed nothing")
    if run.state == "refused":
        raise ValidationError(f"run {run.run_id} was refused (excluded account): it changed "
                              "nothing, and the account is never touched")
    if run.state == "running":
        # Not a bad request: the run will finish, and the queue retries this release then.
        raise RetryableRunError(f"run {run.run_id} is still running; the release is retried "
                                "once it has finished")
    if not run.user_id:
        raise ValidationError(f"run {run.run_id} never resolved its user: nothing to undo")
    why_not = await exclusion_reason(services, run.upn, run.user, user_id=run.user_id)
    if why_not:
        raise ValidationError(f"release refused: {why_not}")
    results = await journal.step_results(run.run_id)
    evidence = await journal.get_evidence(run.run_id, "evidence")
    items = plan_release(services, run, results, evidence)
    if dry:
        return RunOutcome(run, {i.key: StepResult(
            step=f"release:{i.key}", status=StepStatus.PLANNED if i.action else i.status,
            summary=("would: " if i.action else "") + i.summary) for i in items})

    by = request.requested_by or request.source or "unknown"
    await journal.event(run.run_id, "release-started",
                        f"release requested by {by}: {request.reason or 'false positive'}",
                        {"by": by, "items": [i.key for i in items]})
    if await approvals.cancel(services, run.run_id, f"run released by {by}"):
        items.insert(0, Undo("approval", "the pending approval was cancelled",
                             status=StepStatus.DONE))
    out: dict[str, StepResult] = {}
    retry: list[ServiceError] = []
    for item in items:
        result = await _do(item)
        out[item.key] = result
        if result.status == StepStatus.FAILED and result.error_code == "retryable":
            retry.append(ServiceError(result.summary, service="release"))
    failed = [k for k, r in out.items() if r.status == StepStatus.FAILED]
    state = "partial" if failed else "released"
    await journal.put_item(run.run_id, RELEASE_ROW, state=state, at=now(), by=by[:400],
                           items=json.dumps([r.model_dump(mode="json") for r in out.values()],
                                            default=str)[:30_000])
    await journal.event(run.run_id, "released" if not failed else "release-partial",
                        f"release {state}: " + "; ".join(f"{k}: {r.status.value}"
                                                         for k, r in out.items()),
                        {"items": [{"item": k, "status": r.status.value,
                                    "summary": r.summary[:300]} for k, r in out.items()]})
    if not failed:
        run.state = "released"
        lost = [k.split(":", 1)[1] for k in out if k.startswith("cannotUndo:")
                and CANNOT_UNDO[k.split(":", 1)[1]].startswith("cannot")]
        run.reason = ("released after a false positive; cannot be undone: "
                      + (", ".join(lost) or "nothing"))
        await journal.save_run(run)
        await notify.announce_run(services, run, out, event="run.released",
                                  lines=[f"released by {by}"])
    if retry:
        raise RetryableRunError(f"release of {run.run_id}: {len(retry)} item(s) will retry")
    return RunOutcome(run, out)


async def _do(item: Undo) -> StepResult:
    step = f"release:{item.key}"
    if item.action is None:
        return StepResult(step=step, status=item.status, summary=item.summary,
                          changes=item.changes or [], finished_at=now())
    try:
        note = await item.action()
    except ServiceError as exc:
        return StepResult(step=step, status=StepStatus.FAILED,
                          summary=f"{item.summary}: FAILED: {exc}",
                          error_code="retryable" if exc.retryable else exc.code,
                          request_id=exc.request_id, finished_at=now())
    if note:
        return StepResult(step=step, status=StepStatus.NOTHING_TO_DO,
                          summary=f"{item.summary.split(' (')[0]}: {note}", finished_at=now())
    return StepResult(step=step, status=StepStatus.DONE, summary=item.summary,
                      finished_at=now())


def items_from_record(row: dict[str, Any]) -> dict[str, StepResult]:
    try:
        raw = json.loads(row.get("items") or "[]")
    except ValueError:
        return {}
    out: dict[str, StepResult] = {}
    for entry in raw:
        result = StepResult.model_validate(entry)
        out[result.step.removeprefix("release:")] = result
    return out
