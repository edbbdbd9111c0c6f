"""Restricted-senders reconciliation. Exchange blocks an account that sends spam, which is
usually an attacker using it; the block stays until someone removes it.

- blocked, and the account has a finished containment run: release it (policy
  `unblock.automatic`) or file the same pending request the `request_unblock` step files;
- blocked, and no run at all: a blocked sender is itself a compromise signal, so it becomes
  a remediation request through intake's decision and deduplication;
- blocked, with a run still going or one that did not finish cleanly: reported;
- blocked again after the responder released it: the account is still compromised. It is
  never released automatically twice (releases are limited per account; see
  shared.playbook.steps.followup): it goes back to intake as a high-risk signal, the SOC is
  told at once, and an administrator decides about any further release.
"""

from __future__ import annotations

from typing import Any

from shared.errors import BadRequest, NotFound
from shared.models import RiskSignal
from shared.playbook.steps.followup import (
    AGAIN_NOTE,
    CONTAINMENT,
    LIMIT_NOTE,
    PENDING_UNBLOCKS,
    classify,
    hold_reason,
    record_reblock,
    record_refusal,
    record_release,
    refusal_note,
    release_record,
)
from shared.safety import notify
from shared.state.clock import now
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register
from shared.sweeps.submit import ACTIVE_RUN_STATES, excluded, record, submit_signals
from shared.tenant import exchange as exo
from shared.tenant.graph import directory
from shared.timestamps import parse_time

SOURCE = "sweep.restrictedSenders"


async def _runs(ctx: SweepContext, *keys: str | None) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(k.lower() for k in keys if k):
        for row in await ctx.services.journal.runs_for_user(key):
            if not row.get("dryRun"):
                rows[str(row.get("RowKey"))] = row
    return list(rows.values())


async def _contained_by(ctx: SweepContext, runs: list[dict[str, Any]]) -> str | None:
    """The newest finished run whose playbook contained the account, if any."""
    finished = sorted((r for r in runs if r.get("state") == "finished"),
                      key=lambda r: r.get("finishedAt") or r.get("createdAt") or now(),
                      reverse=True)
    for row in finished:
        run = await ctx.services.journal.get_run(str(row["RowKey"]))
        if run is not None and any(step in CONTAINMENT for step in run.steps):
            return run.run_id
    return None


