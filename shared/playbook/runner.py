"""The runner: one run per request id, steps in dependency waves, every outcome journaled.

- A redelivered message resumes: steps already finished are never repeated.
- Retryable failures (429, 5xx, timeouts after the retry budget) are recorded and then
  raised, so the queue redelivers; steps that do not depend on the failed one still run.
- Permanent failures (403, 404, 400) are recorded with the reason and the request-id; the
  run goes on with the steps that do not need the failed one.
- Dry run is the runner's choice: it calls each step's `plan` only, through read-only
  clients, and records what would have been done.
- One delivery at a time acts on a run: it holds the run's lease (RUN_LEASE_SECONDS,
  renewed in the background) and its steps stop when the delivery stops. Any other failure
  on the last allowed delivery marks the run `poisoned`, so it does not stay `running`.
- Lanes: from the remediation queue (lane `contain`) a run does its containment steps
  (password, sessions, sign-in) and queues the rest of its playbook on the clean-up queue
  (lane `cleanup`), where the same run carries on. Each queue trigger has its own
  concurrency, so in a storm every account is contained before clean-up takes the
  capacity. A direct call (CLI, tests; lane `all`) runs the whole playbook at once.
  Lane `overflow` (the overflow queue, shared.playbook.fairness) is the `contain` lane for
  requests a tenant over its share of an instance moved aside; its run says so.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.errors import Forbidden, NotFound, ResponderError, ServiceError, ValidationError
from shared.logs import run_context
from shared.models import FINISHED_STEP_STATES, RemediationRequest, StepResult, StepStatus
from shared.permissions import explain_forbidden
from shared.playbook.catalogue import check_policy
from shared.playbook.context import StepContext
from shared.playbook.registry import REGISTRY, Step, get_step
from shared.playbook.verify import verified
from shared.safety import approvals, notify
from shared.safety.exclusions import exclusion_reason
from shared.services import Services
from shared.state.clock import now
from shared.state.journal import RunRecord, StepWriter, safe_key
from shared.state.lease import Lease, LeaseLost
from shared.tenant.graph import directory

log = logging.getLogger("responder.runner")
RUN_LEASE_SECONDS = 60
"""How long a run's lease lasts unless renewed. The holder renews it every third of that
while it runs (`Lease.run_while_held`, up to the Functions timeout), so a crashed
instance's runs are free again within a minute, and a deferred delivery comes back then."""
RUN_LEASE_ROW = "lease"
"""The run lease's row in the run's partition (beside the run record and its steps)."""
TERMINAL_RUN_STATES = frozenset({"finished", "failed", "refused", "released", "poisoned"})
Lane = Literal["all", "contain", "cleanup", "overflow"]
CONTAINING_LANES = ("contain", "overflow")
STEP_LINGER: dict[str, float] = {"contain": 0.3, "overflow": 0.3, "all": 0.3,
                                 "cleanup": 1.0}
"""Seconds at most a finished step's record waits for the other running steps of the
delivery to share its write (shared.state.journal.StepWriter): the steps after it start
once its change is made, not once it is recorded, so only the delivery's end waits. The
password and the sessions then share one transaction, and the clean-up lane's dozen steps
a few."""


class RetryableRunError(ResponderError):
    """Some steps failed transiently; raised so the queue redelivers the message."""

    retryable = True


@dataclass
class RunOutcome:
    """What a run did, for the report, the CLI and the tests."""

    run: RunRecord
    results: dict[str, StepResult] = field(default_factory=dict)
    already_done: bool = False
    others: list[RunOutcome] = field(default_factory=list)
    """Further runs handled by the same request (a release of all of a user's runs)."""
    handed_off: bool = False
    """The run contained its account and its other steps go to the clean-up lane."""

    @property
    def failed_steps(self) -> list[str]:
        return [n for n, r in self.results.items() if r.status == StepStatus.FAILED]


