"""Mailbox delegation: Full Access, Send As and Send on Behalf granted on the user's
mailbox. An attacker with the account (or an admin session) grants themselves, or an
outside account, a way back into the mailbox that survives a password reset."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidTimestamp, ReadOnlyViolation, ServiceError
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.steps.mailbox import EXCHANGE_ROLE, _accepted_domains
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.state import clock
from shared.tenant import exchange as exo
from shared.tenant import exchange_permissions as perms
from shared.tenant.graph import audit_query
from shared.tenant.graph.audit_query import PERM_AUDIT_QUERY_EXCHANGE
from shared.timestamps import parse_time

SELF = "nt authority\\self"
SYSTEM_PRINCIPALS = frozenset({
    "organization management", "exchange servers", "exchange trusted subsystem",
    "managed availability servers", "exchange windows permissions", "discovery management",
    "public folder management", "delegated setup", "administrator", "domain admins",
    "enterprise admins", "exchange domain servers", "exchange organization administrators",
})
"""Principals Exchange itself grants rights to (the Get-MailboxPermission page's defaults);
never touched, whatever the entry says."""

AUDIT_LATENCY = timedelta(minutes=90)
"""How late an Exchange admin record may reach audit search: "60 to 90 minutes" for most
services ("Search the audit log", https://learn.microsoft.com/purview/audit-search). A grant
with no record is called older than the window only when the detection is older than this;
otherwise it is undetermined (as for MFA methods, the attacker's changes cluster around the
detection)."""

KINDS = {"fullAccess": "Full Access", "sendAs": "Send As", "sendOnBehalf": "Send on Behalf"}
OPERATION = {"fullAccess": ("Add-MailboxPermission", "user"),
             "sendAs": ("Add-RecipientPermission", "trustee"),
             "sendOnBehalf": ("Set-Mailbox", "grantsendonbehalfto")}


def system_principal(name: str) -> bool:
    low = name.strip().lower()
    return (low == SELF or low.startswith("nt authority\\") or low.startswith("s-1-5-")
            or low.split("\\")[-1] in SYSTEM_PRINCIPALS)


def _domain(address: str | None) -> str:
    text = str(address or "").strip().lower()
    text = re.sub(r"^smtp:", "", text)
    return text.rsplit("@", 1)[-1] if "@" in text else ""


async def _grants(ctx: StepContext, box: dict[str, Any]) -> list[dict[str, Any]]:
    """Every delegation on the mailbox the step may judge (not inherited, not a deny, not
    SELF or a system principal)."""
    found: list[dict[str, Any]] = []
    for row in await perms.mailbox_permissions(ctx.exchange, ctx.mailbox_id):
        user = str(row.get("User") or "")
        rights = [str(r) for r in exo._names(row.get("AccessRights"))]
        if row.get("IsInherited") or row.get("Deny") or not user or system_principal(user):
            continue
        found.append({"kind": "fullAccess", "principal": user, "rights": rights, "row": row})
    for row in await perms.send_as_on(ctx.exchange, ctx.mailbox_id):
        trustee = str(row.get("Trustee") or "")
        if row.get("IsInherited") or str(row.get("AccessControlType", "Allow")) != "Allow" \
                or not trustee or system_principal(trustee):
            continue
        found.append({"kind": "sendAs", "principal": trustee, "rights": ["SendAs"],
                      "row": row})
    for name in exo._names(box.get("GrantSendOnBehalfTo")):
        found.append({"kind": "sendOnBehalf", "principal": name, "rights": ["SendOnBehalf"],
                      "row": {"GrantSendOnBehalfTo": name}})
    return found


async def _describe(ctx: StepContext, principal: str, internal: set[str],
                    cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Who a principal is: its names (to match audit records) and whether it is outside the
    organisation (a guest, an outside mail user or contact, or an address on a domain that
    is not one of the tenant's)."""
    if principal in cache:
        return cache[principal]
    rec = None if "#EXT#" in principal.upper() else await perms.recipient(ctx.exchange,
                                                                            principal)
    names = {principal}
    external = False
    why = ""
    if "#EXT#" in principal.upper():
        external, why = True, "a guest (#EXT#) account"
    elif rec is not None:
        names |= {str(rec.get(k)) for k in ("Name", "Alias", "DisplayName", "PrimarySmtpAddress",
                                            "WindowsLiveID", "ExternalDirectoryObjectId",
                                            "Identity") if rec.get(k)}
        kind = str(rec.get("RecipientTypeDetails") or "")
        outside = _domain(rec.get("ExternalEmailAddress"))
        address = _domain(rec.get("PrimarySmtpAddress"))
        if kind == "GuestMailUser":
            external, why = True, f"a guest account ({rec.get('PrimarySmtpAddress')})"
        elif outside and outside not in internal:
            external, why = True, f"mail goes outside the organisation ({outside})"
        elif address and address not in internal:
            external, why = True, f"address on {address}, not one of the tenant's domains"
    elif _domain(principal) and _domain(principal) not in internal:
        external, why = True, f"address on {_domain(principal)}, not one of the tenant's domains"
    cache[principal] = {"names": sorted(n for n in names if n), "external": external,
                        "why": why, "recipientType": (rec or {}).get("RecipientTypeDetails")}
    return cache[principal]


def _mailbox_names(ctx: StepContext, box: dict[str, Any]) -> set[str]:
    keys = ("Identity", "Name", "Alias", "DisplayName", "UserPrincipalName",
            "PrimarySmtpAddress", "ExternalDirectoryObjectId", "Guid")
    return {str(box[k]).lower() for k in keys if box.get(k)} | {ctx.user.id.lower(),
                                                                 ctx.user.upn.lower()}


def _targets(record: dict[str, Any], mailbox: set[str]) -> bool:
    params = audit_query.parameters(record)
    for value in (params.get("identity"), record.get("objectId")):
        text = str(value or "").strip().lower()
        if text and (text in mailbox or re.split(r"[\\/]", text)[-1] in mailbox):
            return True
    return False


def _names_in(text: str, names: list[str]) -> bool:
    return any(re.search(r"(?<![\w.@#-])" + re.escape(n) + r"(?![\w.@#-])", text, re.I)
               for n in names if len(n) >= 3)


def _dated_by(grant: dict[str, Any], names: list[str], records: list[dict[str, Any]],
              mailbox: set[str]) -> dict[str, Any] | None:
    """The latest record that made this grant (same cmdlet, mailbox and principal)."""
    operation, param = OPERATION[grant["kind"]]
    hit = None
    for rec in records:
        if str(rec.get("operation") or "").lower() != operation.lower():
            continue
        params = audit_query.parameters(rec)
        value = params.get(param)
        if value is None or not _targets(rec, mailbox):
            continue
        if grant["kind"] == "sendOnBehalf" and value.lstrip().startswith("@{"):
            added = re.search(r"add\s*=\s*([^;}]*)", value, re.I)
            value = added.group(1) if added else ""
        if (value.strip().lower() in {n.lower() for n in names}) or (
                grant["kind"] == "sendOnBehalf" and _names_in(value, names)):
            hit = rec
    return hit


def _when(record: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(str(record.get("createdDateTime") or ""))
    except InvalidTimestamp:
        return None


async def _records(ctx: StepContext, since: datetime) -> tuple[list[dict[str, Any]] | None, str]:
    """The delegation records since `since`, or None and why they could not be read."""
    try:
        rows = await audit_query.exchange_admin_records(
            ctx.graph, audit_query.DELEGATION_OPERATIONS, start=since, end=clock.now(),
            wait_seconds=ctx.policy.delegation.audit_wait_seconds)
    except ReadOnlyViolation:
        return None, "dry run: the audit log query (a write to Graph) was not created"
    except ServiceError as exc:
        if exc.retryable and not isinstance(exc, audit_query.QueryNotFinished):
            raise
        return None, f"audit log not searchable: {exc}"
    return rows, ""


def _label(g: dict[str, Any]) -> str:
    return f"{KINDS[g['kind']]} for {g['principal']}"


async def held_elsewhere(ctx: StepContext, box: dict[str, Any]) -> dict[str, Any]:
    """What the user holds on other mailboxes, as far as one call shows it: Send As
    (Get-RecipientPermission -Trustee). Full Access and Send on Behalf held elsewhere are not
    listable without one call per mailbox (Get-MailboxPermission needs -Identity)."""
    note = ("Full Access and Send on Behalf the user holds on other mailboxes are not listed: "
            "Get-MailboxPermission needs -Identity (one call per mailbox)")
    try:
        rows = await perms.send_as_held_by(ctx.exchange, ctx.mailbox_id)
    except ServiceError as exc:
        if exc.retryable:
            raise
        return {"sendAs": None, "note": f"{note}; Send As not read: {exc}"}
    mine = _mailbox_names(ctx, box)
    return {"sendAs": [{"identity": r.get("Identity"), "trustee": r.get("Trustee")}
                       for r in rows if str(r.get("Identity", "")).lower() not in mine],
            "note": note}


@register
class RemoveMailboxDelegates(Step):
    """Remove Full Access, Send As and Send on Behalf granted on the user's mailbox in the
    risk window or to principals outside the organisation.

    Get-MailboxPermission and Get-RecipientPermission carry no date: each grant is dated by
    the cmdlet's record in the unified audit log (Graph audit log query API). A grant the
    log cannot date is reported as undetermined and removed only when it goes outside the
    organisation. Inherited entries, deny entries, NT AUTHORITY\\SELF and Exchange's own
    principals are never touched."""

    name = "remove_mailbox_delegates"
    graph_permissions = (PERM_AUDIT_QUERY_EXCHANGE,)
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release grants again the delegations this run removed"
    undo_order = 35
    dry_run_description = ("would remove mailbox delegations (Full Access, Send As, Send on "
                           "Behalf) granted in the policy window or to outside principals")

    async def plan(self, ctx: StepContext) -> Plan:
        box = await ctx.mailbox()
        if box is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        since = ctx.detected_at - timedelta(days=ctx.policy.delegation.window_days)
        grants = await _grants(ctx, box)
        elsewhere = await held_elsewhere(ctx, box)
        if not grants:
            return Plan.nothing_to_do("no delegation on the mailbox", heldElsewhere=elsewhere)
        internal = await _accepted_domains(ctx)
        records, audit_note = await _records(ctx, since)
        mailbox = _mailbox_names(ctx, box)
        cache: dict[str, dict[str, Any]] = {}
        settled = ctx.detected_at + AUDIT_LATENCY <= clock.now()
        assessed: list[dict[str, Any]] = []
        for g in grants:
            who = await _describe(ctx, g["principal"], internal, cache)
            record = (_dated_by(g, who["names"], records, mailbox)
                      if records is not None else None)
            item = {"kind": g["kind"], "principal": g["principal"], "rights": g["rights"],
                    "external": who["external"], "recipientType": who["recipientType"],
                    "row": g["row"]}
            reasons = []
            if who["external"]:
                reasons.append(f"outside the organisation: {who['why']}")
            if record is not None:
                item["granted"] = record.get("createdDateTime")
                item["auditRecordId"] = record.get("id")
                when = _when(record)
                if when is not None and when >= since:
                    reasons.append(f"granted {record.get('createdDateTime')}, in the window "
                                   f"(since {since.isoformat()})")
            if reasons:
                item.update(verdict="remove", reasons=reasons)
            elif records is None:
                item.update(verdict="undetermined", reasons=[audit_note])
            elif not settled:
                item.update(verdict="undetermined", reasons=[
                    "no grant record yet: audit records may take up to "
                    f"{int(AUDIT_LATENCY.total_seconds() // 60)} minutes to arrive"])
            else:
                item.update(verdict="keep", reasons=[
                    f"no grant record since {since.isoformat()} (granted earlier)"])
            assessed.append(item)
        remove = [a for a in assessed if a["verdict"] == "remove"]
        unsure = [a for a in assessed if a["verdict"] == "undetermined"]
        data = {"since": since.isoformat(), "grants": assessed, "heldElsewhere": elsewhere,
                "audit": {"searched": records is not None,
                          "records": len(records or []), "note": audit_note}}
        if not remove and not unsure:
            return Plan(nothing="no delegation granted in the window or to an outside "
                                "principal", data=data)
        actions = [f"remove {_label(a)} ({'; '.join(a['reasons'])})" for a in remove]
        actions += [f"report {_label(a)} as undetermined ({'; '.join(a['reasons'])})"
                    for a in unsure]
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        for a in plan.data["grants"]:
            if a["verdict"] != "remove":
                continue
            if a["kind"] == "fullAccess":
                await perms.remove_mailbox_permission(ctx.exchange, ctx.mailbox_id,
                                                      a["principal"], a["rights"])
            elif a["kind"] == "sendAs":
                await perms.remove_send_as(ctx.exchange, ctx.mailbox_id, a["principal"])
            else:
                await perms.change_send_on_behalf(ctx.exchange, ctx.mailbox_id,
                                                  remove=[a["principal"]])
            changes.append({"what": "mailboxDelegate", "kind": a["kind"],
                            "principal": a["principal"], "rights": a["rights"],
                            "reasons": a["reasons"], "from": "granted", "to": "removed"})
        ctx.forget("mailbox")
        unsure = [a for a in plan.data["grants"] if a["verdict"] == "undetermined"]
        parts = [f"removed {len(changes)} delegation(s)"] if changes else []
        if unsure:
            parts.append(f"{len(unsure)} delegation(s) undetermined, left for a person: "
                         + ", ".join(_label(a) for a in unsure))
        status = StepStatus.PARTIAL if unsure else StepStatus.DONE
        data = {k: plan.data[k] for k in ("since", "grants", "heldElsewhere", "audit")}
        return StepResult(step=self.name, status=status, summary="; ".join(parts),
                          changes=changes, data=data)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        removed = [c for c in result.changes if c.get("what") == "mailboxDelegate"]
        if not removed:
            return None
        box = await exo.get_mailbox(ctx.exchange, ctx.mailbox_id) or {}
        still = {(g["kind"], g["principal"].lower()) for g in await _grants(ctx, box)}
        left = [f"{KINDS[c['kind']]} for {c['principal']} still granted" for c in removed
                if (c["kind"], str(c["principal"]).lower()) in still]
        return Verification(verified=not left, differences=left)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Grant again what the run removed, through the cmdlet that removed it."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") != "mailboxDelegate":
                continue
            kind, principal = str(c["kind"]), str(c["principal"])
            rights = [str(r) for r in c.get("rights") or ["FullAccess"]]

            async def grant(kind: str = kind, principal: str = principal,
                            rights: list[str] = rights) -> None:
                if kind == "fullAccess":
                    await perms.add_mailbox_permission(ctx.exchange, ctx.mailbox, principal,
                                                       rights)
                elif kind == "sendAs":
                    await perms.add_send_as(ctx.exchange, ctx.mailbox, principal)
                else:
                    await perms.change_send_on_behalf(ctx.exchange, ctx.mailbox,
                                                      add=[principal])
            items.append(Undo(f"delegate:{kind}:{principal}",
                              f"{KINDS.get(kind, kind)} for {principal} granted again",
                              grant))
        return items
