"""Re-infection watch: an attacker who kept a foothold (a token the revocation has not
reached yet, an app consent, a mailbox delegate, a second account) puts back what the
containment removed. For `sweeps.reinfection.days` after a containment, each contained user
is checked again for new suspicious inbox rules, forwarding, MFA methods, app consents and
mailbox delegates.

The check is the playbook's own judgement: the `plan` of each watch step
(`sweeps.reinfection.steps`) that the containment run itself ran runs again for the user
through read-only clients, exactly as a dry run would. That run left the step with nothing
to do, so a plan with actions now means something reappeared (a watch step the containment
did not run would only find what was never cleaned, which is not a re-infection), and the
user gets a new run (reason "reinfection: <what reappeared>") through the same decision and
deduplication as every other sweep (`shared.sweeps.submit`). A watch step that is not
registered (not shipped in this version) is skipped with a note.

Contained users are the finished, real (not dry) runs of the window that are not released,
one per user (the latest), read from the journal's run list and per-user index. The pass is
bounded (`usersPerRun`) and resumes where it stopped (the checkpoint); one user's failure
is recorded and the pass goes on.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import NotFound, ResponderError
from shared.models import RemediationRequest, RiskSignal
from shared.playbook import catalogue
from shared.playbook.context import StepContext
from shared.playbook.registry import REGISTRY, get_step
from shared.playbook.runner import transient_storage_error
from shared.policy import ReinfectionSweepPolicy
from shared.state.clock import now
from shared.state.journal import RunRecord
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register
from shared.sweeps.submit import excluded, recent_run, record, submit_signals
from shared.tenant.graph import directory
from shared.tenant.graph.directory import PERM_USER_READ

log = logging.getLogger("responder.sweeps.reinfection")
SOURCE = "sweep.reinfection"
REPORT_ONLY_PREFIXES = ("report ", "leave ")
"""Plan lines that only report (an undetermined method, one that cannot be removed): what
the containment already saw and left, not something that came back."""


def _rights(names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The Graph and Exchange rights and directory roles of the watch steps registered
    now: their plans read with them (the sweep's clients are read-only views, so nothing is
    written), plus User.Read.All to resolve each watched user."""
    classes = [REGISTRY[n] for n in names if n in REGISTRY]
    graph = dict.fromkeys([PERM_USER_READ, *(p for c in classes for p in c.graph_permissions)])
    exchange = dict.fromkeys(p for c in classes for p in c.exchange_permissions)
    roles = dict.fromkeys(r for c in classes for r in c.directory_roles)
    return tuple(graph), tuple(exchange), tuple(roles)


SHIPPED_STEPS = catalogue.STEP_NAMES
"""Importing the catalogue registers the shipped steps before their rights are read."""
_GRAPH, _EXCHANGE, _ROLES = _rights(ReinfectionSweepPolicy().steps)