@register
class RestrictedSendersSweep(Sweep):
    """A blocked sender stays blocked until someone acts: release the contained accounts and
    treat the others as compromised."""

    name = "restricted_senders"
    description = "blocked senders: release the contained, queue the rest"
    schedule_setting = "RESPONDER_SWEEP_RESTRICTED_SENDERS_SCHEDULE"
    default_schedule = "0 5,35 * * * *"
    graph_permissions = (directory.PERM_USER_READ, directory.PERM_MEMBER_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    why = "Reconcile the restricted-senders list with containment runs."

    async def run(self, ctx: SweepContext) -> None:
        rows = await exo.blocked_senders(ctx.exchange)
        items = [(str(r.get("SenderAddress")).lower(), r) for r in rows if r.get("SenderAddress")]
        ctx.result.note(f"{len(items)} sender(s) on the restricted-senders list")

        async def handle(key: str, row: dict[str, Any]) -> None:
            await self._handle(ctx, str(row["SenderAddress"]), row)

        await ctx.walk(items, handle)

    async def _handle(self, ctx: SweepContext, address: str, row: dict[str, Any]) -> None:
        result = ctx.result
        finding = {"kind": "blocked-sender", "user": address,
                   "why": f"restricted sender ({row.get('Reason') or 'no reason given'})"}
        result.found.append(finding)
        try:
            user = await directory.resolve_user(ctx.graph, address)
        except NotFound:
            result.skipped.append({**finding, "why": "no user with that address in the "
                                   "directory: an administrator must look"})
            return
        finding["userId"] = user.id
        why = await excluded(ctx.services, address, user.upn, user.mail, user_id=user.id)
        if why:
            result.skipped.append({**finding, "why": why})
            return
        released = await release_record(ctx.services.journal, address)
        kind = classify(released, row)
        if kind == "again":
            await self._blocked_again(ctx, finding, address, user.id, user.upn, row,
                                      released or {})
            return
        if kind != "first":
            result.skipped.append({**finding, "why": hold_reason(kind, released)})
            return
        runs = await _runs(ctx, user.id, user.upn, address)
        run_id = await _contained_by(ctx, runs)
        if run_id:
            await self._release(ctx, finding, address, user.id, run_id, row)
            return
        active = [r for r in runs if r.get("state") in ACTIVE_RUN_STATES]
        if active:
            result.skipped.append({**finding, "runId": active[0].get("RowKey"),
                                   "why": "a run for this account is still going"})
            return
        if runs:
            states = sorted({str(r.get("state")) for r in runs})
            result.skipped.append({**finding, "why": f"runs exist ({', '.join(states)}) but "
                                   "none contained the account: an administrator must look"})
            return
        if ctx.policy.sweeps.restricted_senders.mode == "report":
            result.skipped.append({**finding, "why": "no run; report only (policy "
                                   "sweeps.restrictedSenders.mode)"})
            return
        (sub,) = await submit_signals(ctx.services, [_signal(user.id, user.upn, address, row)],
                                      dry_run=ctx.dry_run)
        record(result, finding, sub)

    async def _blocked_again(self, ctx: SweepContext, finding: dict[str, Any], address: str,
                             user_id: str, upn: str, row: dict[str, Any],
                             released: dict[str, Any]) -> None:
        """Blocked again after a release: contain again (high risk, through intake), tell
        the SOC now, record it, and never release it again automatically."""
        result = ctx.result
        finding = {**finding, "why": AGAIN_NOTE, "releasedBy": released.get("releasedBy")}
        signal = _signal(user_id, upn, address, row, again=True)
        (sub,) = await submit_signals(ctx.services, [signal], dry_run=ctx.dry_run)
        record(result, finding, sub)
        if ctx.dry_run:
            return
        await record_reblock(ctx.services.journal, address, run_id=released.get("runId"),
                             user_id=user_id, block=row, request_id=sub.request_id)
        contained = (f"new containment {sub.status} (request {sub.request_id})"
                     if sub.request_id else f"new containment not queued: {sub.reason}")
        lines = [f"{upn} is on the restricted-senders list again after the responder "
                 f"released it ({released.get('releasedBy') or 'earlier'}): the account is "
                 "probably still compromised", contained,
                 f"not released again: an administrator decides ({LIMIT_NOTE})"]
        if released.get("runId"):
            await ctx.services.journal.event(str(released["runId"]), "blocked-again",
                                             lines[0], {"address": address,
                                                        "requestId": sub.request_id})
        await notify.send(ctx.services, notify.Notification(
            event="sweep.findings", title=f"ESCALATION: {upn} blocked again after a release",
            lines=lines, facts={"user": f"{upn} ({user_id})", "address": address},
            data={"sweep": self.name, "escalation": "blocked-again", "userId": user_id,
                  "requestId": sub.request_id}))

    async def _release(self, ctx: SweepContext, finding: dict[str, Any], address: str,
                       user_id: str, run_id: str, row: dict[str, Any]) -> None:
        result = ctx.result
        finding = {**finding, "runId": run_id}
        if ctx.policy.unblock.automatic:
            if not ctx.dry_run:
                try:
                    await exo.remove_blocked_sender(ctx.exchange, address)
                except BadRequest as exc:
                    why = refusal_note(exc)
                    await record_refusal(ctx.services.journal, address, user_id=user_id,
                                         why=why)
                    result.skipped.append({**finding, "why": why})
                    return
                await record_release(ctx.services.journal, address, run_id=run_id,
                                     user_id=user_id, block=row, by="sweep")
            result.actions.append({**finding, "what": "released from restricted senders",
                                   "why": f"contained by run {run_id} (policy "
                                          "unblock.automatic; once per breach); may take up "
                                          "to an hour"})
            return
        pending = await ctx.services.journal.get_item(PENDING_UNBLOCKS, address)
        if pending and pending.get("state") == "pending":
            result.skipped.append({**finding, "why": "a pending unblock request already "
                                   "awaits an administrator"})
            return
        if not ctx.dry_run:
            await ctx.services.journal.put_item(PENDING_UNBLOCKS, address, runId=run_id,
                                                userId=user_id, requestedAt=now(),
                                                state="pending", requestedBy="sweep")
            await ctx.services.journal.event(run_id, "unblock-requested",
                                             "release from restricted senders awaits an "
                                             "administrator (filed by the sweep)",
                                             {"addresses": [address]})
        result.actions.append({**finding, "what": "pending unblock request filed",
                               "why": f"contained by run {run_id}; automatic release is off"})


def _signal(user_id: str, upn: str, address: str, row: dict[str, Any], *,
            again: bool = False) -> RiskSignal:
    """A blocked sender as a high-risk signal; one detection per block (its timestamp)."""
    created = row.get("CreatedDatetime")
    try:
        detected = parse_time(created) if created else None
    except (ValueError, TypeError):
        detected = None
    kind = "blockedSenderAgain" if again else "blockedSender"
    return RiskSignal(user_id=user_id, upn=upn, risk_level="high",
                      risk_event_type="restrictedSenderAgain" if again else "restrictedSender",
                      source=SOURCE, detection_id=f"{kind}:{address.lower()}:{created or ''}",
                      detected_at=detected, raw={})