def choose_steps(request: RemediationRequest, services: Services) -> tuple[str, list[str]]:
    """The playbook name and its steps, with collect_evidence always first."""
    policy = check_policy(services.policy)
    if request.actions:
        unknown = [a for a in request.actions if a not in REGISTRY]
        if unknown:
            raise ValidationError(f"unknown step names in actions: {unknown}")
        name, steps = "custom", list(dict.fromkeys(request.actions))
    else:
        name = request.playbook or policy.risk_level_playbooks[
            request.risk_level or policy.default_risk_level]
        if name not in policy.playbooks:
            raise ValidationError(f"unknown playbook {name!r}; the policy has "
                                  f"{sorted(policy.playbooks)}")
        steps = list(policy.playbooks[name])
    if "collect_evidence" in steps:
        steps.remove("collect_evidence")
    return name, ["collect_evidence", *steps]


def steps_not_enabled(services: Services, request: RemediationRequest) -> list[str]:
    """The request's explicit `actions` its tenant has not enabled: a tenant whose
    `features` name steps gets those only (its playbooks are cut down to them by
    shared.tenancy.tenant_policy); features naming sweeps only bound no step. Evidence is
    collected in every run, as for a playbook."""
    enabled = services.enabled_steps
    if not request.actions or not enabled or not enabled.intersection(REGISTRY):
        return []
    return [a for a in dict.fromkeys(request.actions)
            if a != "collect_evidence" and a not in enabled]


def run_lease(services: Services, run_id: str) -> Lease:
    """The run's lease, for one holder (a delivery, a release, the stalled-run sweep)."""
    return Lease(services.journal, run_id, RUN_LEASE_ROW, RUN_LEASE_SECONDS,
                 owner=f"{services.instance_id}:{uuid.uuid4().hex[:12]}")


def run_id_for(request: RemediationRequest, dry_run: bool) -> str:
    """Dry runs live under `dry-<id>`; a real request whose own id starts with `dry-` gets
    `run-` in front, so a dry run can never share (and block) a real run's record."""
    base = safe_key(request.effective_request_id())
    if dry_run:
        return f"dry-{base}"
    return f"run-{base}" if base.startswith("dry-") else base


async def run_request(
    services: Services,
    request: RemediationRequest,
    *,
    dequeue_count: int = 1,
    max_dequeue_count: int = 5,
    dry_run: bool | None = None,
    lane: Lane = "all",
) -> RunOutcome:
    """Run (or resume) the playbook for one request. Raises RetryableRunError to retry.

    `lane` "contain" stops after the containment steps and queues the rest for the
    clean-up lane; "cleanup" and "all" run every step not done yet."""
    dry = bool(request.dry_run or services.settings.dry_run or dry_run)
    run_id = run_id_for(request, dry)
    with run_context(run_id):
        if lane == "cleanup":
            await services.lanes.cleanup_turn()
        elif lane in CONTAINING_LANES:
            async with services.lanes.containing(services.settings.tenant_id.lower()):
                return await _run_request(services, request, run_id, dry, dequeue_count,
                                          max_dequeue_count, lane)
        return await _run_request(services, request, run_id, dry, dequeue_count,
                                  max_dequeue_count, lane)


