"""The runner's gate: which steps wait for a person.

- For a privileged user, steps marked disruptive that are not in
  `policy.privileged.alwaysSafeSteps` wait.
- For EVERY user, the run's steps named in `policy.approvalRequiredSteps` wait (removing
  admin roles, cutting mail protocols or wiping devices is a decision, not a reflex),
  whether or not they are marked disruptive and even when the privileged gate is off.

The rest of the run goes ahead at once (revoking sessions cannot make things worse). The
first time a run needs an approval it is recorded and announced with approve/deny links.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.safety import notify
from shared.safety.approvals import config, store
from shared.safety.approvals.roles import privileged_roles
from shared.safety.approvals.store import Approval
from shared.safety.approvals.tokens import DECISIONS, links, nonce_digest
from shared.state import clock

if TYPE_CHECKING:
    from shared.models import StepResult
    from shared.services import Services
    from shared.state.journal import RunRecord
    from shared.tenant.graph.directory import DirectoryUser


@dataclass
class Gate:
    """What the runner must hold back, and what it must record as skipped."""

    held: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    approval: Approval | None = None


def candidates(services: Services, disruptive: list[str], done: dict[str, StepResult]) \
        -> list[str]:
    """The run's disruptive steps (as the step registry declares them) that are not done
    and that the policy does not call always safe."""
    safe = set(services.policy.privileged.always_safe_steps)
    return [s for s in disruptive if s not in done and s not in safe]


def always_held(services: Services, steps: list[str], done: dict[str, StepResult]) \
        -> list[str]:
    """The run's steps (not done) that the policy holds for approval for every user
    (`approvalRequiredSteps`); listed there, a step waits even if `alwaysSafeSteps` names
    it."""
    required = set(services.policy.approval_required_steps)
    return [s for s in dict.fromkeys(steps) if s in required and s not in done]


async def gate(services: Services, run: RunRecord, user: DirectoryUser, disruptive: list[str],
               done: dict[str, StepResult], dry_run: bool) -> Gate:
    """Decide what waits. Opens (and announces) the approval the first time it is needed.

    The run's own step list (`run.steps`) is searched for the steps held for every user,
    so a step there waits whether or not the registry marks it disruptive."""
    if dry_run:
        return Gate()
    privileged_on = services.policy.privileged.require_approval
    by_role = candidates(services, disruptive, done) if privileged_on else []
    forced = always_held(services, [*run.steps, *disruptive], done)
    if not by_role and not forced:
        return Gate()
    # The approval row is read only for a run that asked for one (the run record says so):
    # most runs never do, and a storm then costs no read per delivery. A run whose record
    # missed the flag (a crash right after asking) finds its row again through
    # open_approval, which returns the approval that exists.
    approval = (await store.get_approval(services, run.run_id)
                if run.approval_asked else None)
    if approval is None:
        roles = await privileged_roles(services, user.id) if by_role else []
        waiting = list(dict.fromkeys([*(by_role if roles else []), *forced]))
        if not waiting:
            return Gate()
        approval = await open_approval(services, run, user, waiting, roles)
        run.approval_asked = True
    # An approval opened for a privileged user covers the disruptive steps too; one opened
    # only because of approvalRequiredSteps covers those steps alone.
    waiting = list(dict.fromkeys([*by_role, *forced])) if approval.roles else forced
    if not waiting:
        return Gate(approval=approval)
    if approval.state == "approved":
        return Gate(approval=approval)
    if approval.state == "pending":
        who = (f"privileged user: {', '.join(approval.roles)}" if approval.roles
               else "the policy holds these steps for approval for every user")
        why = f"waiting for approval ({who}); expires {approval.expires_at.isoformat()}"
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


async def open_approval(services: Services, run: RunRecord, user: DirectoryUser,
                        steps: list[str], roles: list[str]) -> Approval:
    """Record a pending approval and announce it with approve/deny links (once per run)."""
    created = clock.now()
    expires = created + timedelta(hours=services.policy.privileged.approval_hours)
    nonces = {d: secrets.token_urlsafe(24) for d in DECISIONS}
    # The tenant the worker routed the run to (by id), absent for the default tenant's runs:
    # kept with the approval (the resume names it) and signed into the links.
    tenant = str(run.request.get("tenant") or "")
    values = {
        "runId": run.run_id, "state": "pending", "user": run.user, "upn": user.upn,
        "userId": user.id, "steps": json.dumps(steps), "roles": json.dumps(roles),
        "createdAt": created, "expiresAt": expires,
        **{f"{d}Nonce": nonce_digest(n) for d, n in nonces.items()},
        **({"tenant": tenant} if tenant else {}),
    }
    if not await store.create(services, run.run_id, values):
        existing = await store.get_approval(services, run.run_id)  # a concurrent delivery
        assert existing is not None
        return existing
    reason = (f"privileged user ({', '.join(roles)})" if roles
              else "steps the policy holds for approval for every user")
    await services.journal.event(run.run_id, "approval-requested",
                                 f"{reason}: {', '.join(steps)} "
                                 f"wait for approval until {expires.isoformat()}",
                                 {"steps": steps, "roles": roles,
                                  "expiresAt": expires.isoformat()})
    approval_links = links(services, run.run_id, nonces, expires, tenant or None)
    lines = [f"{user.upn} holds privileged role(s): {', '.join(roles)}." if roles else
             f"The policy holds these steps for approval for every user "
             f"(approvalRequiredSteps); {user.upn} holds no privileged role.",
             f"Waiting for approval: {', '.join(steps)}.",
             "Steps that are always safe (for example revoking sessions) go ahead now.",
             f"The links expire at {expires.isoformat()}; then the request is escalated."]
    if approval_links is None:
        lines.append(f"No approval links: the app setting {config.SECRET_SETTING} is not set "
                     f"(or shorter than {config.MIN_SECRET_CHARS} characters). The request "
                     "will expire and be escalated.")
    await notify.send(services, notify.Notification(
        event="approval.needed", title=f"approval needed to contain {user.upn}",
        lines=lines, run_id=run.run_id, links=approval_links or [],
        facts={"run": run.run_id, "user": f"{user.upn} ({user.id})",
               "expires": expires.isoformat()},
        data={"steps": steps, "roles": roles, "expiresAt": expires.isoformat()}))
    return Approval.from_row(values, None)
