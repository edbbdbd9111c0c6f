"""Mailbox clean-up: malicious inbox rules (Graph, hidden ones through Exchange), mailbox
forwarding and auditing (Exchange only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from shared.errors import Forbidden, NotFound
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.rule_analysis import (
    exchange_rule_reasons,
    graph_rule_reasons,
    is_system_rule,
    pair_rules,
    row_rule_identity,
)
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant import exchange as exo
from shared.tenant.graph import mail
from shared.tenant.graph.mail import PERM_FOLDERS_READ, PERM_MAILBOX_READ, PERM_MAILBOX_WRITE

EXCHANGE_ROLE = ("Exchange Administrator",)


CLIENT_RULES_NOTE = "Outlook client-side rules may have been removed"
"""Changing an inbox rule through Exchange PowerShell removes the client-side rules Outlook
created (MicrosoftDocs/office-docs-powershell:exchange/exchange-ps/exchange/
Disable-InboxRule.md): every change made through Exchange says so, in the step result, the
run report and on release."""


async def _accepted_domains(ctx: StepContext) -> set[str]:
    """The organisation's own domains: verified tenant domains (isVerified false means
    ownership is not proven, https://learn.microsoft.com/en-us/graph/api/domain-verify)
    plus the policy's extra internal domains."""
    found = {str(d.get("id", "")).lower() for d in await ctx.domains()
             if d.get("isVerified", True)}
    return found | {x.lower() for x in ctx.policy.inbox_rules.internal_domains}