async def _run_request(services: Services, request: RemediationRequest, run_id: str, dry: bool,
                       dequeue_count: int, max_dequeue_count: int,
                       lane: Lane = "all") -> RunOutcome:
    journal = services.journal
    playbook, steps = choose_steps(request, services)
    fresh = RunRecord(run_id=run_id, user=request.user, playbook=playbook, steps=steps,
                      request=request.model_dump(mode="json", by_alias=True,
                                                 exclude_none=True),
                      dry_run=dry)
    started = ("run-started", f"run for {request.user}",
               {"playbook": playbook, "steps": steps, "dryRun": dry,
                "source": request.source, "reason": request.reason})
    if lane == "overflow":
        # The move is counted in the event that starts the run (no write of its own); a
        # moved duplicate of a run that exists already starts nothing and is not counted.
        started = (started[0], f"{started[1]} (moved to the overflow lane: its tenant "
                   "held its share of the instance)", {**started[2], "moved": True})
    # One delivery at a time acts on a run: the run's lease row, owned by this delivery.
    # A first delivery from the remediation queue is almost always a new run: it creates
    # the run and takes the lease in one transaction (one write), and reads nothing.
    lease = run_lease(services, run_id)
    created = False
    if lane != "cleanup" and dequeue_count <= 1:
        created = await journal.create_run(fresh, started, lease=lease)
    run = fresh
    known: dict[str, StepResult] | None = {} if created else None
    try:
        try:
            busy = 0.0 if lease.etag is not None else await lease.try_acquire()
        except Exception as exc:  # storage refused: as any other failure of this delivery
            if not created:
                run = await _recorded_run(services, run_id, fresh)
            await _give_up_if_last(services, run, exc, dequeue_count, max_dequeue_count)
            raise
        if busy:
            if not created:
                run = await _recorded_run(services, run_id, fresh)
            return await _defer(services, run, request, busy, lane)
        if not created:
            # Read under the lease (one query, the record and its steps): whatever another
            # delivery did before it gave the lease back is in, so no finished step repeats.
            found, known = await journal.run_and_steps(run_id)
            if found is not None and found.state in TERMINAL_RUN_STATES:
                return RunOutcome(found, known, already_done=True)
            if found is None:  # the lease is held already: nothing rides along
                if await journal.create_run(fresh, started):
                    known = {}
                else:  # created meanwhile by a delivery that then found the run busy
                    found, known = await journal.run_and_steps(run_id)
            run = found or fresh
        try:
            outcome = await lease.run_while_held(_claimed_run(
                services, request, run, playbook, steps, dry, dequeue_count,
                max_dequeue_count, lane, known, lease))
        except LeaseLost as exc:
            # This delivery stalled past its lease, or could not renew it (storage down):
            # it stops. Another holder may carry on, or nobody: the request goes back on
            # the queue for when the lease has run out (there it finds the run finished,
            # busy, or free to resume), so the run never stays `running` without a message.
            log.warning("run lease lost, delivery stopped: %s", exc)
            await _defer(services, run, request, RUN_LEASE_SECONDS, lane)
            await journal.event(run_id, "lease-lost", f"this delivery stopped: {exc}")
            return RunOutcome(run, await journal.step_results(run_id), already_done=True)
        except (RetryableRunError, ValidationError):
            raise  # recorded by _save_retry; refused by the worker
        except Exception as exc:
            await _give_up_if_last(services, run, exc, dequeue_count, max_dequeue_count)
            raise
    finally:
        # Also when the delivery is cancelled mid-claim (a host shutting down): a lease left
        # behind would hold the run's redelivery back for RUN_LEASE_SECONDS.
        try:
            await asyncio.shield(lease.release())
        except Exception as exc:  # the lease then lapses on its own
            log.warning("could not release the run lease: %s", type(exc).__name__)
    if outcome.handed_off:
        # Queued only now that the lease is given back, so the clean-up delivery does not
        # find the run busy. If this fails, the delivery fails and is retried: its
        # redelivery finds containment done and runs the rest itself.
        try:
            await services.storage.enqueue(services.settings.cleanup_queue,
                                           request.to_message())
        except Exception as exc:
            await _give_up_if_last(services, run, exc, dequeue_count, max_dequeue_count)
            raise
    return outcome


async def _recorded_run(services: Services, run_id: str, fresh: RunRecord) -> RunRecord:
    """The run as recorded, for a delivery that ends before reading it; `fresh` when it
    cannot be read (storage down) or does not exist."""
    try:
        return await services.journal.get_run(run_id) or fresh
    except Exception:  # the caller's own failure is the one to report
        return fresh


