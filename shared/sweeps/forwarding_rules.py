"""Forwarding and inbox-rules sweep (opt-in): mailboxes forwarding outside the organisation
and inbox rules that forward, delete or hide mail, the marks of business-email compromise
that an alert may never have pointed at.

Reading every mailbox's rules is one Exchange call per mailbox, so the sweep rotates: each
run reads the rules of the next `sweeps.forwarding.mailboxesPerRun` mailboxes in UPN order,
one mailbox at a time (well inside Outlook's 4 concurrent requests per mailbox), and keeps
its position in the checkpoint; a full pass takes several runs. Findings become remediation
requests (policy `mode: enqueue`) or lines in the report (the default).
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.errors import Forbidden, NotFound
from shared.models import RiskSignal
from shared.playbook.rule_analysis import exchange_rule_reasons, external, is_system_rule
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register
from shared.sweeps.submit import excluded, recent_run, record, submit_signals
from shared.tenant import exchange as exo
from shared.tenant.graph import directory

SOURCE = "sweep.forwardingRules"


def forwarding_reasons(row: dict[str, Any], internal: set[str]) -> list[str]:
    """Why a Get-Mailbox row's forwarding looks like exfiltration (empty = fine)."""
    reasons: list[str] = []
    smtp = str(row.get("ForwardingSmtpAddress") or "")
    if smtp:
        address = smtp.split(":", 1)[1] if smtp.lower().startswith("smtp:") else smtp
        if external([address], internal):
            reasons.append(f"mailbox forwards outside the organisation to {address}")
    return reasons


@register
class ForwardingRulesSweep(Sweep):
    """Forwarding and hiding rules are how a mailbox is exfiltrated: find the ones alerts
    never pointed at (opt-in: it reads every mailbox's rules, a few per run)."""

    name = "forwarding_rules"
    description = "opt-in: external mailbox forwarding and malicious inbox rules, rotating"
    schedule_setting = "RESPONDER_SWEEP_FORWARDING_SCHEDULE"
    default_schedule = "0 20 * * * *"
    settings = ("RESPONDER_SWEEP_FORWARDING_ENABLED",)
    graph_permissions = (directory.PERM_DOMAIN_READ, directory.PERM_MEMBER_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    why = "Opt-in: find external mailbox forwarding and malicious inbox rules."
    opt_in = True

    def enabled(self, services: Any) -> bool:
        return bool(services.policy.sweeps.forwarding.enabled
                    or services.settings.sweep_forwarding_enabled)

    def budget(self, services: Any) -> int:
        return int(services.policy.sweeps.forwarding.mailboxes_per_run)

    async def run(self, ctx: SweepContext) -> None:
        # the organisation's accepted domains: verified tenant domains (isVerified false
        # means ownership is not proven, https://learn.microsoft.com/en-us/graph/api/domain-verify)
        internal = {str(d.get("id", "")).lower() for d in await directory.domains(ctx.graph)
                    if d.get("isVerified", True)}
        internal |= {d.lower() for d in ctx.policy.inbox_rules.internal_domains}
        boxes = await exo.all_mailboxes(ctx.exchange)
        items = [(str(b.get("UserPrincipalName") or b.get("Identity")).lower(), b)
                 for b in boxes if b.get("UserPrincipalName") or b.get("Identity")]
        ctx.result.note(f"{len(items)} mailbox(es) in the tenant; up to {ctx.budget} read "
                        "per run")

        async def handle(key: str, box: dict[str, Any]) -> None:
            await self._handle(ctx, box, internal)

        await ctx.walk(items, handle)

    async def _handle(self, ctx: SweepContext, box: dict[str, Any], internal: set[str]) -> None:
        result = ctx.result
        upn = str(box.get("UserPrincipalName") or box.get("Identity"))
        reasons = forwarding_reasons(box, internal)
        try:
            rules = await exo.inbox_rules(ctx.exchange, upn, include_hidden=True)
        except (NotFound, Forbidden) as exc:
            result.note(f"rules of {upn} not read: {exc}")
            rules = []
        keywords = ctx.policy.inbox_rules.keywords
        for rule in rules:
            if not rule.get("Enabled", True):
                continue
            # Exchange's own hidden rules (junk e-mail, automatic replies) are not findings;
            # the sweep reads Exchange only, so a rule is judged by its name here. Forwarding
            # to a colleague (an EX: recipient) is not a finding either (rule_analysis).
            if is_system_rule(rule, visible_in_graph=False):
                continue
            why = exchange_rule_reasons(rule, internal, keywords)
            if why:
                reasons.append(f"rule '{rule.get('Name') or rule.get('RuleIdentity')}': "
                               + "; ".join(why))
        if not reasons:
            return
        user_id = str(box.get("ExternalDirectoryObjectId") or "") or None
        finding = {"kind": "mailbox-abuse", "user": upn, "userId": user_id,
                   "why": " | ".join(reasons)}
        result.found.append(finding)
        why_not = await excluded(ctx.services, upn, box.get("PrimarySmtpAddress"),
                                 user_id=user_id)
        if why_not:
            result.skipped.append({**finding, "why": why_not})
            return
        cfg = ctx.policy.sweeps.forwarding
        if cfg.mode == "report":
            result.skipped.append({**finding, "why": "report only (policy "
                                   "sweeps.forwarding.mode)"})
            return
        hours = ctx.policy.sweeps.recent_run_hours
        recent = await recent_run(ctx.services, user_id, upn, hours=hours)
        if recent:
            result.skipped.append({**finding, "runId": recent.get("RowKey"),
                                   "why": f"run {recent.get('RowKey')} is {recent.get('state')}"})
            return
        digest = hashlib.sha256("|".join(sorted(reasons)).encode()).hexdigest()[:16]
        signal = RiskSignal(user_id=user_id, upn=upn, risk_level=cfg.risk_level,
                            risk_event_type="mailboxAbuse", source=SOURCE,
                            detection_id=f"mailbox:{upn.lower()}:{digest}", raw={})
        (sub,) = await submit_signals(ctx.services, [signal], dry_run=ctx.dry_run)
        record(result, finding, sub)
