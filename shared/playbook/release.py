"""Release: undo a run after a false positive, from what the run journaled.

Only what the run itself changed is undone, from its step records (each change keeps the
value it replaced) and its evidence snapshot. Each step declares its own undo beside its
`apply` (shared.playbook.registry): the release asks every registered step, in the steps'
declared release order, for its items, and carries them out. For the shipped steps: inbox
rules the run disabled are enabled again, the account is re-enabled, the Conditional Access
group membership is removed, per-user MFA and mailbox forwarding go back to the recorded
values, the user's risk is dismissed and the user is released from the restricted-senders
list. What cannot be undone (the password, removed authentication methods, revoked
sessions) or is deliberately kept (mailbox auditing) is reported, as each step declares.

Idempotent: every undo is a "set to this value" call; a finished release is not repeated;
a release that partly failed is retried (queue redelivery or running it again).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.errors import ServiceError, ValidationError
from shared.logs import run_context
from shared.models import RemediationRequest, StepResult, StepStatus
from shared.permissions import declare
from shared.playbook.catalogue import STEP_NAMES
from shared.playbook.registry import Step, all_steps
from shared.playbook.runner import RetryableRunError, RunOutcome
from shared.playbook.undo import ReleaseContext, Undo
from shared.safety import approvals, notify
from shared.safety.exclusions import exclusion_reason
from shared.services import Services
from shared.state.clock import now
from shared.state.journal import safe_key

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


def _in_release_order() -> list[type[Step]]:
    """Every registered step, not only the run's: some undo also covers what happened
    outside the run (the user's risk, the restricted-senders list)."""
    return sorted(all_steps().values(), key=lambda cls: cls.undo_order)


def cannot_undo() -> dict[str, str]:
    """What a release cannot give back, by step, as the registered steps declare it."""
    return {cls.name: cls.cannot_undo for cls in _in_release_order() if cls.cannot_undo}


CANNOT_UNDO: dict[str, str] = {n: t for n, t in cannot_undo().items() if n in STEP_NAMES}
"""The shipped steps' declarations, for the run report (`cannot_undo()` reads them live)."""


async def plan_release(services: Services, run: Any, results: dict[str, StepResult],
                       evidence: dict[str, Any] | None) -> list[Undo]:
    """Every item of the release, from the run's records: each registered step's undo, in
    release order, the items that restore something before those that only report."""
    ctx = ReleaseContext(services, run, evidence)
    items: list[Undo] = []
    for cls in _in_release_order():
        items += await cls().undo(ctx, results.get(cls.name))
    return sorted(items, key=lambda item: item.action is None)


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
    items = await plan_release(services, run, results, evidence)
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
        declared = cannot_undo()
        lost = [k.split(":", 1)[1] for k in out if k.startswith("cannotUndo:")
                and declared.get(k.split(":", 1)[1], "").startswith("cannot")]
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