async def _give_up_if_last(services: Services, run: RunRecord, exc: Exception,
                           dequeue_count: int, max_dequeue_count: int) -> None:
    """An unexpected failure (Table storage down, a bug) ends the delivery; on the last
    allowed one the run is marked `poisoned` with the reason, as the host poisons the
    message. Best effort: when storage is down too, the stalled-run sweep's cap ends it."""
    what = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    try:
        current = await services.journal.get_run(run.run_id)
        if current is not None and current.state in TERMINAL_RUN_STATES:
            return  # it did finish; only a later write failed
        if current is not None:
            run = _recorded_with(current, run)
        if dequeue_count >= max_dequeue_count:
            run.state = "poisoned"
            run.reason = (f"gave up after {dequeue_count} deliveries (maxDequeueCount): "
                          f"{what}; the message moves to the poison queue")
            run.finished_at = now()
        else:
            run.reason = f"delivery {dequeue_count} failed, will retry: {what}"
        await services.journal.save_run(run, events=[
            (run.state if run.state == "poisoned" else "retry", run.reason, {})])
    except Exception as again:
        log.warning("could not record the failed delivery: %s", type(again).__name__)


def _recorded_with(current: RunRecord, run: RunRecord) -> RunRecord:
    """The record as stored, with what this delivery learned on top. A delivery that could
    not read the record holds a stand-in without the user, the evidence or the times, and
    a save merges every field: saving the stand-in would blank them in the record."""
    current.user_id = run.user_id or current.user_id
    current.upn = run.upn or current.upn
    current.evidence_blob = run.evidence_blob or current.evidence_blob
    current.attempts = max(run.attempts, current.attempts)
    current.indexed = sorted({*current.indexed, *run.indexed})
    current.approval_asked = run.approval_asked or current.approval_asked
    return current


async def _defer(services: Services, run: RunRecord, request: RemediationRequest,
                 busy: float, lane: Lane = "all") -> RunOutcome:
    """Another delivery holds this run: put the request back (on its lane's queue) for when
    its lease ends (instead of failing, which would spend the message's delivery count)."""
    delay = int(min(busy, RUN_LEASE_SECONDS)) + 1
    queue = {"cleanup": services.settings.cleanup_queue,
             "overflow": services.settings.overflow_queue}.get(
                 lane, services.settings.remediation_queue)
    await services.storage.enqueue(queue, request.to_message(), visibility_timeout=delay)
    await services.journal.event(run.run_id, "deferred", "another delivery is running this "
                                 f"request; retried in {delay} s")
    return RunOutcome(run, await services.journal.step_results(run.run_id), already_done=True)


