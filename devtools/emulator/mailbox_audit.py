"""Mailbox auditing as Exchange Online documents it ("mailbox auditing on by default").

Source for everything here ("Manage mailbox auditing"):
https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide
https://go.microsoft.com/fwlink/p/?LinkID=626109

- The organisation switch (Get-OrganizationConfig AuditDisabled false) overrides the
  mailbox's AuditEnabled: the audited actions are logged even when AuditEnabled is False.
  While the switch is off nothing is logged, whatever AuditEnabled or a bypass says.
- A bypass association stops every action *by that user* from being logged, on any mailbox.
- Each sign-in type (Admin, Delegate, Owner) audits Microsoft's default actions until an
  admin customises its list (-AuditAdmin/-AuditDelegate/-AuditOwner, a list that replaces,
  or @{Add=...}/@{Remove=...}); a customised type drops out of DefaultAuditSet and no longer
  gets Microsoft's defaults. `Set-Mailbox -DefaultAuditSet <types>` restores the defaults of
  the types named and leaves the others as they are.
- MailItemsAccessed and Send are E5 (Audit Premium) actions. By default only mailboxes with
  an Audit (Premium) licence send their events to audit log search; for the others the
  documented workaround is `Set-Mailbox -AuditEnabled $true`: that is the only effect the
  emulator gives AuditEnabled while the organisation switch is on.

Seed (mailbox): `auditPremium` (licence includes Audit (Premium); default false),
`auditOwner` / `auditDelegate` / `auditAdmin` (present = that type was customised).
The docs do not say how the REST endpoint serialises @{Add=...}; the emulator accepts a JSON
object {"Add": [...]} / {"Remove": [...]} (as the module sends a hashtable).
"""

from __future__ import annotations

from typing import Any

from .messages import ExchangeError

LOGON_TYPES = ("Admin", "Delegate", "Owner")
FIELD = {"Admin": "auditAdmin", "Delegate": "auditDelegate", "Owner": "auditOwner"}
PREMIUM_ONLY = {"MailItemsAccessed", "Send", "SearchQueryInitiated"}
_ACCEPTED_NOT_AUDITED = {"AddFolderPermissions", "ModifyFolderPermissions",
                         "RemoveFolderPermissions"}

# Defaults (an asterisk in the page's table) for user and shared mailboxes.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "Admin": ("ApplyRecord", "Create", "HardDelete", "MailItemsAccessed", "MoveToDeletedItems",
              "Send", "SendAs", "SendOnBehalf", "SoftDelete", "Update",
              "UpdateCalendarDelegation", "UpdateFolderPermissions", "UpdateInboxRules"),
    "Delegate": ("ApplyRecord", "Create", "HardDelete", "MailItemsAccessed",
                 "MoveToDeletedItems", "SendAs", "SendOnBehalf", "SoftDelete", "Update",
                 "UpdateFolderPermissions", "UpdateInboxRules"),
    "Owner": ("ApplyRecord", "HardDelete", "MailItemsAccessed", "MoveToDeletedItems", "Send",
              "SoftDelete", "Update", "UpdateCalendarDelegation", "UpdateFolderPermissions",
              "UpdateInboxRules"),
}
# Every action the page's table marks as loggable for the type (a check mark).
AVAILABLE: dict[str, frozenset[str]] = {
    "Admin": frozenset(DEFAULTS["Admin"]) | {"Copy", "FolderBind", "MessageBind", "Move",
                                             "RecordDelete", "UpdateComplianceTag"},
    "Delegate": frozenset(DEFAULTS["Delegate"]) | {"FolderBind", "Move", "RecordDelete",
                                                   "UpdateComplianceTag"},
    "Owner": frozenset(DEFAULTS["Owner"]) | {"Create", "MailboxLogin", "Move", "RecordDelete",
                                             "SearchQueryInitiated", "UpdateComplianceTag"},
}


def default_actions(mb: dict, logon: str) -> list[str]:
    """Microsoft's defaults for the type, as the mailbox's licence allows."""
    premium = bool(mb.get("auditPremium"))
    return [a for a in DEFAULTS[logon] if premium or a not in PREMIUM_ONLY]


