"""Exchange Online admin REST emulation: POST /adminapi/beta/{tenant}/InvokeCommand with
a CmdletInput body. Mailboxes and inbox rules live in the shared Tenant, so a rule
disabled here shows as disabled through Graph and vice versa."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from . import mailbox_audit
from .graph_common import decode_skiptoken, encode_skiptoken
from .messages import EmuRequest, EmuResponse, ExchangeError, GraphError, exchange_error_response
from .opath import OpathError, compile_opath
from .tenant import Tenant, stable_id
from .timefmt import iso7

_SERVER = "AM0PR01A001DC01.EURPRD01.PROD.OUTLOOK.COM"
_NOT_FOUND_TYPE = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
_COMMON_PARAMS = {"confirm", "erroraction", "warningaction", "verbose", "whatif", "force"}


def parse_invoke(req: EmuRequest) -> EmuResponse | None:
    """Fill req.cmdlet/params from the body; return an error response if it is malformed."""
    body = req.body
    cmd = body.get("CmdletInput") if isinstance(body, dict) else None
    if not isinstance(cmd, dict) or not isinstance(cmd.get("CmdletName"), str):
        return exchange_error_response(
            400, "BadRequest", "The request body must be {\"CmdletInput\":{\"CmdletName\":...,"
            "\"Parameters\":{...}}}.")
    params = cmd.get("Parameters") or {}
    if not isinstance(params, dict):
        return exchange_error_response(400, "BadRequest", "Parameters must be an object.")
    req.cmdlet = cmd["CmdletName"]
    req.params = params
    return None


class _Call:
    """One cmdlet invocation with case-insensitive parameter access."""

    def __init__(self, req: EmuRequest, tenant: Tenant, config: dict):
        self.req = req
        self.tenant = tenant
        self.config = config
        self.params = {k.lower(): v for k, v in (req.params or {}).items()}
        self.warnings: list[str] = []
        self.wrote = False

    def allow(self, *names: str) -> None:
        allowed = {n.lower() for n in names} | _COMMON_PARAMS
        for key in self.params:
            if key not in allowed:
                original = next(k for k in self.req.params or {} if k.lower() == key)
                raise ExchangeError(
                    400, "ParameterBindingException",
                    f"A parameter cannot be found that matches parameter name '{original}'.",
                    "System.Management.Automation.ParameterBindingException")

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name.lower(), default)

    def has(self, name: str) -> bool:
        return name.lower() in self.params

    def required(self, name: str) -> Any:
        value = self.get(name)
        if value in (None, ""):
            raise ExchangeError(
                400, "ParameterBindingValidationException",
                f"Cannot validate argument on parameter '{name}'. The argument is null or "
                "empty.", "System.Management.Automation.ParameterBindingValidationException")
        return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower().lstrip("$") in ("true", "false"):
        return value.lower().lstrip("$") == "true"
    if value in (0, 1):
        return bool(value)
    raise ExchangeError(400, "ParameterBindingException",
                        f"Cannot process argument transformation on parameter '{name}'. Cannot "
                        f"convert value \"{value}\" to type \"System.Boolean\".")


def _nullable(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "$null")):
        return None
    return value


def _not_found(identity: Any) -> ExchangeError:
    return ExchangeError(
        404, "ManagementObjectNotFoundException",
        f"The operation couldn't be performed because object '{identity}' couldn't be found "
        f"on '{_SERVER}'.", _NOT_FOUND_TYPE)


def _mailbox_users(tenant: Tenant) -> list[dict]:
    return [u for u in tenant.iter_users() if u.get("mailbox")]


def _find_mailbox_user(tenant: Tenant, identity: Any) -> dict:
    key = str(identity).strip()
    if key.upper().startswith("UPN:"):
        key = key[4:]
    low = key.lower()
    for u in _mailbox_users(tenant):
        mb = u["mailbox"]
        names = {u["id"].lower(), u["userPrincipalName"].lower(), (u.get("mail") or "").lower(),
                 mb["alias"].lower(), (u.get("displayName") or "").lower(),
                 stable_id("mbx", u["id"]).lower()}
        if low in names:
            return u
    raise _not_found(identity)


def mailbox_view(u: dict, tenant: Tenant | None = None) -> dict:
    mb = u["mailbox"]
    fwd = mb.get("forwardingSmtpAddress")
    return {
        "Identity": mb["alias"],
        "Name": mb["alias"],
        "Alias": mb["alias"],
        "DisplayName": u.get("displayName"),
        "UserPrincipalName": u["userPrincipalName"],
        "PrimarySmtpAddress": u.get("mail") or u["userPrincipalName"],
        "ExternalDirectoryObjectId": u["id"],
        "Guid": stable_id("mbx", u["id"]),
        "RecipientTypeDetails": mb.get("recipientTypeDetails", "UserMailbox"),
        "AuditEnabled": mb["auditEnabled"],
        "AuditLogAgeLimit": "90.00:00:00",
        **mailbox_audit.view(mb),
        "ForwardingSmtpAddress": f"smtp:{fwd}" if fwd else None,
        "ForwardingAddress": mb.get("forwardingAddress"),
        "DeliverToMailboxAndForward": mb.get("deliverToMailboxAndForward", False),
        "IsMailboxEnabled": True,
        "GrantSendOnBehalfTo": (exchange_permissions.send_on_behalf_names(tenant, mb)
                                if tenant is not None else []),
    }


def _bypass_view(u: dict) -> dict:
    mb = u["mailbox"]
    return {
        "Identity": mb["alias"],
        "Name": mb["alias"],
        "AuditBypassEnabled": mb.get("auditBypassEnabled", False),
        "ExternalDirectoryObjectId": u["id"],
        "ObjectState": "Unchanged",
    }


def legacy_dn(u: dict) -> str:
    """A mailbox's legacyExchangeDN in the Exchange Online form scripts show."""
    cn = stable_id("legacydn", u["id"]).replace("-", "")
    return ("/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients"
            f"/cn={cn}-{u['mailbox']['alias']}")


