"""Mailbox clean-up: malicious inbox rules (Graph, hidden ones through Exchange), mailbox
forwarding and auditing (Exchange only)."""

from __future__ import annotations

from typing import Any

from shared.errors import Forbidden, NotFound
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register
from shared.playbook.rule_analysis import exchange_rule_reasons, graph_rule_reasons
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant import exchange as exo
from shared.tenant.graph import mail
from shared.tenant.graph.mail import PERM_FOLDERS_READ, PERM_MAILBOX_READ, PERM_MAILBOX_WRITE

EXCHANGE_ROLE = ("Exchange Administrator",)


@register
class DisableMaliciousInboxRules(Step):
    """Disable inbox rules that forward, delete or hide mail; keep each rule's JSON."""

    name = "disable_malicious_inbox_rules"
    graph_permissions = (PERM_MAILBOX_READ, PERM_MAILBOX_WRITE, PERM_FOLDERS_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release re-enables the rules this run disabled"
    undo_order = 20
    dry_run_description = "would disable suspicious inbox rules (benign rules untouched)"

    async def plan(self, ctx: StepContext) -> Plan:
        internal = await ctx.verified_domains()
        keywords = ctx.policy.inbox_rules.keywords
        folders = {str(f.get("id")): str(f.get("displayName", "")) for f in await ctx.folders()}
        graph_hits: list[dict[str, Any]] = []
        for rule in await ctx.rules():
            reasons = graph_rule_reasons(rule, folders, internal, keywords)
            if reasons and rule.get("isEnabled", True):
                graph_hits.append({"rule": rule, "reasons": reasons})
        hidden_hits: list[dict[str, Any]] = []
        exchange_note = ""
        if ctx.policy.inbox_rules.include_hidden:
            try:
                rows = await ctx.exchange_rules()
            except (Forbidden, NotFound) as exc:
                rows = []
                exchange_note = f"hidden rules not checked: {exc}"
            graph_rules = await ctx.rules()
            graph_ids = {str(r.get("id")) for r in graph_rules}
            graph_names = {str(r.get("displayName")) for r in graph_rules
                           if r.get("displayName")}
            for row in rows:
                ids = {str(row.get("RuleIdentity")), str(row.get("Identity"))}
                if ids & graph_ids or row.get("Name") in graph_names or not row.get("Enabled"):
                    continue  # visible through Graph: handled above
                reasons = exchange_rule_reasons(row, internal, keywords)
                if reasons:
                    hidden_hits.append({"rule": row, "reasons": reasons})
        actions = [f"disable rule '{h['rule'].get('displayName')}': {'; '.join(h['reasons'])}"
                   for h in graph_hits]
        actions += [f"disable hidden rule '{h['rule'].get('Name')}': {'; '.join(h['reasons'])}"
                    for h in hidden_hits]
        data = {"graph": graph_hits, "hidden": hidden_hits, "note": exchange_note}
        if not actions:
            return Plan(nothing=exchange_note or "no suspicious enabled inbox rule", data=data)
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        for hit in plan.data["graph"]:
            rule = hit["rule"]
            await mail.set_rule_enabled(ctx.graph, ctx.user.id, str(rule["id"]), False)
            changes.append({"what": "inboxRule", "via": "graph", "id": rule["id"],
                            "name": rule.get("displayName"), "from": "enabled",
                            "to": "disabled", "reasons": hit["reasons"], "rule": rule})
        for hit in plan.data["hidden"]:
            row = hit["rule"]
            identity = str(row.get("RuleIdentity") or row.get("Identity"))
            await exo.set_inbox_rule_enabled(ctx.exchange, ctx.mailbox_id, identity, False)
            changes.append({"what": "inboxRule", "via": "exchange", "id": identity,
                            "name": row.get("Name"), "from": "enabled", "to": "disabled",
                            "reasons": hit["reasons"], "rule": row, "hidden": True})
        ctx.forget("rules")
        ctx.forget("exchange_rules")
        summary = f"disabled {len(changes)} rule(s)"
        if plan.data.get("note"):
            summary += f"; {plan.data['note']}"
        status = StepStatus.PARTIAL if plan.data.get("note") else StepStatus.DONE
        return StepResult(step=self.name, status=status, summary=summary, changes=changes)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Re-enable each rule the run disabled, through the API that disabled it."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") != "inboxRule":
                continue
            rule_id, via, name = str(c.get("id")), c.get("via"), c.get("name") or c.get("id")

            async def enable_rule(rule_id: str = rule_id, via: Any = via) -> None:
                if via == "exchange":
                    await exo.set_inbox_rule_enabled(ctx.exchange, ctx.mailbox, rule_id, True)
                else:
                    await mail.set_rule_enabled(ctx.graph, ctx.user_id, rule_id, True)
            hidden = " (hidden, through Exchange)" if via == "exchange" else ""
            items.append(Undo(f"inboxRule:{rule_id}",
                              f"inbox rule '{name}'{hidden} re-enabled", enable_rule))
        return items