def audited_actions(mb: dict, logon: str) -> list[str]:
    custom = mb.get(FIELD[logon])
    return list(custom) if custom is not None else default_actions(mb, logon)


def default_audit_set(mb: dict) -> list[str]:
    return [t for t in LOGON_TYPES if mb.get(FIELD[t]) is None]


def view(mb: dict) -> dict[str, Any]:
    """The audit properties Get-Mailbox shows."""
    return {"AuditAdmin": audited_actions(mb, "Admin"),
            "AuditDelegate": audited_actions(mb, "Delegate"),
            "AuditOwner": audited_actions(mb, "Owner"),
            "DefaultAuditSet": default_audit_set(mb)}


def _names(value: Any, param: str) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    if not all(isinstance(i, str) for i in items):
        raise ExchangeError(400, "ParameterBindingException",
                            f"Cannot bind parameter '{param}': invalid value.")
    return [i.strip().strip('"') for i in items if i.strip()]


def _check(logon: str, actions: list[str], param: str, premium: bool) -> list[str]:
    canon = {a.lower(): a for a in AVAILABLE[logon] | _ACCEPTED_NOT_AUDITED}
    out = []
    for a in actions:
        name = canon.get(a.lower())
        if name is None or (name in PREMIUM_ONLY and not premium):
            # The page: E5-only actions are "available only for E5 ... users"; the error
            # text is not documented.
            raise ExchangeError(400, "ParameterBindingException",
                                f"Cannot bind parameter '{param}'. The value '{a}' is not a "
                                f"valid mailbox action for the {logon} logon type.")
        if name not in out:
            out.append(name)
    return out


def set_actions(mb: dict, logon: str, value: Any) -> None:
    """-AuditAdmin/-AuditDelegate/-AuditOwner: replace, or {"Add": [...]}/{"Remove": [...]}.
    Any of them makes the type customised (it leaves DefaultAuditSet)."""
    param = "Audit" + logon
    premium = bool(mb.get("auditPremium"))
    current = audited_actions(mb, logon)
    if isinstance(value, dict):
        ops = {str(k).lower(): v for k, v in value.items()}
        if not ops or set(ops) - {"add", "remove"}:
            raise ExchangeError(400, "ParameterBindingException",
                                f"Cannot bind parameter '{param}': use Add or Remove.")
        adds = _check(logon, _names(ops.get("add", []), param), param, premium)
        removes = {a.lower() for a in _names(ops.get("remove", []), param)}
        new = [a for a in current if a.lower() not in removes]
        new += [a for a in adds if a not in new]
    else:
        new = _check(logon, _names(value, param), param, premium)
    mb[FIELD[logon]] = new


def restore_defaults(mb: dict, value: Any) -> None:
    """-DefaultAuditSet: the types named get Microsoft's defaults back; others unchanged."""
    for name in _names(value, "DefaultAuditSet"):
        logon = next((t for t in LOGON_TYPES if t.lower() == name.lower()), None)
        if logon is None:
            raise ExchangeError(400, "ParameterBindingException",
                                f"Cannot bind parameter 'DefaultAuditSet'. Invalid value "
                                f"'{name}'.")
        mb.pop(FIELD[logon], None)


def is_logged(organization: dict, mailbox: dict, actor_mailbox: dict | None, logon: str,
              action: str) -> bool:
    """Whether an action by `actor` on `mailbox` lands in the mailbox audit log.
    AuditEnabled plays no part: on-by-default ignores it."""
    if organization.get("auditDisabled"):
        return False
    if actor_mailbox is not None and actor_mailbox.get("auditBypassEnabled"):
        return False
    return action in audited_actions(mailbox, logon)


def is_searchable(organization: dict, mailbox: dict) -> bool:
    """Whether the mailbox's logged events reach audit log search / the Management
    Activity API: by default only with Audit (Premium); otherwise after AuditEnabled $true."""
    if organization.get("auditDisabled"):
        return False
    return bool(mailbox.get("auditPremium")) or bool(mailbox.get("auditEnabled"))
