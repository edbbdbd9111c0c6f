"""After containment: release from the restricted-senders list, and tell the SOC."""

from __future__ import annotations

from typing import Any

from shared import exchange as exo
from shared.graph import directory
from shared.journal import now
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register

CONTAINMENT = ("reset_password", "revoke_sessions", "disable_malicious_inbox_rules",
               "clear_mailbox_forwarding", "remove_suspicious_auth_methods")
PENDING_UNBLOCKS = "pending-unblocks"


@register
class RequestUnblock(Step):
    """Release the user from the restricted-senders list once the account is contained."""

    name = "request_unblock"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    reversible = "nothing to undo"
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
    """Send the run's summary to the SOC mailbox (when configured)."""

    name = "notify"
    graph_permissions = ("Mail.Send",)
    reversible = "nothing to undo"
    dry_run_description = "would mail the run summary to the SOC mailbox"
    after = tuple(n for n in (
        "collect_evidence", "revoke_sessions", "reset_password", "disable_account",
        "confirm_compromised", "require_mfa", "remove_suspicious_auth_methods",
        "disable_malicious_inbox_rules", "clear_mailbox_forwarding", "enable_mailbox_audit",
        "request_unblock"))

    async def plan(self, ctx: StepContext) -> Plan:
        cfg = ctx.policy.notify
        if not cfg.soc_mailbox or not cfg.sender:
            return Plan.skipped("no SOC mailbox configured (policy notify.socMailbox/sender)")
        return Plan(actions=[f"mail the summary to {cfg.soc_mailbox}"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        cfg = ctx.policy.notify
        assert cfg.sender and cfg.soc_mailbox
        body = "\n".join(summary_lines(ctx))
        message = {
            "subject": f"[responder] compromised account contained: {ctx.user.upn}",
            "body": {"contentType": "Text", "content": body},
            "toRecipients": [{"emailAddress": {"address": cfg.soc_mailbox}}],
        }
        await directory.send_mail(ctx.graph, cfg.sender, message)
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary=f"summary mailed to {cfg.soc_mailbox}")
