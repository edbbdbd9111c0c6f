"""Mailbox audit sweep: the organisation-wide switch, mailboxes whose audited actions leave out
what an investigation needs (or whose events cannot reach audit search), accounts with an
audit bypass. Attackers turn auditing off to hide what they read and forward.

Mailbox auditing on by default ignores a mailbox's AuditEnabled ("Manage mailbox auditing":
https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide),
so the sweep judges each mailbox by `exo.review_mailbox_audit`, never by AuditEnabled alone.
Customised audited actions cannot be filtered for on the server (the page documents no
filter on them), so the mailboxes come in pages of 1000 and the bypass associations too: the
calls grow with pages and offenders, not with mailboxes one by one. Each offender is fixed
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
    description = ("mailbox auditing: organisation switch, audited actions, audit search, "
                   "bypass")
    schedule_setting = "RESPONDER_SWEEP_AUDIT_SCHEDULE"
    default_schedule = "0 15 2 * * *"
    graph_permissions = (PERM_MEMBER_READ, PERM_USER_READ)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    why = "Find and fix mailbox auditing turned off (organisation, audited actions, bypass)."

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
        for row in await exo.all_mailboxes(ctx.exchange):
            review = exo.review_mailbox_audit(row)
            if review.actions_off or review.not_searchable:
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
        review = exo.review_mailbox_audit(row) if kind == "mailbox" else None
        if review is not None:
            identity = str(row.get("UserPrincipalName") or row.get("Identity"))
            finding = _mailbox_finding(identity, review)
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
            if review is not None:
                await exo.restore_mailbox_audit(ctx.exchange, identity, review,
                                                audit_enabled=review.not_searchable)
            else:
                await exo.set_audit_bypass(ctx.exchange, identity, False)
        what = _mailbox_fix(review) if review is not None else "AuditBypassEnabled set to false"
        result.actions.append({**finding, "what": what})


def _mailbox_finding(identity: str, review: exo.AuditReview) -> dict[str, Any]:
    """Name what is actually off: missing audited actions, or events not reaching search."""
    whys = [f"{logon} audited actions lack {', '.join(missing)}"
            for logon, missing in review.missing.items()]
    if review.not_searchable:
        licence = ("no Audit (Premium) licence" if review.premium is False
                   else "Audit (Premium) licence unknown")
        whys.append(f"AuditEnabled is false and {licence}: the mailbox's events do not "
                    "reach audit log search")
    kind = "mailbox-audit-actions-off" if review.actions_off else "mailbox-audit-not-searchable"
    return {"kind": kind, "identity": identity, "why": "; ".join(whys)}


def _mailbox_fix(review: exo.AuditReview) -> str:
    done = [f"default {logon} audited actions restored" for logon in review.restore]
    done += [f"{', '.join(a)} added to {logon} audited actions"
             for logon, a in review.add.items()]
    if review.not_searchable:
        done.append("AuditEnabled set to true")
    return "; ".join(done)