@register
class ClearMailboxForwarding(Step):
    """Remove mailbox-level forwarding (ForwardingSmtpAddress / ForwardingAddress)."""

    name = "clear_mailbox_forwarding"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release restores the previous forwarding settings from the record"
    undo_order = 30
    dry_run_description = "would clear mailbox forwarding"

    async def plan(self, ctx: StepContext) -> Plan:
        box = await ctx.mailbox()
        if box is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        before = {k: box.get(k) for k in ("ForwardingSmtpAddress", "ForwardingAddress",
                                          "DeliverToMailboxAndForward")}
        if not before["ForwardingSmtpAddress"] and not before["ForwardingAddress"]:
            return Plan.nothing_to_do("no mailbox forwarding", before=before)
        target = before["ForwardingSmtpAddress"] or before["ForwardingAddress"]
        return Plan(actions=[f"clear mailbox forwarding to {target}"], data={"before": before})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await exo.set_mailbox(ctx.exchange, ctx.mailbox_id, ForwardingSmtpAddress=None,
                              ForwardingAddress=None, DeliverToMailboxAndForward=False)
        ctx.forget("mailbox")
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="mailbox forwarding cleared",
                          changes=[{"what": "mailboxForwarding", "from": plan.data["before"],
                                    "to": None}])

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Set forwarding back to the recorded values (the evidence snapshot when the
        change did not keep them)."""
        items: list[Undo] = []
        for c in finished_changes(result):
            before = c.get("from") or (ctx.evidence or {}).get("mailbox") or {}
            values = {k: before.get(k) for k in ("ForwardingSmtpAddress", "ForwardingAddress",
                                                 "DeliverToMailboxAndForward")}
            values["DeliverToMailboxAndForward"] = bool(values["DeliverToMailboxAndForward"])

            async def forwarding(values: dict[str, Any] = values) -> None:
                await exo.set_mailbox(ctx.exchange, ctx.mailbox, **values)
            target = values["ForwardingSmtpAddress"] or values["ForwardingAddress"]
            items.append(Undo("mailboxForwarding", f"mailbox forwarding restored to {target}",
                              forwarding))
        return items


@register
class EnableMailboxAudit(Step):
    """Turn mailbox auditing on and remove the account's audit bypass."""

    name = "enable_mailbox_audit"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "not undone on release: auditing stays on (it is the safe state)"
    kept = "kept: mailbox auditing stays on (it is the safe state)"
    undo_order = 95
    dry_run_description = "would enable mailbox auditing and remove audit bypass"

    async def plan(self, ctx: StepContext) -> Plan:
        box = await ctx.mailbox()
        if box is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        org = await ctx.organization_config()
        bypass = await ctx.audit_bypass()
        actions = []
        org_note = ""
        if org.get("AuditDisabled"):
            org_note = ("organisation-wide auditing is OFF (AuditDisabled true): mailbox "
                        "settings have no effect until an admin turns it on")
        if not box.get("AuditEnabled"):
            actions.append("enable mailbox auditing")
        if bypass:
            actions.append("remove the account's audit bypass")
        data = {"auditEnabled": box.get("AuditEnabled"), "bypass": bypass, "orgNote": org_note}
        if not actions:
            return Plan(nothing=org_note or "auditing already on, no bypass", data=data)
        return Plan(actions=actions + ([org_note] if org_note else []), data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        if not plan.data.get("auditEnabled"):
            await exo.set_mailbox(ctx.exchange, ctx.mailbox_id, AuditEnabled=True)
            changes.append({"what": "AuditEnabled", "from": False, "to": True})
        if plan.data.get("bypass"):
            await exo.set_audit_bypass(ctx.exchange, ctx.mailbox_id, False)
            changes.append({"what": "AuditBypassEnabled", "from": True, "to": False})
        ctx.forget("mailbox")
        ctx.forget("bypass")
        summary = ", ".join(c["what"] + " set" for c in changes)
        if plan.data.get("orgNote"):
            summary += "; " + plan.data["orgNote"]
        status = StepStatus.PARTIAL if plan.data.get("orgNote") else StepStatus.DONE
        return StepResult(step=self.name, status=status, summary=summary, changes=changes)
