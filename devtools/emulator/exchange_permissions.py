"""Mailbox delegation, mobile devices and client protocols in the Exchange emulation, plus
the unified audit log records Exchange writes for the admin cmdlets that change them.

Cmdlets (https://learn.microsoft.com/powershell/module/exchange/<name>):
- Get-/Add-/Remove-MailboxPermission: rows carry Identity, User, AccessRights, IsInherited,
  Deny, InheritanceType (the Get-MailboxPermission page's description); -Identity is
  required, -User only filters that one mailbox. Every mailbox has FullAccess +
  ReadPermission for NT AUTHORITY\\SELF (directly assigned) and inherited system entries.
- Get-/Add-/Remove-RecipientPermission: Send As; Get takes -Identity and/or -Trustee (the
  page's Example 1 lists what a trustee holds on every recipient). The page does not list
  output properties: the row carries Identity, Trustee, AccessControlType, AccessRights,
  IsInherited, InheritanceType as the module prints them.
- Set-Mailbox -GrantSendOnBehalfTo: a multi-valued property, @{Add=...; Remove=...} or a
  full list; Get-Mailbox shows it.
- Get-Recipient: resolves a principal (how the responder tells a guest from a colleague).
- Get-MobileDevice -Mailbox, Clear-MobileDevice -Identity [-AccountOnly] [-Cancel]: the
  pages list no output properties; DeviceId, DeviceType, DeviceModel, DeviceOS,
  FriendlyName, ClientType, FirstSyncTime, DeviceAccessState, DeviceAccessStateReason are
  the MobileDevice object's properties as Exchange prints them.
- Get-/Set-CASMailbox: ImapEnabled, PopEnabled, EwsEnabled, ActiveSyncEnabled, MAPIEnabled,
  OWAEnabled, ActiveSyncBlockedDeviceIDs, ActiveSyncAllowedDeviceIDs (multi-valued:
  "@{Add=...; Remove=...}" or a full list, $null clears; Set-CASMailbox page). A device on
  the mailbox's blocked list shows DeviceAccessState Blocked (reason Individual).

Each add/remove/set of a grant writes an `exchangeAdmin` record (operation = the cmdlet,
auditData.Parameters = [{Name, Value}]) to `tenant.exchange_audit`, the store the Graph
audit log query API reads (graph_audit_query.py). Seeds date a grant with `addedDateTime`
(a record at that time) or leave it unaudited (`"audited": false`, a grant older than the
log's retention)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .exchange_routes import _bool, _Call, _find_mailbox_user, _mailbox_users, _not_found
from .messages import ExchangeError
from .tenant import Tenant, stable_id
from .timefmt import iso7, parse_dt

SELF = "NT AUTHORITY\\SELF"
SYSTEM_ENTRIES = (
    # (User, AccessRights, Deny): inherited entries the Get-MailboxPermission page lists
    ("NT AUTHORITY\\SYSTEM", ["FullAccess"], False),
    ("NT AUTHORITY\\NETWORK", ["ReadPermission"], False),
    ("Organization Management", ["FullAccess"], True),
    ("Organization Management", ["ChangeOwner", "ChangePermission", "DeleteItem",
                                 "ReadPermission"], False),
)
PROTOCOL_FLAGS = ("ImapEnabled", "PopEnabled", "EwsEnabled", "ActiveSyncEnabled",
                  "MAPIEnabled", "OWAEnabled")
DEVICE_LISTS = ("ActiveSyncBlockedDeviceIDs", "ActiveSyncAllowedDeviceIDs")
VALID_RIGHTS = {"changeowner", "changepermission", "deleteitem", "externalaccount",
                "fullaccess", "readpermission"}


# ------------------------------------------------------------------ seed normalisation
def normalise_mailbox(tenant: Tenant, user: dict, mb: dict) -> None:
    """Fill a seeded mailbox's delegation, devices and protocol settings (in place) and log
    the dated grants as admin audit records."""
    perms = []
    for p in mb.get("permissions") or []:
        p = dict(p)
        p["accessRights"] = list(p.get("accessRights") or ["FullAccess"])
        p.setdefault("isInherited", False)
        p.setdefault("deny", False)
        p.setdefault("inheritanceType", "All")
        perms.append(p)
    if not any(p["user"] == SELF for p in perms):
        perms.insert(0, {"user": SELF, "accessRights": ["FullAccess", "ReadPermission"],
                         "isInherited": False, "deny": False, "inheritanceType": "All"})
    for name, rights, deny in SYSTEM_ENTRIES:
        if not any(p["user"] == name and p["deny"] == deny for p in perms):
            perms.append({"user": name, "accessRights": list(rights), "isInherited": True,
                          "deny": deny, "inheritanceType": "All"})
    mb["permissions"] = perms
    mb["sendAs"] = [dict(s) if isinstance(s, dict) else {"trustee": s}
                    for s in mb.get("sendAs") or []]
    mb["sendOnBehalf"] = [dict(s) if isinstance(s, dict) else {"trustee": s}
                          for s in mb.get("sendOnBehalf") or []]
    devices = []
    for i, d in enumerate(mb.get("mobileDevices") or []):
        d = dict(d)
        d.setdefault("deviceId", stable_id("device", user["id"], i).replace("-", "")[:32]
                     .upper())
        d.setdefault("deviceType", "iPhone")
        d.setdefault("deviceModel", d["deviceType"])
        d.setdefault("deviceOS", None)
        d.setdefault("friendlyName", None)
        d.setdefault("clientType", "EAS")
        d.setdefault("userAgent", None)
        d.setdefault("firstSyncTime", iso7())
        d.setdefault("deviceAccessState", "Allowed")
        d.setdefault("wipeRequests", [])
        devices.append(d)
    mb["mobileDevices"] = devices
    cas = {flag: True for flag in PROTOCOL_FLAGS}
    cas.update({k: list(v) if k in DEVICE_LISTS else v
                for k, v in (mb.get("cas") or {}).items()})
    for key in DEVICE_LISTS:
        cas.setdefault(key, [])
    mb["cas"] = cas
    alias = mb["alias"]
    for p in perms:
        if p.get("addedDateTime") and p.pop("audited", True):
            _record(tenant, "Add-MailboxPermission", alias, p["addedDateTime"],
                    {"Identity": alias, "User": p["user"],
                     "AccessRights": ",".join(p["accessRights"])})
    for s in mb["sendAs"]:
        if s.get("addedDateTime") and s.pop("audited", True):
            _record(tenant, "Add-RecipientPermission", alias, s["addedDateTime"],
                    {"Identity": alias, "Trustee": s["trustee"], "AccessRights": "SendAs"})
    for s in mb["sendOnBehalf"]:
        if s.get("addedDateTime") and s.pop("audited", True):
            _record(tenant, "Set-Mailbox", alias, s["addedDateTime"],
                    {"Identity": alias, "GrantSendOnBehalfTo": f"@{{Add={s['trustee']}}}"})


def _record(tenant: Tenant, operation: str, object_id: str, when: str | None,
            parameters: dict[str, Any]) -> dict:
    """One unified audit log record of an Exchange admin cmdlet, in the shape the Graph
    audit log query API returns (auditLogRecord with the ExchangeAdmin auditData schema:
    https://learn.microsoft.com/office/office-365-management-api/office-365-management-activity-api-schema)."""
    stamp = iso7(parse_dt(when)) if when else iso7()
    rid = stable_id("uac", len(tenant.exchange_audit), operation, object_id, stamp)
    actor = "admin@" + (tenant.domains[0]["id"] if tenant.domains else "contoso.com")
    rec = {
        "id": rid, "createdDateTime": stamp, "auditLogRecordType": "exchangeAdmin",
        "operation": operation, "organizationId": tenant.tenant_id, "userType": "admin",
        "userId": actor, "service": "Exchange", "objectId": object_id,
        "userPrincipalName": actor, "clientIp": None, "administrativeUnits": [],
        "auditData": {
            "@odata.type": "#microsoft.graph.security.exchangeAdminAuditRecord",
            "CreationTime": stamp[:19], "Id": rid, "Operation": operation,
            "OrganizationId": tenant.tenant_id, "RecordType": 1, "ResultStatus": "True",
            "UserType": 2, "Workload": "Exchange", "ObjectId": object_id, "UserId": actor,
            "ExternalAccess": False,
            "Parameters": [{"Name": k, "Value": str(v)} for k, v in parameters.items()],
        },
    }
    tenant.exchange_audit.append(rec)
    return rec


# ------------------------------------------------------------------ principals
def _principal(tenant: Tenant, value: Any) -> dict:
    """The directory object a -User/-Trustee value names (user or group), or not found."""
    key = str(value).strip()
    low = key.lower()
    for u in tenant.iter_users():
        mb = u.get("mailbox") or {}
        names = {u["id"].lower(), u["userPrincipalName"].lower(), (u.get("mail") or "").lower(),
                 (u.get("displayName") or "").lower(), str(mb.get("alias") or "").lower(),
                 _name(u).lower()}
        if low in names:
            return {"kind": "user", "record": u}
    for g in tenant.groups.values():
        if low in {g["id"].lower(), str(g.get("displayName") or "").lower()}:
            return {"kind": "group", "record": g}
    raise _not_found(key)


def _name(u: dict) -> str:
    """A recipient's Name as Exchange shows it in multi-valued properties."""
    mb = u.get("mailbox") or {}
    return str(mb.get("alias") or u["userPrincipalName"].split("@")[0])


def _shown(p: dict) -> str:
    """How a principal appears in User / Trustee: a user's UPN, a group's name."""
    rec = p["record"]
    return rec["userPrincipalName"] if p["kind"] == "user" else str(rec["displayName"])


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _rights(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    out = [str(i).strip() for i in items if str(i).strip()]
    for r in out:
        if r.lower() not in VALID_RIGHTS:
            raise ExchangeError(400, "ParameterBindingException",
                                f"Cannot bind parameter 'AccessRights'. Cannot convert value "
                                f"\"{r}\" to type \"Microsoft.Exchange.Management."
                                "RecipientTasks.MailboxRights\".")
    return out


def _multi(value: Any, current: list[str]) -> list[str]:
    """A multi-valued property update: {"Add": [...], "Remove": [...]} or a full list
    (None clears). The JSON object is how the REST endpoint carries a hashtable."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "$null")):
        return []
    if isinstance(value, dict):
        keys = {k.lower(): v for k, v in value.items()}
        out = list(current)
        for item in _as_list(keys.get("add")):
            if not any(_same(item, c) for c in out):
                out.append(item)
        removing = _as_list(keys.get("remove"))
        return [c for c in out if not any(_same(c, r) for r in removing)]
    return _as_list(value)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(i).strip() for i in items if str(i).strip()]


# ------------------------------------------------------------------ mailbox permissions
def _permission_row(u: dict, p: dict) -> dict:
    return {"Identity": u["mailbox"]["alias"], "User": p["user"],
            "AccessRights": list(p["accessRights"]), "IsInherited": bool(p["isInherited"]),
            "Deny": bool(p["deny"]), "InheritanceType": p.get("inheritanceType", "All"),
            "IsValid": True, "ObjectState": "Unchanged"}


def get_mailbox_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "User", "Owner", "ResultSize", "GroupMailbox",
               "IncludeUnresolvedPermissions", "IncludeSoftDeletedUserPermissions")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    rows = [_permission_row(u, p) for p in u["mailbox"]["permissions"]]
    if call.has("User"):
        who = call.get("User")
        if _same(str(who), SELF):
            rows = [r for r in rows if r["User"] == SELF]
        else:
            shown = _shown(_principal(call.tenant, who))
            rows = [r for r in rows if _same(r["User"], shown)]
    return rows


def add_mailbox_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "User", "AccessRights", "AutoMapping", "InheritanceType", "Deny")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    shown = _shown(_principal(call.tenant, call.required("User")))
    rights = _rights(call.required("AccessRights"))
    deny = call.has("Deny") and _bool(call.get("Deny"), "Deny")
    perms = u["mailbox"]["permissions"]
    entry = next((p for p in perms if _same(p["user"], shown) and not p["isInherited"]
                  and p["deny"] == deny), None)
    if entry is None:
        entry = {"user": shown, "accessRights": [], "isInherited": False, "deny": deny,
                 "inheritanceType": str(call.get("InheritanceType") or "All")}
        perms.append(entry)
    for r in rights:
        if r not in entry["accessRights"]:
            entry["accessRights"].append(r)
    entry["addedDateTime"] = iso7()
    _record(call.tenant, "Add-MailboxPermission", u["mailbox"]["alias"], None,
            {"Identity": call.get("Identity"), "User": call.get("User"),
             "AccessRights": ",".join(rights)})
    call.wrote = True
    return [_permission_row(u, entry)]


def remove_mailbox_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "User", "AccessRights", "InheritanceType", "Deny",
               "BypassMasterAccountSid", "ResetDefault")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    who = str(call.required("User"))
    shown = who if _same(who, SELF) else _shown(_principal(call.tenant, who))
    rights = {r.lower() for r in _rights(call.required("AccessRights"))}
    deny = call.has("Deny") and _bool(call.get("Deny"), "Deny")
    perms = u["mailbox"]["permissions"]
    entry = next((p for p in perms if _same(p["user"], shown) and not p["isInherited"]
                  and p["deny"] == deny), None)
    if entry is None or not rights & {r.lower() for r in entry["accessRights"]}:
        # Exchange warns and changes nothing when the ACE is not there
        call.warnings.append(f"An Access Control Entry for the given user '{who}' doesn't "
                             "exist on the object.")
        return []
    entry["accessRights"] = [r for r in entry["accessRights"] if r.lower() not in rights]
    if not entry["accessRights"]:
        perms.remove(entry)
    _record(call.tenant, "Remove-MailboxPermission", u["mailbox"]["alias"], None,
            {"Identity": call.get("Identity"), "User": who,
             "AccessRights": ",".join(sorted(rights))})
    call.wrote = True
    return []


# ------------------------------------------------------------------ send as
def _send_as_row(u: dict, s: dict) -> dict:
    return {"Identity": u["mailbox"]["alias"], "Trustee": s["trustee"],
            "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": False,
            "InheritanceType": "None"}


def get_recipient_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "Trustee", "AccessRights", "ResultSize", "ReadFromDomainController")
    users = ([_find_mailbox_user(call.tenant, call.get("Identity"))] if call.has("Identity")
             else _mailbox_users(call.tenant))
    rows = [_send_as_row(u, s) for u in users for s in u["mailbox"]["sendAs"]]
    if call.has("Trustee"):
        shown = _shown(_principal(call.tenant, call.get("Trustee")))
        rows = [r for r in rows if _same(r["Trustee"], shown)]
    return rows


def add_recipient_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "Trustee", "AccessRights")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    shown = _shown(_principal(call.tenant, call.required("Trustee")))
    _send_as_only(call)
    send_as = u["mailbox"]["sendAs"]
    entry = next((s for s in send_as if _same(s["trustee"], shown)), None)
    if entry is None:
        entry = {"trustee": shown}
        send_as.append(entry)
    entry["addedDateTime"] = iso7()
    _record(call.tenant, "Add-RecipientPermission", u["mailbox"]["alias"], None,
            {"Identity": call.get("Identity"), "Trustee": call.get("Trustee"),
             "AccessRights": "SendAs"})
    call.wrote = True
    return [_send_as_row(u, entry)]


def remove_recipient_permission(call: _Call) -> list[dict]:
    call.allow("Identity", "Trustee", "AccessRights", "Deny")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    shown = _shown(_principal(call.tenant, call.required("Trustee")))
    _send_as_only(call)
    send_as = u["mailbox"]["sendAs"]
    entry = next((s for s in send_as if _same(s["trustee"], shown)), None)
    if entry is None:
        call.warnings.append(f"The ACE for '{call.get('Trustee')}' doesn't exist on the "
                             "object.")
        return []
    send_as.remove(entry)
    _record(call.tenant, "Remove-RecipientPermission", u["mailbox"]["alias"], None,
            {"Identity": call.get("Identity"), "Trustee": call.get("Trustee"),
             "AccessRights": "SendAs"})
    call.wrote = True
    return []


def _send_as_only(call: _Call) -> None:
    rights = _as_list(call.required("AccessRights"))
    if [r.lower() for r in rights] != ["sendas"]:
        raise ExchangeError(400, "ParameterBindingException",
                            "Cannot bind parameter 'AccessRights': the only valid value is "
                            "SendAs.")


# ------------------------------------------------------------------ send on behalf
def send_on_behalf_names(tenant: Tenant, mb: dict) -> list[str]:
    """GrantSendOnBehalfTo as Get-Mailbox shows it: the recipients' names."""
    out = []
    for s in mb.get("sendOnBehalf") or []:
        try:
            p = _principal(tenant, s["trustee"])
        except ExchangeError:
            out.append(s["trustee"])
            continue
        rec = p["record"]
        out.append(_name(rec) if p["kind"] == "user" else str(rec["displayName"]))
    return out


def set_send_on_behalf(call: _Call, u: dict) -> bool:
    """Apply -GrantSendOnBehalfTo; returns True when the list changed."""
    mb = u["mailbox"]
    value = call.get("GrantSendOnBehalfTo")
    current = {p["trustee"].lower(): p for p in mb["sendOnBehalf"]}

    def key(name: str) -> str:
        return _shown(_principal(call.tenant, name)).lower()

    if isinstance(value, dict):
        ops = {k.lower(): v for k, v in value.items()}
        wanted = dict(current)
        for name in _as_list(ops.get("add")):
            k = key(name)
            wanted.setdefault(k, {"trustee": _shown(_principal(call.tenant, name)),
                                  "addedDateTime": iso7()})
        for name in _as_list(ops.get("remove")):
            wanted.pop(key(name), None)
    else:
        wanted = {}
        for name in _multi(value, []):
            k = key(name)
            wanted[k] = current.get(k) or {"trustee": _shown(_principal(call.tenant, name)),
                                           "addedDateTime": iso7()}
    if set(wanted) == set(current):
        return False
    mb["sendOnBehalf"] = list(wanted.values())
    _record(call.tenant, "Set-Mailbox", mb["alias"], None,
            {"Identity": call.get("Identity"), "GrantSendOnBehalfTo": _text(value)})
    return True


def _text(value: Any) -> str:
    """A parameter value as the audit record's Parameters show it (PowerShell's text)."""
    if isinstance(value, dict):
        inner = "; ".join(f"{k}={','.join(_as_list(v))}" for k, v in value.items())
        return "@{" + inner + "}"
    return ",".join(_as_list(value))


# ------------------------------------------------------------------ recipients
def get_recipient(call: _Call) -> list[dict]:
    call.allow("Identity", "ResultSize", "RecipientTypeDetails")
    p = _principal(call.tenant, call.required("Identity"))
    rec = p["record"]
    if p["kind"] == "group":
        if not rec.get("mailEnabled"):
            raise _not_found(call.get("Identity"))
        return [{"Identity": rec["displayName"], "Name": rec["displayName"],
                 "DisplayName": rec["displayName"], "RecipientType": "MailUniversalSecurityGroup",
                 "RecipientTypeDetails": "MailUniversalSecurityGroup",
                 "PrimarySmtpAddress": rec.get("mail"), "ExternalEmailAddress": None,
                 "ExternalDirectoryObjectId": rec["id"]}]
    guest = rec.get("userType") == "Guest"
    mailbox = bool(rec.get("mailbox"))
    return [{"Identity": _name(rec), "Name": _name(rec), "Alias": _name(rec),
             "DisplayName": rec.get("displayName"),
             "RecipientType": "UserMailbox" if mailbox else "MailUser",
             "RecipientTypeDetails": ("UserMailbox" if mailbox else
                                      "GuestMailUser" if guest else "MailUser"),
             "PrimarySmtpAddress": rec.get("mail") or rec["userPrincipalName"],
             "WindowsLiveID": rec["userPrincipalName"],
             "ExternalEmailAddress": f"SMTP:{rec.get('mail')}" if guest else None,
             "ExternalDirectoryObjectId": rec["id"]}]


# ------------------------------------------------------------------ mobile devices
def _device_row(u: dict, d: dict) -> dict:
    cas = u["mailbox"]["cas"]
    state, reason = d.get("deviceAccessState", "Allowed"), "Global"
    if any(_same(d["deviceId"], x) for x in cas["ActiveSyncBlockedDeviceIDs"]):
        state, reason = "Blocked", "Individual"
    elif any(_same(d["deviceId"], x) for x in cas["ActiveSyncAllowedDeviceIDs"]):
        state, reason = "Allowed", "Individual"
    alias = u["mailbox"]["alias"]
    return {"Identity": f"{alias}\\ExchangeActiveSyncDevices\\{d['deviceType']}"
                        f"\u00a7{d['deviceId']}",
            "Guid": stable_id("mobiledevice", u["id"], d["deviceId"]),
            "DeviceId": d["deviceId"], "DeviceType": d["deviceType"],
            "DeviceModel": d["deviceModel"], "DeviceOS": d["deviceOS"],
            "FriendlyName": d["friendlyName"], "DeviceUserAgent": d["userAgent"],
            "ClientType": d["clientType"], "FirstSyncTime": d["firstSyncTime"],
            "DeviceAccessState": state, "DeviceAccessStateReason": reason,
            "UserDisplayName": u.get("displayName")}


def get_mobile_device(call: _Call) -> list[dict]:
    call.allow("Mailbox", "Identity", "ActiveSync", "OWAforDevices", "RestApi",
               "UniversalOutlook", "ResultSize", "Filter")
    if call.has("Identity"):
        u, d = _find_device(call, call.get("Identity"))
        return [_device_row(u, d)]
    users = ([_find_mailbox_user(call.tenant, call.get("Mailbox"))] if call.has("Mailbox")
             else _mailbox_users(call.tenant))
    rows = [_device_row(u, d) for u in users for d in u["mailbox"]["mobileDevices"]]
    if call.has("ActiveSync") and _bool(call.get("ActiveSync"), "ActiveSync"):
        rows = [r for r in rows if r["ClientType"] == "EAS"]
    return rows


def _find_device(call: _Call, identity: Any) -> tuple[dict, dict]:
    key = str(identity).strip().lower()
    for u in _mailbox_users(call.tenant):
        for d in u["mailbox"]["mobileDevices"]:
            row = _device_row(u, d)
            if key in (row["Identity"].lower(), row["Guid"].lower(), d["deviceId"].lower()):
                return u, d
    raise _not_found(identity)


def clear_mobile_device(call: _Call) -> list[dict]:
    call.allow("Identity", "AccountOnly", "Cancel", "NotificationEmailAddresses")
    _, d = _find_device(call, call.required("Identity"))
    if call.has("Cancel") and _bool(call.get("Cancel"), "Cancel"):
        d["wipeRequests"] = [w for w in d["wipeRequests"] if w.get("cancelled")]
    else:
        account_only = call.has("AccountOnly") and _bool(call.get("AccountOnly"),
                                                         "AccountOnly")
        d["wipeRequests"].append({"requestedAt": iso7(),
                                  "kind": "accountOnly" if account_only else "full"})
    call.wrote = True
    return []


# ------------------------------------------------------------------ CAS mailbox
def _cas_row(u: dict) -> dict:
    cas = u["mailbox"]["cas"]
    row = {"Identity": u["mailbox"]["alias"], "Name": u["mailbox"]["alias"],
           "PrimarySmtpAddress": u.get("mail") or u["userPrincipalName"],
           "ExternalDirectoryObjectId": u["id"]}
    row.update({k: bool(cas[k]) for k in PROTOCOL_FLAGS})
    row.update({k: list(cas[k]) for k in DEVICE_LISTS})
    return row


def get_cas_mailbox(call: _Call) -> list[dict]:
    call.allow("Identity", "ResultSize", "Filter", "ProtocolSettings")
    users = ([_find_mailbox_user(call.tenant, call.get("Identity"))] if call.has("Identity")
             else _mailbox_users(call.tenant))
    return [_cas_row(u) for u in users]


def set_cas_mailbox(call: _Call) -> list[dict]:
    call.allow("Identity", *PROTOCOL_FLAGS, *DEVICE_LISTS)
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    cas = u["mailbox"]["cas"]
    trial = copy.deepcopy(cas)  # validate everything before changing anything
    for flag in PROTOCOL_FLAGS:
        if call.has(flag):
            trial[flag] = _bool(call.get(flag), flag)
    for key in DEVICE_LISTS:
        if call.has(key):
            trial[key] = _multi(call.get(key), trial[key])
    if trial == cas:
        call.warnings.append(f"The command completed successfully but no settings of "
                             f"'{u['mailbox']['alias']}' have been modified.")
        return []
    cas.clear()
    cas.update(trial)
    call.wrote = True
    return []


CMDLETS: dict[str, tuple[Callable[[_Call], list[dict]], bool]] = {
    "get-mailboxpermission": (get_mailbox_permission, False),
    "add-mailboxpermission": (add_mailbox_permission, True),
    "remove-mailboxpermission": (remove_mailbox_permission, True),
    "get-recipientpermission": (get_recipient_permission, False),
    "add-recipientpermission": (add_recipient_permission, True),
    "remove-recipientpermission": (remove_recipient_permission, True),
    "get-recipient": (get_recipient, False),
    "get-mobiledevice": (get_mobile_device, False),
    "clear-mobiledevice": (clear_mobile_device, True),
    "get-casmailbox": (get_cas_mailbox, False),
    "set-casmailbox": (set_cas_mailbox, True),
}