@register
class DisableMaliciousInboxRules(Step):
    """Disable inbox rules that forward outside, delete or hide mail; keep each rule's JSON.

    Every rule is judged on what Exchange shows (Get-InboxRule, hidden ones included when
    the policy asks): Graph shows a rule with predicates it does not support read-only and
    empty, and shows no hidden rules at all. A rule Graph can change is disabled through
    Graph; a read-only or hidden one through Exchange, which removes Outlook's client-side
    rules (said in the result). Exchange's own hidden rules (junk e-mail, automatic
    replies) and forwarding to colleagues are left alone."""

    name = "disable_malicious_inbox_rules"
    graph_permissions = (PERM_MAILBOX_READ, PERM_MAILBOX_WRITE, PERM_FOLDERS_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release re-enables the rules this run disabled"
    undo_order = 20
    dry_run_description = "would disable suspicious inbox rules (benign rules untouched)"

    async def plan(self, ctx: StepContext) -> Plan:
        internal = await _accepted_domains(ctx)
        keywords = ctx.policy.inbox_rules.keywords
        folders = {str(f.get("id")): str(f.get("displayName", "")) for f in await ctx.folders()}
        graph_rules = await ctx.rules()
        exchange_note = ""
        try:
            rows = await ctx.exchange_rules()
        except (Forbidden, NotFound) as exc:
            rows = []
            exchange_note = f"rules not checked through Exchange: {exc}"
        graph_hits: list[dict[str, Any]] = []
        exchange_hits: list[dict[str, Any]] = []
        unjudged: list[str] = []
        for rule, row in pair_rules(graph_rules, rows):
            if row is not None:
                if is_system_rule(row, visible_in_graph=rule is not None):
                    continue  # Exchange's own hidden rule: never the responder's to disable
                if not row.get("Enabled", True):
                    continue
                reasons = exchange_rule_reasons(row, internal, keywords)
                if rule is not None and not rule.get("isReadOnly"):
                    seen = {r.lower() for r in reasons}
                    reasons += [r for r in graph_rule_reasons(rule, folders, internal, keywords)
                                if r.lower() not in seen]
            elif rule is not None:  # Exchange not readable: Graph's view is all there is
                if not rule.get("isEnabled", True):
                    continue
                if rule.get("isReadOnly"):
                    unjudged.append(str(rule.get("displayName") or rule.get("id")))
                    continue
                reasons = graph_rule_reasons(rule, folders, internal, keywords)
            else:
                continue
            if not reasons:
                continue
            if rule is not None and not rule.get("isReadOnly"):
                graph_hits.append({"rule": rule, "reasons": reasons})
            else:
                assert row is not None
                exchange_hits.append({"rule": row, "reasons": reasons,
                                      "hidden": rule is None,
                                      "graphId": rule.get("id") if rule else None})
        if unjudged:
            exchange_note += (f"; read-only rule(s) {', '.join(unjudged)} not judged: Graph "
                              "does not show their conditions and Exchange was not readable")
        exchange_note = exchange_note.lstrip("; ")
        actions = [f"disable rule '{h['rule'].get('displayName')}': {'; '.join(h['reasons'])}"
                   for h in graph_hits]
        for h in exchange_hits:
            kind = "hidden rule" if h["hidden"] else "read-only rule"
            actions.append(f"disable {kind} '{h['rule'].get('Name')}' through Exchange "
                           f"({CLIENT_RULES_NOTE.lower()}): {'; '.join(h['reasons'])}")
        data = {"graph": graph_hits, "exchange": exchange_hits, "note": exchange_note}
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
        # older records of this step call the Exchange list "hidden"
        for hit in plan.data.get("exchange", plan.data.get("hidden", [])):
            row = hit["rule"]
            identity = row_rule_identity(row)
            await exo.set_inbox_rule_enabled(ctx.exchange, ctx.mailbox_id, identity, False)
            changes.append({"what": "inboxRule", "via": "exchange", "id": identity,
                            "name": row.get("Name"), "from": "enabled", "to": "disabled",
                            "reasons": hit["reasons"], "rule": row,
                            "hidden": hit.get("hidden", True), "graphId": hit.get("graphId"),
                            "clientRules": CLIENT_RULES_NOTE})
        ctx.forget("rules")
        ctx.forget("exchange_rules")
        summary = f"disabled {len(changes)} rule(s)"
        if any(c["via"] == "exchange" for c in changes):
            summary += f"; {CLIENT_RULES_NOTE} (changed through Exchange)"
        if plan.data.get("note"):
            summary += f"; {plan.data['note']}"
        status = StepStatus.PARTIAL if plan.data.get("note") else StepStatus.DONE
        return StepResult(step=self.name, status=status, summary=summary, changes=changes)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Read the rules again through the API that changed each: Graph's messageRule
        `isEnabled` (https://learn.microsoft.com/en-us/graph/api/resources/messagerule) and
        Get-InboxRule's `Enabled` (MicrosoftDocs/office-docs-powershell:exchange/exchange-ps/
        exchange/Get-InboxRule.md lists the cmdlet, not its output properties: the name is
        the one the mailbox rows carry). A disabled rule must read disabled; a rule that is
        gone is not enabled either, and is noted."""
        changed = [c for c in result.changes if c.get("what") == "inboxRule"]
        differences: list[str] = []
        notes: list[str] = []
        by_graph = [c for c in changed if c.get("via") != "exchange"]
        by_exchange = [c for c in changed if c.get("via") == "exchange"]
        if by_graph:
            rules = {str(r.get("id")): r for r in await mail.list_rules(ctx.graph, ctx.user.id)}
            for c in by_graph:
                rule = rules.get(str(c.get("id")))
                name = c.get("name") or c.get("id")
                if rule is None:
                    notes.append(f"rule '{name}' is no longer listed")
                elif rule.get("isEnabled") is not False:
                    differences.append(f"rule '{name}' reads isEnabled "
                                       f"{rule.get('isEnabled')}, not false")
        if by_exchange:
            rows = {row_rule_identity(r): r for r in await exo.inbox_rules(
                ctx.exchange, ctx.mailbox_id, include_hidden=True)}
            for c in by_exchange:
                row = rows.get(str(c.get("id")))
                name = c.get("name") or c.get("id")
                if row is None:
                    notes.append(f"rule '{name}' is no longer listed")
                elif row.get("Enabled", True) is not False:
                    differences.append(f"rule '{name}' reads Enabled {row.get('Enabled')}, "
                                       "not false")
        return Verification(not differences, differences, "; ".join(notes))

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
            how = (f" (through Exchange; {CLIENT_RULES_NOTE.lower()})"
                   if via == "exchange" else "")
            items.append(Undo(f"inboxRule:{rule_id}",
                              f"inbox rule '{name}' re-enabled{how}", enable_rule))
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

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Get-Mailbox again: ForwardingSmtpAddress and ForwardingAddress must be empty
        (the properties Set-Mailbox clears: MicrosoftDocs/office-docs-powershell:exchange/
        exchange-ps/exchange/Set-Mailbox.md, -ForwardingSmtpAddress, -ForwardingAddress)."""
        box = await exo.get_mailbox(ctx.exchange, ctx.mailbox_id)
        if box is None:
            return Verification(False, ["the mailbox is no longer found by Get-Mailbox"])
        differences = [f"{k} reads {box.get(k)}" for k in ("ForwardingSmtpAddress",
                                                           "ForwardingAddress") if box.get(k)]
        return Verification(not differences, differences)

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
    """Make sure what the account does in its mailbox is logged and searchable.

    Mailbox auditing on by default ignores a mailbox's AuditEnabled ("Manage mailbox
    auditing": https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide):
    what can be off is the organisation switch, the account's bypass association, and audited
    actions customised to leave out rule changes, deletes and sends. AuditEnabled matters only
    for audit search without an Audit (Premium) licence (`exo.review_mailbox_audit`)."""

    name = "enable_mailbox_audit"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "not undone on release: auditing stays on (it is the safe state)"
    kept = "kept: mailbox auditing stays on (it is the safe state)"
    undo_order = 95
    dry_run_description = ("would restore audited mailbox actions, remove the audit bypass and "
                           "make the mailbox's events searchable")

    async def plan(self, ctx: StepContext) -> Plan:
        box = await ctx.mailbox()
        if box is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        org = await ctx.organization_config()
        bypass = await ctx.audit_bypass()
        review = exo.review_mailbox_audit(box)
        actions: list[str] = []
        notes: list[str] = []
        org_note = ""
        if org.get("AuditDisabled"):
            # Reported, not changed: turning the organisation switch back on
            # (Set-OrganizationConfig -AuditDisabled $false) is a tenant-wide decision the page
            # leaves to admins; the audit sweep does it when its policy says `fix`.
            org_note = ("organisation-wide mailbox auditing is OFF (AuditDisabled true): "
                        "nothing is logged, whatever the mailbox says, until an admin runs "
                        "Set-OrganizationConfig -AuditDisabled $false")
        for logon in review.restore:
            actions.append(f"restore Microsoft's default {logon} audited actions (missing: "
                           f"{', '.join(review.missing[logon])})")
        for logon, missing in review.add.items():
            actions.append(f"add {', '.join(missing)} to the {logon} audited actions")
        if bypass:
            actions.append("remove the account's audit bypass (its actions are not logged)")
        if review.not_searchable:
            why = ("no Audit (Premium) licence" if review.premium is False
                   else "Audit (Premium) licence unknown")
            actions.append(f"set AuditEnabled true so the mailbox's events reach audit log "
                           f"search ({why})")
        if review.premium_unknown:
            notes.append(f"{', '.join(review.premium_unknown)} audited actions are customised "
                         "without MailItemsAccessed/Send: add them if the user has Audit "
                         "(Premium)")
        data = {"review": asdict(review), "bypass": bypass, "orgNote": org_note,
                "notes": notes}
        if not actions and not org_note:
            return Plan(nothing="; ".join(["mailbox auditing complete, no bypass", *notes]),
                        data=data)
        return Plan(actions=actions + ([org_note] if org_note else []) + notes, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        review = exo.AuditReview(**plan.data["review"])
        if review.actions_off or review.not_searchable:
            await exo.restore_mailbox_audit(ctx.exchange, ctx.mailbox_id, review,
                                            audit_enabled=review.not_searchable)
            for logon in review.restore:
                changes.append({"what": f"Audit{logon}", "from": "customised",
                                "to": "Microsoft defaults", "missing": review.missing[logon]})
            for logon, missing in review.add.items():
                changes.append({"what": f"Audit{logon}", "added": missing})
            if review.not_searchable:
                changes.append({"what": "AuditEnabled", "from": False, "to": True})
        if plan.data.get("bypass"):
            await exo.set_audit_bypass(ctx.exchange, ctx.mailbox_id, False)
            changes.append({"what": "AuditBypassEnabled", "from": True, "to": False})
        ctx.forget("mailbox")
        ctx.forget("bypass")
        parts = [c["what"] + " set" for c in changes]
        parts += [n for n in (plan.data.get("orgNote"), *plan.data.get("notes", [])) if n]
        status = StepStatus.PARTIAL if plan.data.get("orgNote") else StepStatus.DONE
        return StepResult(step=self.name, status=status, summary="; ".join(parts),
                          changes=changes)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Get-Mailbox again and judge it as the plan did (AuditEnabled, the audited actions
        per logon type: "Manage mailbox auditing",
        https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide),
        and read the bypass association again (Get-MailboxAuditBypassAssociation,
        AuditBypassEnabled) when the run removed it."""
        whats = {str(c.get("what")) for c in result.changes}
        differences: list[str] = []
        notes: list[str] = []
        box = await exo.get_mailbox(ctx.exchange, ctx.mailbox_id)
        if box is None:
            return Verification(False, ["the mailbox is no longer found by Get-Mailbox"])
        review = exo.review_mailbox_audit(box)
        for what in sorted(whats):
            logon = what[len("Audit"):]
            if what.startswith("Audit") and logon in review.missing:
                differences.append(f"{what} still lacks {', '.join(review.missing[logon])}")
        if "AuditEnabled" in whats and box.get("AuditEnabled") is not True:
            differences.append(f"AuditEnabled reads {box.get('AuditEnabled')}, not true")
        if "AuditBypassEnabled" in whats:
            bypass = await exo.audit_bypass(ctx.exchange, ctx.mailbox_id)
            if bypass:
                differences.append("AuditBypassEnabled still reads true")
            elif bypass is None:
                notes.append("the audit bypass association could not be read back")
        return Verification(not differences, differences, "; ".join(notes))