def _tenant_mailbox(tenant: Tenant | None, address: str | None) -> dict | None:
    if tenant is None or not address:
        return None
    low = address.lower()
    for u in _mailbox_users(tenant):
        if low in {u["userPrincipalName"].lower(), (u.get("mail") or "").lower()}:
            return u
    return None


def _recipient_strings(value: Any, tenant: Tenant | None = None) -> list[str] | None:
    """Rule recipients as Get-InboxRule prints them. Microsoft does not document the format;
    public scripts show a mailbox in the organisation as '"Name" [EX:<legacyExchangeDN>]'
    and anyone else as '"Name" [SMTP:address]' (both modelled here)."""
    if not value:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for r in items:
        addr = (r.get("emailAddress") or {}).get("address") if isinstance(r, dict) else str(r)
        name = (r.get("emailAddress") or {}).get("name") if isinstance(r, dict) else addr
        colleague = _tenant_mailbox(tenant, addr)
        if colleague is not None:
            out.append(f'"{name or colleague.get("displayName") or addr}" '
                       f'[EX:{legacy_dn(colleague)}]')
        else:
            out.append(f'"{name or addr}" [SMTP:{addr}]')
    return out


def _folder_name(u: dict, fid: str | None) -> str | None:
    if not fid:
        return None
    for f in u["mailbox"]["folders"]:
        if f["id"] == fid:
            return f"{u['mailbox']['alias']}:\\{f['displayName']}"
    return fid


def _describe(view: dict) -> str:
    lines = ["If the message:"]
    if view["SubjectContainsWords"]:
        lines.append("\tincludes " + " or ".join(f"'{w}'" for w in view["SubjectContainsWords"])
                     + " in the subject")
    if view["BodyContainsWords"]:
        lines.append("\tincludes " + " or ".join(f"'{w}'" for w in view["BodyContainsWords"])
                     + " in the body")
    if len(lines) == 1:
        lines.append("\tApplies to all messages")
    lines.append("Take the following actions:")
    for key, text in (("ForwardTo", "forward the message to"), ("RedirectTo",
                      "redirect the message to"), ("ForwardAsAttachmentTo",
                      "forward the message as an attachment to")):
        if view[key]:
            lines.append(f"\t{text} " + " or ".join(view[key]))
    if view["MoveToFolder"]:
        lines.append(f"\tmove the message to folder '{view['MoveToFolder']}'")
    if view["MarkAsRead"]:
        lines.append("\tmark the message as read")
    if view["DeleteMessage"]:
        lines.append("\tdelete the message")
    if view["StopProcessingRules"]:
        lines.append("\tstop processing more rules")
    return "\r\n".join(lines) + "\r\n"


