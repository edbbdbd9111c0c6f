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

One actor at a time: a release holds the run's lease, as a delivery does (a release from
the queue that finds it held is put back for when it ends; one from the command line is
refused with the reason), and it marks the run released with a conditional write, so a
writer that changed the run meanwhile is never silently overwritten: the release is redone.

A release names a run id, or a user: then that user's most recent unreleased run (or, with
`all`, every one), found through the per-user run index; dry runs and refused runs changed
nothing and are not candidates.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from shared.errors import ServiceError, ValidationError
from shared.logs import run_context
from shared.models import RemediationRequest, StepResult, StepStatus
from shared.permissions import declare
from shared.playbook.catalogue import STEP_NAMES
from shared.playbook.registry import Step, all_steps
from shared.playbook.runner import RUN_LEASE_SECONDS, RetryableRunError, RunOutcome, run_lease
from shared.playbook.undo import ReleaseContext, Undo
from shared.safety import approvals, notify
from shared.safety.exclusions import exclusion_reason
from shared.services import Services
from shared.state.clock import now
from shared.state.journal import Journal, RunRecord, safe_key
from shared.state.lease import LeaseLost

log = logging.getLogger("responder.release")
RELEASE_ROW = "release"
declare(
    "release",
    graph=("User.Read.All", "User.EnableDisableAccount.All", "GroupMember.ReadWrite.All",
           "MailboxSettings.ReadWrite", "IdentityRiskyUser.ReadWrite.All",
           "Policy.ReadWrite.AuthenticationMethod",
           # revoke_consent_grants: read the user's consents, re-create the revoked ones
           "Directory.Read.All", "DelegatedPermissionGrant.ReadWrite.All",
           "AppRoleAssignment.ReadWrite.All",
           # remove_admin_roles: read the user's roles; re-assigning them uses that step's
           # optional RoleManagement.ReadWrite.Directory, granted with the step
           "RoleManagement.Read.Directory"),
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
                      dry_run: bool | None = None, requeue: bool = False) -> RunOutcome:
    """Undo what the run `request.run_id` changed, or, without a run id, the latest (with
    `all`: every) unreleased run of `request.user`. Raises ValidationError for a bad target,
    RetryableRunError when some undo failed transiently (the queue retries the rest) or,
    unless `requeue` (the queue worker), when a delivery holds the run now. With `requeue`,
    a held run's release is put back on the queue for when the holder's lease ends."""
    dry = bool(request.dry_run or dry_run or services.settings.dry_run)
    if not request.run_id:
        return await _release_for_user(services, request, dry, requeue)
    if request.all_runs:
        raise ValidationError("`all` releases every run of a user: give user without runId")
    run = await services.journal.get_run(safe_key(request.run_id))
    if run is None:
        raise ValidationError(f"no run {request.run_id!r} to release")
    outcome = await _release_held(services, run, request, dry)
    if isinstance(outcome, RunOutcome):
        return outcome
    return await _busy(services, run, request, outcome, requeue)


async def _release_held(services: Services, run: RunRecord, request: RemediationRequest,
                        dry: bool) -> RunOutcome | float:
    """The release of one run, under the run's lease; the seconds the lease is still held
    by another actor (a delivery of the run, another release) when it is."""
    with run_context(run.run_id, action="release"):
        if dry:  # plans only, writes nothing: no lease needed
            return await _release(services, run, request, dry)
        lease = run_lease(services, run.run_id)
        try:
            busy = await lease.try_acquire()
            if busy:
                return busy
            fresh = await services.journal.get_run(run.run_id)  # as it is, now it is ours
            try:
                return await lease.run_while_held(
                    _release(services, fresh or run, request, dry))
            except LeaseLost as exc:
                raise RetryableRunError(f"release of {run.run_id} stopped ({exc}); it is "
                                        "redone") from exc
        finally:
            try:
                await lease.release()
            except Exception as exc:  # it lapses on its own
                log.warning("could not release the run lease: %s", type(exc).__name__)


async def _busy(services: Services, run: RunRecord, request: RemediationRequest, busy: float,
                requeue: bool) -> RunOutcome:
    """Another actor holds the run: the release does not run beside it."""
    if not requeue:
        raise RetryableRunError(f"run {run.run_id} is being worked on now (its lease runs "
                                f"{busy:.0f} s more): the release was not started; run it "
                                "again then")
    delay = int(min(busy, RUN_LEASE_SECONDS)) + 1
    await services.storage.enqueue(services.settings.remediation_queue, request.to_message(),
                                   visibility_timeout=delay)
    await services.journal.event(run.run_id, "release-deferred",
                                 f"a delivery is working on the run; the release is retried "
                                 f"in {delay} s")
    return RunOutcome(run, {}, already_done=True)


def _release_candidate(run: RunRecord) -> bool:
    """Runs that changed something and are not released yet."""
    return not run.dry_run and run.state not in ("refused", "released")


async def _runs_of(journal: Journal, user: str) -> list[RunRecord]:
    """The user's runs (per-user index, then each run record), newest first."""
    ids = {row["RowKey"] for row in await journal.runs_for_user(user)}
    runs = [run for run in [await journal.get_run(i) for i in sorted(ids)] if run is not None]
    oldest = datetime.min.replace(tzinfo=now().tzinfo)
    return sorted(runs, key=lambda r: r.created_at or oldest, reverse=True)