def _stamp(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def reappeared(plan_actions: list[str]) -> list[str]:
    """The plan lines that would change something (report-only lines left out)."""
    return [a for a in plan_actions if not a.lower().startswith(REPORT_ONLY_PREFIXES)]


@register
class ReinfectionSweep(Sweep):
    """An attacker with a foothold puts rules, forwarding and MFA methods back after a
    containment: re-check recently contained users and open a new run when they do."""

    name = "reinfection"
    description = ("recently contained users re-checked (read-only) for new rules, "
                   "forwarding, MFA methods, consents and delegates; a new run when found")
    schedule_setting = "RESPONDER_SWEEP_REINFECTION_SCHEDULE"
    default_schedule = "0 40 * * * *"
    graph_permissions = _GRAPH
    exchange_permissions = _EXCHANGE
    directory_roles = _ROLES
    why = ("Re-check contained users with the plans of the watch steps (read-only): the "
           "rights those steps read with, and User.Read.All to resolve the user.")

    def budget(self, services: Any) -> int:
        return int(services.policy.sweeps.reinfection.users_per_run)

    async def run(self, ctx: SweepContext) -> None:
        cfg = ctx.policy.sweeps.reinfection
        watch = [n for n in cfg.steps if n in REGISTRY]
        missing = [n for n in cfg.steps if n not in REGISTRY]
        if missing:
            ctx.result.note(f"watch step(s) not registered in this version, skipped: "
                            f"{', '.join(missing)}")
        horizon = now() - timedelta(days=cfg.days)
        latest: dict[str, RunRecord] = {}
        for run in await ctx.services.journal.list_runs(limit=5000, state="finished"):
            finished = _stamp(run.finished_at)
            if run.dry_run or finished is None or finished < horizon or not _acted(run):
                continue
            key = (run.user_id or run.upn or run.user).lower()
            held = latest.get(key)
            if held is None or (_stamp(held.finished_at) or finished) < finished:
                latest[key] = run
        ctx.result.note(f"{len(latest)} user(s) contained in the last {cfg.days:g} day(s); "
                        f"watching with {', '.join(watch) or 'no step'}")
        if not watch:
            return

        async def handle(key: str, run: RunRecord) -> None:
            who = run.upn or run.user
            try:
                await self._check(ctx, run, watch)
            except ResponderError as exc:  # one user's failure never stops the others
                ctx.result.errors.append(f"{who}: {type(exc).__name__}: {exc}")
            except Exception as exc:
                if transient_storage_error(exc):
                    raise  # storage: stop here; the checkpoint resumes at this user
                log.warning("reinfection check of %s crashed", who, exc_info=True)
                ctx.result.errors.append(f"{who}: internal error: {type(exc).__name__}")

        await ctx.walk(sorted(latest.items()), handle)

    async def _check(self, ctx: SweepContext, run: RunRecord, watch: list[str]) -> None:
        result = ctx.result
        services = ctx.services
        who = run.upn or run.user
        base = {"kind": "reinfection", "user": who, "userId": run.user_id,
                "runId": run.run_id}
        fresh = await services.journal.get_run(run.run_id)  # the list may be stale
        if fresh is None or fresh.state != "finished":
            result.skipped.append({**base, "why": "the containment run is now "
                                   f"{fresh.state if fresh else 'gone'}"})
            return
        if await _released_since(ctx, fresh):
            result.skipped.append({**base, "why": "released after the containment"})
            return
        why_not = await excluded(services, run.upn, run.user, user_id=run.user_id)
        if why_not:
            result.skipped.append({**base, "why": why_not})
            return
        steps = [n for n in watch if n in fresh.steps]
        if not steps:
            result.skipped.append({**base, "why": "the containment ran none of the watch "
                                   "steps: nothing it cleaned to watch"})
            return
        going = await recent_run(services, run.user_id, run.upn, hours=0)
        if going:
            result.skipped.append({**base, "why": f"run {going.get('RowKey')} is "
                                   f"{going.get('state')}"})
            return
        try:
            user = await directory.resolve_user(ctx.graph, run.user_id or run.upn or run.user)
        except NotFound:
            result.skipped.append({**base, "why": "the user no longer exists"})
            return
        try:
            request = RemediationRequest.model_validate(fresh.request)
        except ValueError:
            request = RemediationRequest(user=user.id)
        wctx = StepContext(services=services, run=fresh, request=request, user=user,
                           dry_run=True,
                           detected_at=request.detected_at or fresh.created_at.astimezone(UTC),
                           planned_steps=tuple(steps))
        lines: list[str] = []
        for name in steps:
            try:
                plan = await get_step(name).plan(wctx)
            except ResponderError as exc:
                result.notes.append(f"{who}: {name} not checked: {type(exc).__name__}: {exc}")
                continue
            if plan.skip or not plan.actions:
                continue
            lines += [f"{name}: {line}" for line in reappeared(plan.actions)]
        if not lines:
            return
        what = "; ".join(lines)
        finding = {**base, "userId": user.id, "user": user.upn, "why": what}
        result.found.append(finding)
        cfg = ctx.policy.sweeps.reinfection
        if cfg.mode == "report":
            result.skipped.append({**finding, "why": f"report only (policy "
                                   f"sweeps.reinfection.mode): {what}"})
            return
        digest = hashlib.sha256("|".join(sorted(lines)).encode()).hexdigest()[:16]
        signal = RiskSignal(user_id=user.id, upn=user.upn, risk_level=cfg.risk_level,
                            risk_event_type=f"reinfection: {what}"[:1000], source=SOURCE,
                            detection_id=f"reinfection:{user.id}:{digest}", detected_at=now(),
                            raw={})
        (sub,) = await submit_signals(services, [signal], dry_run=ctx.dry_run)
        record(result, finding, sub)


def _acted(run: RunRecord) -> bool:
    """A run whose playbook changes the tenant (not only evidence and a notification)."""
    return any(s in REGISTRY and not REGISTRY[s].changes_nothing and s != "collect_evidence"
               for s in run.steps)


async def _released_since(ctx: SweepContext, run: RunRecord) -> bool:
    """Whether any of the user's runs was released after this containment finished (a
    release says the user was a false positive: nothing to watch)."""
    finished = _stamp(run.finished_at)
    for key in dict.fromkeys(k.lower() for k in (run.user_id, run.upn, run.user) if k):
        for row in await ctx.services.journal.runs_for_user(key):
            if row.get("state") != "released":
                continue
            stamp = _stamp(row.get("updatedAt"))
            if finished is None or stamp is None or stamp >= finished:
                return True
    return False