def rule_view(u: dict, r: dict, tenant: Tenant | None = None) -> dict:
    """A Get-InboxRule row. Identity is MailboxAlias\\RuleIdentity in Exchange Online
    (https://learn.microsoft.com/powershell/module/exchange/Get-InboxRule)."""
    cond, act = r.get("conditions") or {}, r.get("actions") or {}
    view = {
        "Identity": f"{u['mailbox']['alias']}\\{r['ruleIdentity']}",
        "Name": r.get("displayName", ""),
        "Enabled": bool(r.get("isEnabled", True)),
        "RuleIdentity": r["ruleIdentity"],
        "Priority": r.get("sequence", 1),
        "MailboxOwnerId": u["mailbox"]["alias"],
        "ForwardTo": _recipient_strings(act.get("forwardTo"), tenant),
        "RedirectTo": _recipient_strings(act.get("redirectTo"), tenant),
        "ForwardAsAttachmentTo": _recipient_strings(act.get("forwardAsAttachmentTo"), tenant),
        "DeleteMessage": bool(act.get("delete")),
        "SoftDeleteMessage": bool(act.get("permanentDelete")),
        "MoveToFolder": _folder_name(u, act.get("moveToFolder")),
        "MarkAsRead": bool(act.get("markAsRead")),
        "StopProcessingRules": bool(act.get("stopProcessingRules")),
        "SubjectContainsWords": cond.get("subjectContains"),
        "BodyContainsWords": cond.get("bodyContains"),
        "SubjectOrBodyContainsWords": cond.get("bodyOrSubjectContains"),
        "From": _recipient_strings(cond.get("fromAddresses"), tenant),
        "InError": bool(r.get("hasError")),
    }
    # what only Exchange can express (the reason Graph shows the rule read-only)
    view.update(copy.deepcopy(r.get("exchangeOnly") or {}))
    view["Description"] = _describe(view)
    return view


def _find_rule(u: dict, identity: str) -> dict:
    key = str(identity).rsplit("\\", 1)[-1].strip()
    for r in u["mailbox"]["rules"]:
        if key in (r["ruleIdentity"], r["id"]) or key.lower() == str(
                r.get("displayName", "")).lower():
            return r
    raise _not_found(identity)


def _rule_target(call: _Call) -> tuple[dict, dict]:
    identity = str(call.required("Identity"))
    mailbox = call.get("Mailbox")
    if mailbox is None and "\\" in identity:
        mailbox = identity.rsplit("\\", 1)[0]
    if mailbox is None:
        raise ExchangeError(400, "ParameterBindingException",
                            "The Mailbox parameter is required when Identity does not name "
                            "the mailbox.")
    u = _find_mailbox_user(call.tenant, mailbox)
    return u, _find_rule(u, identity)


def _filtered(call: _Call, views: list[dict]) -> list[dict]:
    try:
        pred = compile_opath(call.get("Filter"))
    except OpathError as exc:
        raise ExchangeError(400, "ParameterBindingException",
                            f"Cannot bind parameter 'Filter' to the target. Exception setting "
                            f"\"Filter\": \"{exc}\"") from exc
    return [v for v in views if pred(v)]


def _result_size(call: _Call, items: list[dict]) -> list[dict]:
    size = call.get("ResultSize")
    default = int(call.config.get("exchange_default_result_size", 1000))
    if size is None:
        if len(items) > default:
            call.warnings.append("There are more results available than are currently "
                                 "displayed. To view them, increase the value for the "
                                 "ResultSize parameter.")
        return items[:default]
    if str(size).lower() == "unlimited":
        return items
    try:
        return items[: int(size)]
    except ValueError as exc:
        raise ExchangeError(400, "ParameterBindingException",
                            f"Cannot bind parameter 'ResultSize'. Invalid value '{size}'.") from exc