async def _release_for_user(services: Services, request: RemediationRequest, dry: bool,
                            requeue: bool) -> RunOutcome:
    """A release by user: the latest unreleased run, or with `all` every one, newest first
    (so each value goes back through the runs to the one before the first)."""
    journal = services.journal
    runs = await _runs_of(journal, request.user)
    if not runs:
        raise ValidationError(f"no runs for user {request.user!r}: nothing to release")
    key = request.effective_request_id()
    if not request.all_runs and not dry:
        # A redelivery of the same request must not go on to release an older run too.
        for run in runs:
            row = await journal.get_item(run.run_id, RELEASE_ROW)
            if row and row.get("requestKey") == key:
                runs = [run]
                break
    candidates = [r for r in runs if _release_candidate(r)]
    if not candidates:
        if len(runs) == 1 and runs[0].state == "released":
            row = await journal.get_item(runs[0].run_id, RELEASE_ROW) or {}
            return RunOutcome(runs[0], items_from_record(row), already_done=True)
        raise ValidationError(f"no unreleased run for user {request.user!r}: {len(runs)} "
                              "run(s), each released, refused or a dry run")
    targets = candidates if request.all_runs else candidates[:1]
    outcomes: list[RunOutcome] = []
    refused: list[str] = []
    retry: list[str] = []
    busy: list[tuple[RunRecord, float]] = []
    for run in targets:
        try:
            outcome = await _release_held(services, run, request, dry)
        except ValidationError as exc:
            if not request.all_runs:
                raise
            refused.append(f"{run.run_id}: {exc}")
            continue
        except RetryableRunError as exc:
            if not request.all_runs:
                raise
            retry.append(str(exc))
            continue
        if isinstance(outcome, float):
            busy.append((run, outcome))
        else:
            outcomes.append(outcome)
    if busy:
        run = busy[0][0]
        # `latest` is pinned to the run chosen now; `all` is asked again (the runs released
        # meanwhile are no longer candidates then).
        again = request if request.all_runs else request.model_copy(
            update={"run_id": run.run_id})
        deferred = await _busy(services, run, again, max(s for _, s in busy), requeue)
        outcomes.append(deferred)
    if retry:
        raise RetryableRunError("; ".join(retry))
    if not outcomes:
        raise ValidationError("release refused for every run: " + "; ".join(refused))
    if refused:
        log.warning("release by user: refused runs: %s", "; ".join(refused))
    return RunOutcome(outcomes[0].run, outcomes[0].results,
                      already_done=all(o.already_done for o in outcomes),
                      others=outcomes[1:])


async def _release(services: Services, run: Any, request: RemediationRequest,
                   dry: bool) -> RunOutcome:
    journal = services.journal
    previous = await journal.get_item(run.run_id, RELEASE_ROW)
    if previous and previous.get("state") == "released":
        return RunOutcome(run, items_from_record(previous), already_done=True)
    if run.dry_run:
        raise ValidationError(f"run {run.run_id} was a dry run: it changed nothing")
    if run.state == "refused":
        raise ValidationError(f"run {run.run_id} was refused "
                              f"({run.reason[:300] or 'excluded account'}): it changed "
                              "nothing, and nothing is undone")
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
    conflict: RetryableRunError | None = None
    if not failed:
        declared = cannot_undo()
        lost = [k.split(":", 1)[1] for k in out if k.startswith("cannotUndo:")
                and declared.get(k.split(":", 1)[1], "").startswith("cannot")]
        try:
            run = await _mark_released(journal, run, "released after a false positive; "
                                       "cannot be undone: " + (", ".join(lost) or "nothing"))
        except RetryableRunError as exc:
            conflict, state = exc, "partial"
    await journal.put_item(run.run_id, RELEASE_ROW, state=state, at=now(), by=by[:400],
                           requestKey=request.effective_request_id(),
                           items=json.dumps([r.model_dump(mode="json") for r in out.values()],
                                            default=str)[:30_000])
    await journal.event(run.run_id, "released" if state == "released" else "release-partial",
                        f"release {state}: " + "; ".join(f"{k}: {r.status.value}"
                                                         for k, r in out.items())
                        + (f"; {conflict}" if conflict else ""),
                        {"items": [{"item": k, "status": r.status.value,
                                    "summary": r.summary[:300]} for k, r in out.items()]})
    if conflict is not None:
        raise conflict
    if not failed:
        await notify.announce_run(services, run, out, event="run.released",
                                  lines=[f"released by {by}"])
    if retry:
        raise RetryableRunError(f"release of {run.run_id}: {len(retry)} item(s) will retry")
    return RunOutcome(run, out)


async def _mark_released(journal: Journal, run: RunRecord, reason: str) -> RunRecord:
    """Write `released` only over the version of the run this release read. Another writer
    in between: re-read; if the run still stands where it stood, write over the new version;
    if it moved (a delivery changed its state), raise, and the release is redone."""
    for _ in range(3):
        seen = run.state
        run.state, run.reason = "released", reason
        if await journal.save_run_if(run):
            return run
        fresh = await journal.get_run(run.run_id)
        if fresh is None or fresh.state != seen:
            now_state = fresh.state if fresh else "gone"
            raise RetryableRunError(f"run {run.run_id} changed during the release (it was "
                                    f"{seen}, now {now_state}): the release is redone")
        log.info("run %s was written meanwhile; re-read, marking it released again",
                 run.run_id)
        run = fresh
    raise RetryableRunError(f"run {run.run_id} kept changing during the release: it is "
                            "redone")


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