async def _claimed_run(services: Services, request: RemediationRequest, run: RunRecord,
                       playbook: str, steps: list[str], dry: bool, dequeue_count: int,
                       max_dequeue_count: int, lane: Lane = "all",
                       known: dict[str, StepResult] | None = None,
                       lease: Lease | None = None) -> RunOutcome:
    """The run, under its lease. `known`: its steps as read with the record (none for a
    run this delivery created). The last save of the delivery gives `lease` back in the
    same transaction."""
    journal = services.journal
    run_id = run.run_id
    run.attempts += 1

    not_enabled = steps_not_enabled(services, request)
    if not_enabled:  # refused before anything is read or changed in the tenant
        why = (f"refused: {', '.join(not_enabled)} not enabled for tenant "
               f"{services.settings.tenant_id} (its features: "
               f"{', '.join(sorted(services.enabled_steps or ()))}); nothing was done")
        await journal.event(run_id, "refused", why, {"notEnabled": not_enabled})
        return await _finish(services, run, "refused", why, {}, lease)

    try:
        user = await directory.resolve_user(services.graph, request.user)
    except NotFound:
        return await _finish(services, run, "failed", "unknown user: no user with that "
                             "object id, UPN or mail in this tenant", {}, lease)
    except ServiceError as exc:
        if exc.retryable:
            await _save_retry(services, run, exc, dequeue_count, max_dequeue_count)
            raise RetryableRunError(str(exc)) from exc
        return await _finish(services, run, "failed", f"could not read the user: {exc}", {},
                             lease)
    run.user_id, run.upn = user.id, user.upn

    try:
        refusal = await exclusion_reason(services, user.upn, user.mail, user_id=user.id)
    except ServiceError as exc:
        if exc.retryable:
            await _save_retry(services, run, exc, dequeue_count, max_dequeue_count)
            raise RetryableRunError(str(exc)) from exc
        # Fail closed: an account whose exclusion cannot be checked is never touched.
        refusal = f"exclusions could not be verified ({exc}): not touched"
    if refusal:
        await journal.event(run_id, "refused", refusal)
        return await _finish(services, run, "refused", refusal, {}, lease)

    # A run this delivery created has no steps yet; the run record itself is saved with
    # the next change of state (hand-off, finish, retry), which also indexes the user.
    prior = known if known is not None else await journal.step_results(run_id)
    done = {n: r for n, r in prior.items() if r.status in FINISHED_STEP_STATES
            or (dry and r.status == StepStatus.PLANNED)}
    ctx = StepContext(services=services, run=run, request=request, user=user, dry_run=dry,
                      detected_at=request.detected_at or run.created_at.astimezone(UTC),
                      results=dict(done), planned_steps=tuple(steps),
                      writer=StepWriter(journal, run_id, linger=STEP_LINGER[lane]))

    # Approval gate (shared.safety.approvals): a privileged user's disruptive steps wait; the
    # steps that need them to succeed, and the closing notify, wait with them.
    try:
        disruptive = [s for s in steps if get_step(s).disruptive]
        gate = await approvals.gate(services, run, user, disruptive, done, dry)
    except ServiceError as exc:  # only retryable errors reach here
        await _save_retry(services, run, exc, dequeue_count, max_dequeue_count)
        raise RetryableRunError(str(exc)) from exc
    for name, why in gate.skipped.items():
        skipped = StepResult(step=name, status=StepStatus.SKIPPED, summary=why,
                             finished_at=now())
        ctx.results[name] = done[name] = skipped
        await journal.record_step(run_id, skipped, run.attempts)
    waiting = dict(gate.held)
    if waiting:
        for name in steps:
            if name in done or name in waiting:
                continue
            needs = [r for r in get_step(name).requires_success if r in waiting]
            if needs or name == "notify":
                waiting[name] = f"waits for {', '.join(needs) or 'the approval decision'}"

    acting = [s for s in steps if s not in waiting]
    later = _cleanup_steps(acting, done) if lane in CONTAINING_LANES else []
    retry_errors = await _run_waves(ctx, [s for s in acting if s not in later], done,
                                    run.attempts)
    if retry_errors:
        await _save_retry(services, run, retry_errors[0], dequeue_count, max_dequeue_count)
        raise RetryableRunError("; ".join(str(e) for e in retry_errors))
    if later:
        return await _hand_off(services, run, ctx, later, lease)
    if waiting:
        return await _wait_for_approval(services, run, ctx, steps, waiting, lease)
    failed = [n for n, r in ctx.results.items() if r.status == StepStatus.FAILED]
    state = "failed" if failed else "finished"
    reason = f"failed steps: {', '.join(failed)}" if failed else ""
    if gate.approval is not None and gate.approval.state == "expired" and gate.skipped:
        state = "failed"
        reason = "; ".join(filter(None, [reason, "approval expired (escalated): not done: "
                                          + ", ".join(gate.skipped)]))
    return await _finish(services, run, state, reason, ctx.results, lease)


def _cleanup_steps(steps: list[str], done: dict[str, StepResult]) -> list[str]:
    """The steps the contain lane leaves for the clean-up lane: all but the containment
    steps, when some containment step is still to do (otherwise nothing is split: a run
    with nothing to contain, or resumed after containment, goes on in this delivery)."""
    pending = [s for s in steps if s not in done]
    if not any(get_step(s).containment for s in pending):
        return []
    return [s for s in pending if not get_step(s).containment]


async def _hand_off(services: Services, run: RunRecord, ctx: StepContext, later: list[str],
                    lease: Lease | None = None) -> RunOutcome:
    """Containment is done: record it (giving the run lease back in the same write); the
    caller queues the run's other steps for the clean-up lane once the lease is gone, so
    the clean-up delivery does not find the run busy. The run stays `running`."""
    contained = [n for n, r in ctx.results.items() if get_step(n).containment]
    run.reason = f"contained ({', '.join(contained)}); clean-up queued: {', '.join(later)}"
    await services.journal.save_run(run, events=[("contained", run.reason, {})],
                                    release=lease)
    return RunOutcome(run, ctx.results, handed_off=True)


