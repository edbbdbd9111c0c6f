"""Risky-user sweep: users Identity Protection still holds `atRisk` at a swept level (high,
and medium when the policy says so) with no run recently. An alert can be lost (a webhook
down, a poller gap); the user's risk state cannot. Each becomes a risk signal, submitted
through the same decision and deduplication as alert intake.
"""

from __future__ import annotations

from typing import Any

from shared.models import RiskSignal
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register
from shared.sweeps.submit import excluded, recent_run, record, submit_signals
from shared.tenant.graph.directory import PERM_MEMBER_READ
from shared.tenant.graph.identity_protection import PERM_RISKY_READ, list_risky_users
from shared.timestamps import parse_time

SOURCE = "sweep.riskyUsers"


def _time(value: Any) -> Any:
    try:
        return parse_time(value) if value else None
    except (ValueError, TypeError):
        return None


@register
class RiskyUsersSweep(Sweep):
    """An alert can be lost, a user's risk state cannot: queue users still at risk."""

    name = "risky_users"
    description = "users still atRisk (high; medium by policy) with no recent run"
    schedule_setting = "RESPONDER_SWEEP_RISKY_USERS_SCHEDULE"
    default_schedule = "0 */30 * * * *"
    graph_permissions = (PERM_RISKY_READ, PERM_MEMBER_READ)
    why = "Find users still at risk with no recent run and queue their remediation."

    async def run(self, ctx: SweepContext) -> None:
        cfg = ctx.policy.sweeps.risky_users
        levels = list(cfg.levels)
        rows = await list_risky_users(ctx.graph, levels, "atRisk")
        items = [(str(r.get("id")), r) for r in rows if r.get("id")]
        ctx.result.note(f"{len(items)} user(s) atRisk at level(s) {', '.join(levels)}")

        async def handle(key: str, row: dict[str, Any]) -> None:
            await self._handle(ctx, row)

        await ctx.walk(items, handle)

    async def _handle(self, ctx: SweepContext, row: dict[str, Any]) -> None:
        result = ctx.result
        user_id = str(row["id"])
        upn = row.get("userPrincipalName") or None
        level = str(row.get("riskLevel") or "high")
        finding = {"kind": "risky-user", "user": upn or user_id, "userId": user_id,
                   "riskLevel": level,
                   "why": f"riskState atRisk, level {level}, since "
                          f"{row.get('riskLastUpdatedDateTime') or '?'}"}
        result.found.append(finding)
        why = await excluded(ctx.services, upn, user_id=user_id)
        if why:
            result.skipped.append({**finding, "why": why})
            return
        hours = ctx.policy.sweeps.recent_run_hours
        recent = await recent_run(ctx.services, user_id, upn, hours=hours)
        if recent:
            result.skipped.append({**finding, "runId": recent.get("RowKey"),
                                   "why": f"run {recent.get('RowKey')} is {recent.get('state')} "
                                          f"(within {hours:g} h)"})
            return
        if ctx.policy.sweeps.risky_users.mode == "report":
            result.skipped.append({**finding, "why": "report only (policy sweeps.riskyUsers.mode)"})
            return
        updated = row.get("riskLastUpdatedDateTime")
        signal = RiskSignal(user_id=user_id, upn=upn, risk_level=level,  # type: ignore[arg-type]
                            risk_event_type="riskyUser", source=SOURCE,
                            detection_id=f"riskyUser:{user_id}:{updated or ''}",
                            detected_at=_time(updated), raw=row)
        (sub,) = await submit_signals(ctx.services, [signal], dry_run=ctx.dry_run)
        record(result, finding, sub)