# ----------------------------------------------------------------------- cmdlets
def get_mailbox(call: _Call) -> list[dict]:
    call.allow("Identity", "Filter", "ResultSize", "RecipientTypeDetails")
    if call.has("Identity"):
        views = [mailbox_view(_find_mailbox_user(call.tenant, call.get("Identity")),
                              call.tenant)]
    else:
        views = [mailbox_view(u, call.tenant) for u in _mailbox_users(call.tenant)]
    return _result_size(call, _filtered(call, views))


def set_mailbox(call: _Call) -> list[dict]:
    call.allow("Identity", "AuditEnabled", "ForwardingSmtpAddress", "ForwardingAddress",
               "DeliverToMailboxAndForward", "AuditLogAgeLimit", "AuditOwner", "AuditDelegate",
               "AuditAdmin", "DefaultAuditSet", "GrantSendOnBehalfTo")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    mb = u["mailbox"]
    changes: dict[str, Any] = {}
    delegates_changed = (call.has("GrantSendOnBehalfTo")
                         and exchange_permissions.set_send_on_behalf(call, u))
    if call.has("AuditEnabled"):
        changes["auditEnabled"] = _bool(call.get("AuditEnabled"), "AuditEnabled")
    audit_before = mailbox_audit.view(mb)
    trial = dict(mb)  # validate every audit parameter before changing anything
    if call.has("DefaultAuditSet"):
        mailbox_audit.restore_defaults(trial, call.get("DefaultAuditSet"))
    for logon in mailbox_audit.LOGON_TYPES:
        if call.has("Audit" + logon):
            mailbox_audit.set_actions(trial, logon, call.get("Audit" + logon))
    for key in mailbox_audit.FIELD.values():
        if trial.get(key) != mb.get(key):
            changes[key] = trial.get(key)
    if call.has("ForwardingSmtpAddress"):
        fwd = _nullable(call.get("ForwardingSmtpAddress"))
        if fwd is not None:
            fwd = re.sub(r"^smtp:", "", str(fwd), flags=re.IGNORECASE)
        changes["forwardingSmtpAddress"] = fwd
    if call.has("ForwardingAddress"):
        changes["forwardingAddress"] = _nullable(call.get("ForwardingAddress"))
    if call.has("DeliverToMailboxAndForward"):
        changes["deliverToMailboxAndForward"] = _bool(call.get("DeliverToMailboxAndForward"),
                                                      "DeliverToMailboxAndForward")
    if all(mb.get(k) == v for k, v in changes.items()) and audit_before == \
            mailbox_audit.view(trial) and not delegates_changed:
        call.warnings.append(f"The command completed successfully but no settings of "
                             f"'{mb['alias']}' have been modified.")
    mb.update(changes)
    for key in mailbox_audit.FIELD.values():
        if mb.get(key) is None:
            mb.pop(key, None)  # absent = the type uses Microsoft's defaults
    call.wrote = True
    return []


def get_org_config(call: _Call) -> list[dict]:
    call.allow()
    org = call.tenant.organization
    return [{"Name": call.tenant.display_name, "Identity": call.tenant.display_name,
             "Guid": call.tenant.tenant_id, "AuditDisabled": bool(org.get("auditDisabled")),
             "IsDehydrated": False}]


def set_org_config(call: _Call) -> list[dict]:
    call.allow("AuditDisabled")
    if call.has("AuditDisabled"):
        call.tenant.organization["auditDisabled"] = _bool(call.get("AuditDisabled"),
                                                          "AuditDisabled")
    call.wrote = True
    return []


def get_bypass(call: _Call) -> list[dict]:
    call.allow("Identity", "Filter", "ResultSize")
    if call.has("Identity"):
        views = [_bypass_view(_find_mailbox_user(call.tenant, call.get("Identity")))]
    else:
        views = [_bypass_view(u) for u in _mailbox_users(call.tenant)]
    return _result_size(call, _filtered(call, views))


def set_bypass(call: _Call) -> list[dict]:
    call.allow("Identity", "AuditBypassEnabled")
    u = _find_mailbox_user(call.tenant, call.required("Identity"))
    u["mailbox"]["auditBypassEnabled"] = _bool(call.required("AuditBypassEnabled"),
                                               "AuditBypassEnabled")
    call.wrote = True
    return []


def get_blocked(call: _Call) -> list[dict]:
    call.allow("SenderAddress", "ResultSize")
    items = copy.deepcopy(call.tenant.blocked_senders)
    if call.has("SenderAddress"):
        want = str(call.get("SenderAddress")).lower()
        items = [b for b in items if b["SenderAddress"].lower() == want]
    return items