async def _wait_for_approval(services: Services, run: RunRecord, ctx: StepContext,
                             steps: list[str], waiting: dict[str, str],
                             lease: Lease | None = None) -> RunOutcome:
    for name in steps:
        if name in waiting:
            result = StepResult(step=name, status=StepStatus.WAITING_APPROVAL,
                                summary=waiting[name], finished_at=now())
            ctx.results[name] = result
            await services.journal.record_step(run.run_id, result, run.attempts)
    run.state = "waiting_approval"
    run.reason = f"waiting for approval: {', '.join(waiting)}"
    await services.journal.save_run(run, events=[("run-waiting_approval", run.reason, {})],
                                    release=lease)
    return RunOutcome(run, ctx.results)


async def _run_waves(ctx: StepContext, steps: list[str], done: dict[str, StepResult],
                     attempt: int) -> list[ServiceError]:
    """Each step starts as soon as the steps it comes `after` (in this run) have made their
    change (not once they are read back and recorded), not when a whole wave has: sessions
    are revoked right after the password reset, even while the evidence still waits on
    slow reads. Evidence counts as made once recorded (a snapshot taken after a change
    would not be evidence). A step after one that must be retried is
    left for the redelivery, as is anything in a dependency cycle."""
    pending = [s for s in steps if s not in done]
    deps = {s: [a for a in get_step(s).after if a in pending and a != s] for s in pending}
    order: list[str] = []
    while len(order) < len(pending):
        ready = [s for s in pending if s not in order and all(a in order for a in deps[s])]
        if not ready:
            break  # a cycle: those steps never start
        order.extend(ready)
    tasks: dict[str, asyncio.Task[ServiceError | bool | None]] = {}
    loop = asyncio.get_running_loop()
    ctx.applied = {name: loop.create_future() for name in order}

    async def one(name: str) -> ServiceError | bool | None:
        outcome: ServiceError | bool | None = True
        try:
            for dep in deps[name]:
                if await ctx.applied[dep]:
                    return True  # blocked: the dependency must be retried first
            outcome = await _execute(ctx, name, attempt)
            return outcome
        finally:
            ctx.mark_applied(name, blocked=outcome is not None)

    # Steps stop when the run stops: a failure that escapes one step (storage down) or the
    # delivery's cancellation (lease lost, host shutdown) cancels and awaits the others
    # before the lease is given back; nothing acts on after the delivery ended.
    for name in order:
        tasks[name] = asyncio.ensure_future(one(name))
    try:
        if tasks:
            await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks.values():
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        if ctx.writer is not None:  # the rows already handed over are stored first
            await ctx.writer.drain()
    outcomes = [task.result() for task in tasks.values()]
    return [err for err in outcomes if isinstance(err, ServiceError)]


async def _execute(ctx: StepContext, name: str, attempt: int) -> ServiceError | None:
    """Run one step; journal its result. Returns the error when it should be retried."""
    step = get_step(name)
    started = now()
    if ctx.writer is not None:
        ctx.writer.step_started()
    retry: ServiceError | None = None
    try:
        unmet = [r for r in step.requires_success if ctx.succeeded(r) is False]
        if unmet:
            result = StepResult(step=name, status=StepStatus.SKIPPED,
                                summary=f"not done because {', '.join(unmet)} did not succeed")
        else:
            result = await _plan_and_apply(ctx, step)
    except ServiceError as exc:
        status = StepStatus.FAILED
        summary = str(exc)
        if exc.retryable:
            retry = exc
            summary = f"transient failure, will retry: {exc}"
        elif isinstance(exc, Forbidden):  # name the permission the step declares for it
            summary = f"{exc}; {explain_forbidden(f'step:{name}', exc)}"
        result = StepResult(step=name, status=status, summary=summary, error_code=exc.code,
                            request_id=exc.request_id)
    except ResponderError as exc:
        result = StepResult(step=name, status=StepStatus.FAILED, summary=str(exc),
                            error_code=type(exc).__name__)
    except Exception as exc:  # a bug must not stop independent steps; record it plainly
        if transient_storage_error(exc):
            # Storage (the journal, evidence blobs) failed for a moment: not the step's
            # fault and not permanent. The delivery fails as for any storage failure, and
            # the redelivery resumes; recording "failed" would end the run for nothing.
            raise
        log.exception("step %s crashed", name, extra={"run_id": ctx.run.run_id})
        result = StepResult(step=name, status=StepStatus.FAILED,
                            summary=f"internal error: {type(exc).__name__}",
                            error_code="InternalError")
    result.started_at = started
    result.finished_at = now()
    ctx.results[name] = result
    await ctx.record_step(result, attempt)
    log.info("step %s: %s", name, result.status.value,
             extra={"run_id": ctx.run.run_id, "step": name, "status": result.status.value})
    return retry


