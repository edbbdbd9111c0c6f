"""Mailbox audit sweep: the organisation-wide switch, mailboxes with auditing off, accounts
with an audit bypass. Attackers turn auditing off to hide what they read and forward.

Exchange does the searching: `Get-Mailbox -Filter "AuditEnabled -eq $false"` returns only the
offenders, and the bypass associations come in pages of 1000; so the calls grow with the
number of offenders and pages, never with the number of mailboxes. Each offender is fixed
(policy `sweeps.audit.*` = `fix`) or reported; excluded accounts are never touched.
"""

from __future__ import annotations

from typing import Any

from shared.errors import NotFound
from shared.sweeps.base import SweepContext
from shared.sweeps.registry import Sweep, register
from shared.sweeps.submit import excluded
from shared.tenant import exchange as exo
from shared.tenant.graph import directory
from shared.tenant.graph.directory import PERM_MEMBER_READ, PERM_USER_READ

AUDIT_OFF_FILTER = "AuditEnabled -eq $false"


def _object_id(row: dict[str, Any]) -> str | None:
    value = row.get("ExternalDirectoryObjectId")
    return str(value) if value else None


async def _directory_user(ctx: SweepContext, object_id: str | None) -> Any:
    """The directory user behind a bypass row (its rows name the mailbox by alias), so
    exclusions listed by UPN apply; None when unknown."""
    if not object_id:
        return None
    try:
        return await directory.resolve_user(ctx.graph, object_id)
    except NotFound:
        return None


@register
class AuditSweep(Sweep):
    """Attackers turn mailbox auditing off to hide what they read: turn it back on."""

    name = "audit"
    description = "mailbox auditing: organisation switch, mailboxes with auditing off, bypass"
    schedule_setting = "RESPONDER_SWEEP_AUDIT_SCHEDULE"
    default_schedule = "0 15 2 * * *"
    graph_permissions = (PERM_MEMBER_READ, PERM_USER_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    why = "Find and fix mailbox auditing turned off (organisation, mailbox, bypass)."

    async def run(self, ctx: SweepContext) -> None:
        cfg = ctx.policy.sweeps.audit
        result = ctx.result
        org = await exo.organization_config(ctx.exchange)
        if org.get("AuditDisabled"):
            finding = {"kind": "organisation-audit-off", "identity": "organisation",
                       "why": "AuditDisabled is true: no mailbox is audited"}
            result.found.append(finding)
            if cfg.organization == "fix":
                if not ctx.dry_run:
                    await exo.set_organization_audit_disabled(ctx.exchange, False)
                result.actions.append({**finding, "what": "AuditDisabled set to false"})
            else:
                result.skipped.append({**finding, "why": "report only (policy "
                                       "sweeps.audit.organization); an admin must turn it on"})
        items: list[tuple[str, Any]] = []
        for row in await exo.mailboxes_matching(ctx.exchange, AUDIT_OFF_FILTER):
            upn = str(row.get("UserPrincipalName") or row.get("Identity") or "")
            items.append((f"1-mailbox:{upn.lower()}", ("mailbox", row)))
        for row in await exo.audit_bypass_associations(ctx.exchange):
            if row.get("AuditBypassEnabled") is True:
                ident = str(row.get("Identity") or row.get("Name") or "")
                items.append((f"2-bypass:{ident.lower()}", ("bypass", row)))

        async def handle(key: str, item: tuple[str, dict[str, Any]]) -> None:
            kind, row = item
            await self._handle(ctx, kind, row)

        await ctx.walk(items, handle)

    async def _handle(self, ctx: SweepContext, kind: str, row: dict[str, Any]) -> None:
        cfg = ctx.policy.sweeps.audit
        result = ctx.result
        if kind == "mailbox":
            identity = str(row.get("UserPrincipalName") or row.get("Identity"))
            finding = {"kind": "mailbox-audit-off", "identity": identity,
                       "why": "AuditEnabled is false"}
            mode = cfg.mailboxes
        else:
            identity = str(row.get("Identity") or row.get("Name"))
            finding = {"kind": "audit-bypass", "identity": identity,
                       "why": "AuditBypassEnabled is true: the account's activity is not logged"}
            mode = cfg.bypass
        names = [identity, row.get("PrimarySmtpAddress"), row.get("Name")]
        user = await _directory_user(ctx, _object_id(row))
        if user is not None:
            names += [user.upn, user.mail]
            finding["user"] = user.upn
        result.found.append(finding)
        why = await excluded(ctx.services, *names, user_id=_object_id(row))
        if not why and _object_id(row) is None and user is None and (
                ctx.policy.exclusions.groups or ctx.policy.exclusions.users):
            # Without the object id, excluded groups (and id-listed accounts) cannot be
            # checked: never change an account that might be a break-glass account.
            why = "the account's object id is unknown: exclusions could not be verified"
        if why:
            result.skipped.append({**finding, "why": why})
            return
        if mode != "fix":
            result.skipped.append({**finding, "why": f"report only (policy sweeps.audit."
                                   f"{'mailboxes' if kind == 'mailbox' else 'bypass'})"})
            return
        if not ctx.dry_run:
            if kind == "mailbox":
                await exo.set_mailbox(ctx.exchange, identity, AuditEnabled=True)
            else:
                await exo.set_audit_bypass(ctx.exchange, identity, False)
        what = "AuditEnabled set to true" if kind == "mailbox" else \
            "AuditBypassEnabled set to false"
        result.actions.append({**finding, "what": what})