DEFAULT_RELEASE_LIMIT = 3
"""Releases per address before Exchange refuses (config `blocked_sender_release_limit`,
None = unlimited). The number is the emulator's own: Microsoft documents that a limit exists
but not its value or period."""


def remove_blocked(call: _Call) -> list[dict]:
    call.allow("SenderAddress", "Reason")
    addr = str(call.required("SenderAddress"))
    for b in call.tenant.blocked_senders:
        if b["SenderAddress"].lower() == addr.lower():
            # "There's a limit to the number of times you can unblock an account"; past it
            # the cmdlet errors and only Microsoft support can unblock
            # (https://learn.microsoft.com./en-us/defender-office-365/outbound-spam-restore-restricted-users).
            # Neither the number nor the error text is documented: the limit is configurable
            # and the refusal below is the emulator's own wording in the admin API's shape.
            limit = call.config.get("blocked_sender_release_limit", DEFAULT_RELEASE_LIMIT)
            done = call.tenant.sender_releases.get(addr.lower(), 0)
            if limit is not None and done >= int(limit):
                raise ExchangeError(
                    400, "UnblockLimitExceeded",
                    f"'{addr}' has been released from the restricted senders list the "
                    "maximum number of times; contact Microsoft support to unblock it.")
            call.tenant.blocked_senders.remove(b)
            call.tenant.sender_releases[addr.lower()] = done + 1
            call.wrote = True
            return []
    raise _not_found(addr)


def get_inbox_rule(call: _Call) -> list[dict]:
    call.allow("Mailbox", "Identity", "IncludeHidden", "ResultSize")
    u = _find_mailbox_user(call.tenant, call.required("Mailbox"))
    hidden = call.has("IncludeHidden") and _bool(call.get("IncludeHidden"), "IncludeHidden")
    rules = sorted(u["mailbox"]["rules"], key=lambda r: r.get("sequence", 0))
    if call.has("Identity"):
        rules = [_find_rule(u, call.get("Identity"))]
    return [rule_view(u, r, call.tenant) for r in rules if hidden or not r.get("hidden")]


def _switch(call: _Call, name: str) -> bool:
    return call.has(name) and _bool(call.get(name), name)


def _drop_outlook_rules(call: _Call, u: dict) -> None:
    """Changing an inbox rule in Exchange PowerShell removes Outlook's client-side rules; a
    confirmation prompt warns first unless -Force (or -AlwaysDeleteOutlookRulesBlob, which
    hides the warning) is given (MicrosoftDocs/office-docs-powershell:exchange/exchange-ps/
    exchange/Disable-InboxRule.md; https://docs.microsoft.com/en-us/powershell/module/
    exchange/mailboxes/Set-InboxRule?view=exchange-ps). What the REST endpoint does with a
    prompt nobody can answer is not documented: modelled as PowerShell's failure of a
    prompting command in a non-interactive host, so a caller that forgets -Force finds out."""
    mb = u["mailbox"]
    if not mb.get("outlookClientRules"):
        return
    if not (_switch(call, "Force") or _switch(call, "AlwaysDeleteOutlookRulesBlob")):
        raise ExchangeError(
            400, "HostException",
            "A command that prompts the user failed because the host program or the command "
            "type does not support user interaction. Client-side rules created by Outlook "
            "would be removed; use -Force to continue.",
            "System.Management.Automation.Host.HostException")
    mb.setdefault("clientRulesRemoved", []).extend(mb["outlookClientRules"])
    mb["outlookClientRules"] = []


def _set_rule_enabled(enabled: bool) -> Callable[[_Call], list[dict]]:
    def run(call: _Call) -> list[dict]:
        call.allow("Mailbox", "Identity", "AlwaysDeleteOutlookRulesBlob")
        u, rule = _rule_target(call)
        _drop_outlook_rules(call, u)
        rule["isEnabled"] = enabled
        call.wrote = True
        return []

    return run


def remove_inbox_rule(call: _Call) -> list[dict]:
    call.allow("Mailbox", "Identity", "AlwaysDeleteOutlookRulesBlob")
    u, rule = _rule_target(call)
    _drop_outlook_rules(call, u)
    u["mailbox"]["rules"].remove(rule)
    call.wrote = True
    return []