def transient_storage_error(exc: BaseException) -> bool:
    """An Azure Storage failure worth a redelivery: the connection dropped or reset, or the
    service answered 408, 429 or 5xx after the SDK's own retries."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code is None or exc.status_code in (408, 429) \
            or exc.status_code >= 500
    return False


async def _plan_and_apply(ctx: StepContext, step: Step) -> StepResult:
    if step.name == "collect_evidence":
        # Evidence is read-only: it runs in dry runs too, so the report has the facts.
        return await step.apply(ctx, await step.plan(ctx))
    plan = await step.plan(ctx)
    if plan.skip:
        return StepResult(step=step.name, status=StepStatus.SKIPPED, summary=plan.skip)
    if plan.nothing is not None and not plan.actions:
        # What the step found is kept with the outcome (the run's evidence), also here.
        return StepResult(step=step.name, status=StepStatus.NOTHING_TO_DO,
                          summary=plan.nothing, data=dict(plan.data))
    if ctx.dry_run:
        return StepResult(step=step.name, status=StepStatus.PLANNED,
                          summary="; ".join(plan.actions),
                          data={**plan.data, "wouldDo": plan.actions})
    result = await step.apply(ctx, plan)
    # The change is made: the steps after this one need not wait for its read-back and
    # record (revoking sessions right after the new password is set). The result is in
    # ctx.results already, for a later step's `requires_success`.
    ctx.results[step.name] = result
    ctx.mark_applied(step.name)
    return await verified(ctx, step, result)


async def _save_retry(services: Services, run: RunRecord, exc: Exception, dequeue_count: int,
                      max_dequeue_count: int) -> None:
    if dequeue_count >= max_dequeue_count:
        run.state = "poisoned"
        run.reason = (f"gave up after {dequeue_count} deliveries (maxDequeueCount): {exc}; "
                      "the message moves to the poison queue")
        run.finished_at = now()
    else:
        run.reason = f"delivery {dequeue_count} hit a transient failure, will retry: {exc}"
    await services.journal.save_run(run, events=[
        ("retry" if run.state != "poisoned" else "poisoned", run.reason, {})])


async def _finish(services: Services, run: RunRecord, state: str, reason: str,
                  results: dict[str, StepResult], lease: Lease | None = None) -> RunOutcome:
    """The run's last save. It gives the run lease back in the same write, unless the
    failure must still be announced (the delivery then acts after it)."""
    run.state = state
    run.reason = reason
    run.finished_at = now()
    notified = results.get("notify")
    announce = state == "failed" and not run.dry_run and (
        notified is None or notified.status not in (StepStatus.DONE, StepStatus.PARTIAL))
    await services.journal.save_run(run, events=[(f"run-{state}", reason or f"run {state}",
                                                  {})],
                                    release=None if announce else lease)
    if announce:
        # The playbook's notify step did not announce this run: a failure is still told.
        await notify.announce_run(services, run, results)
    return RunOutcome(run, results)


def started_at(run: RunRecord) -> datetime:
    return run.created_at
