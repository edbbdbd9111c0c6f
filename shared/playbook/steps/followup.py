"""After containment: release from the restricted-senders list, and tell the SOC."""

from __future__ import annotations

from typing import Any

from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register
from shared.playbook.undo import ReleaseContext, Undo
from shared.state import partitions
from shared.state.clock import now
from shared.tenant import exchange as exo

CONTAINMENT = ("reset_password", "revoke_sessions", "disable_malicious_inbox_rules",
               "clear_mailbox_forwarding", "remove_suspicious_auth_methods")
PENDING_UNBLOCKS = partitions.PENDING_UNBLOCKS


@register
class RequestUnblock(Step):
    """Release the user from the restricted-senders list once the account is contained."""

    name = "request_unblock"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    reversible = "nothing to undo"
    undo_order = 60
    dry_run_description = "would release the user from restricted senders (or file a " \
                          "pending request) once containment succeeded"
    after = ("collect_evidence", *CONTAINMENT, "confirm_compromised", "require_mfa",
             "enable_mailbox_audit")
    requires_success = CONTAINMENT

    async def plan(self, ctx: StepContext) -> Plan:
        rows = await ctx.blocked()
        if not rows:
            return Plan.nothing_to_do("not on the restricted-senders list")
        addresses = sorted({str(r.get("SenderAddress")) for r in rows})
        if ctx.policy.unblock.automatic:
            return Plan(actions=[f"release {a} from restricted senders" for a in addresses],
                        data={"addresses": addresses, "automatic": True})
        return Plan(actions=[f"file a pending unblock request for {a}" for a in addresses],
                    data={"addresses": addresses, "automatic": False})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        if plan.data["automatic"]:
            for address in plan.data["addresses"]:
                await exo.remove_blocked_sender(ctx.exchange, address)
                changes.append({"what": "restrictedSender", "address": address,
                                "from": "blocked", "to": "released"})
            ctx.forget("blocked")
            return StepResult(step=self.name, status=StepStatus.DONE,
                              summary="released from restricted senders (may take up to an "
                                      "hour to apply)", changes=changes)
        for address in plan.data["addresses"]:
            await ctx.journal.put_item(PENDING_UNBLOCKS, address, runId=ctx.run.run_id,
                                       userId=ctx.user.id, requestedAt=now(), state="pending")
        await ctx.journal.event(ctx.run.run_id, "unblock-requested",
                                "release from restricted senders awaits an administrator",
                                {"addresses": plan.data["addresses"]})
        return StepResult(step=self.name, status=StepStatus.PARTIAL,
                          summary="pending unblock request filed for an administrator "
                                  "(automatic release is off in the policy)",
                          data={"pending": plan.data["addresses"]})

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Every release finishes what this step does, whether or not the run got to it:
        a falsely accused user must be able to send mail again, and no pending request
        for them may linger."""
        run, evidence = ctx.run, ctx.evidence

        async def unblock() -> str | None:
            released: list[str] = []
            for address in dict.fromkeys(a.lower() for a in (run.upn, (evidence or {}).get(
                    "user", {}).get("mail")) if a):
                rows = await exo.blocked_senders(ctx.exchange, address)
                if any(str(r.get("SenderAddress", "")).lower() == address for r in rows):
                    await exo.remove_blocked_sender(ctx.exchange, address)
                    released.append(address)
                await ctx.journal.delete_item(PENDING_UNBLOCKS, address)
            return None if released else "not on the restricted-senders list"
        return [Undo("restrictedSenders", "released from the restricted-senders list",
                     unblock)]


def summary_lines(ctx: StepContext) -> list[str]:
    lines = [f"Run {ctx.run.run_id} for {ctx.user.upn} ({ctx.user.id})",
             f"Reason: {ctx.request.reason or 'n/a'}; source: {ctx.request.source or 'n/a'}"]
    for name in ctx.planned_steps:
        r = ctx.results.get(name)
        if r is not None and name != "notify":
            lines.append(f"- {name}: {r.status.value} - {r.summary}")
    return lines


@register
class Notify(Step):
    """Send the run's summary to the SOC mailbox, Teams and a signed webhook (as configured)."""

    name = "notify"
    graph_permissions = ("Mail.Send",)
    reversible = "nothing to undo"
    changes_nothing = True
    dry_run_description = "would send the run summary to the configured channels"
    after = tuple(n for n in (
        "collect_evidence", "revoke_sessions", "reset_password", "disable_account",
        "confirm_compromised", "require_mfa", "remove_suspicious_auth_methods",
        "disable_malicious_inbox_rules", "clear_mailbox_forwarding", "enable_mailbox_audit",
        "request_unblock"))

    async def plan(self, ctx: StepContext) -> Plan:
        from shared.safety import notify

        if not notify.configured(ctx.services):
            return Plan.skipped("no notification channel configured (policy notify: "
                                "socMailbox+sender, teamsWebhookUrl, webhookUrl)")
        return Plan(actions=["send the run summary to the configured channels"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        # Fan-out through shared.safety.notify: a failed channel is journaled and reported as
        # partial, never as a failed step (a notification must not fail the run).
        from shared.safety import notify

        deliveries = await notify.send(ctx.services, notify.run_note(ctx.run, ctx.results))
        ok = all(d.ok for d in deliveries)
        return StepResult(step=self.name, status=StepStatus.DONE if ok else StepStatus.PARTIAL,
                          summary=notify.summary(deliveries),
                          data={"deliveries": [{"channel": d.channel, "ok": d.ok,
                                                "detail": d.detail} for d in deliveries]})