def get_compromised_report(call: _Call) -> list[dict]:
    call.allow("Action", "StartDate", "EndDate", "PageSize", "Page", "ResultSize")
    items = copy.deepcopy(call.tenant.compromised_report)
    action = call.get("Action")
    if action:
        wanted = {a.strip().lower() for a in (action if isinstance(action, list)
                                              else str(action).split(","))}
        items = [i for i in items if str(i.get("Action", "")).lower() in wanted]
    for i in items:
        i.setdefault("Date", iso7())
    return items


CMDLETS: dict[str, tuple[Callable[[_Call], list[dict]], bool]] = {
    "get-mailbox": (get_mailbox, False),
    "set-mailbox": (set_mailbox, True),
    "get-organizationconfig": (get_org_config, False),
    "set-organizationconfig": (set_org_config, True),
    "get-mailboxauditbypassassociation": (get_bypass, False),
    "set-mailboxauditbypassassociation": (set_bypass, True),
    "get-blockedsenderaddress": (get_blocked, False),
    "remove-blockedsenderaddress": (remove_blocked, True),
    "get-inboxrule": (get_inbox_rule, False),
    "disable-inboxrule": (_set_rule_enabled(False), True),
    "enable-inboxrule": (_set_rule_enabled(True), True),
    "remove-inboxrule": (remove_inbox_rule, True),
    "get-compromiseduserdetailreport": (get_compromised_report, False),
}


def _page_size(req: EmuRequest, config: dict) -> int:
    default = int(config.get("exchange_page_size", 1000))
    prefer = req.header("prefer") or ""
    m = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer, re.IGNORECASE)
    return max(1, int(m.group(1))) if m else default


def dispatch_exchange(req: EmuRequest, tenant: Tenant, config: dict) -> EmuResponse:
    """Run one InvokeCommand (caller holds tenant.lock)."""
    tid = req.segments[2] if len(req.segments) > 2 else ""
    known = {tenant.tenant_id.lower()} | {d["id"].lower() for d in tenant.domains}
    if config.get("exchange_check_tenant", True) and tid.lower() not in known:
        return exchange_error_response(
            404, "TenantNotFound", f"The tenant '{tid}' couldn't be found on '{_SERVER}'.")
    entry = CMDLETS.get((req.cmdlet or "").lower()) \
        or exchange_permissions.CMDLETS.get((req.cmdlet or "").lower())
    if entry is None:
        return exchange_error_response(
            400, "CommandNotFoundException",
            f"The term '{req.cmdlet}' is not recognized as a name of a cmdlet, function, "
            "script file, or executable program.",
            "System.Management.Automation.CommandNotFoundException")
    fn, _ = entry
    call = _Call(req, tenant, config)
    try:
        items = fn(call)
    except ExchangeError as exc:
        return exchange_error_response(exc.status, exc.code, exc.message, exc.exc_type,
                                       exc.headers)
    except GraphError as exc:  # pragma: no cover - shared helpers
        return exchange_error_response(exc.status, exc.code, exc.message)
    size = _page_size(req, config)
    offset = 0
    if req.query.get("$skiptoken"):
        try:
            offset = decode_skiptoken(req.query["$skiptoken"])
        except GraphError:
            return exchange_error_response(400, "BadRequest", "Invalid $skiptoken.")
    page = items[offset: offset + size]
    base = f"{req.origin}/adminapi/beta/{tid}"
    body: dict[str, Any] = {
        "@odata.context": f"{base}/$metadata#Collection(Exchange.GenericHashTable)",
        "@adminapi.warnings": call.warnings,
        "value": page,
    }
    if offset + size < len(items):
        token = encode_skiptoken(offset + size)
        body["@odata.nextLink"] = f"{base}/InvokeCommand?$skiptoken={token}"
    headers = {"Content-Type": "application/json", "Preference-Applied":
               f"odata.maxpagesize={size}"}
    return EmuResponse(200, body, headers, write=call.wrote)


# Delegation, mobile devices and client protocols live in their own module, which builds
# on the helpers above (imported last: it imports this module).
from . import exchange_permissions  # noqa: E402
