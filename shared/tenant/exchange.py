"""The only code that talks to Exchange Online's admin REST endpoint.

Mailbox auditing, mailbox forwarding, hidden inbox rules and restricted senders have no
Graph API. The cmdlets are reached through `POST /adminapi/beta/{tenant}/InvokeCommand`,
the endpoint the Exchange Online V3 PowerShell module uses. Microsoft does not document it
and it may change: it is isolated behind this one client (README says so).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from shared.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ReadOnlyViolation,
    ServiceDetails,
    ServiceError,
    Throttled,
    Unavailable,
    error_for_status,
)
from shared.permissions import PermissionForbidden
from shared.settings import Settings
from shared.tenant.credentials import EXCHANGE_SCOPE, AsyncTokenCredential
from shared.tenant.http import http_transport
from shared.tenant.retry import (
    TRANSIENT_ERRORS,
    RetryPolicy,
    RetryStats,
    RetryTransport,
    parse_retry_after,
)

MAX_PAGES = 10_000
ROLE_HINT = (
    "the app identity likely lacks application permission Exchange.ManageAsApp "
    "or the Exchange Administrator directory role"
)


@dataclass
class CmdletResult:
    """Rows returned by a cmdlet (all pages) and the warnings Exchange attached."""

    value: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _error_message(body: Any) -> tuple[str | None, str]:
    """Exchange puts the useful text in error.details[].message or innererror."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None, ""
    err = body["error"]
    code = err.get("code")
    messages: list[str] = []
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            messages.append(str(detail["message"]))
    inner = err.get("innererror") or err.get("innerError") or {}
    if isinstance(inner, dict):
        internal = inner.get("internalException") or {}
        if isinstance(internal, dict) and internal.get("message"):
            messages.append(str(internal["message"]))
        elif inner.get("message"):
            messages.append(str(inner["message"]))
    if not messages and err.get("message"):
        messages.append(str(err["message"]))
    unique = list(dict.fromkeys(messages))
    return (str(code) if code else None), " | ".join(unique)


class ExchangeClient:
    """InvokeCommand with auth, paging, warnings, typed errors and the shared retry policy."""

    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        policy = policy or RetryPolicy(max_attempts=settings.max_attempts,
                                       max_total_wait=settings.max_retry_wait_seconds)
        self._retry = RetryTransport(transport or http_transport(), policy)
        self._http = httpx.AsyncClient(transport=self._retry, timeout=timeout)
        self._credential = credential
        base = settings.exchange_base_url.rstrip("/")
        self._url = f"{base}/adminapi/beta/{quote(settings.tenant_id, safe='')}/InvokeCommand"
        self._host = urlsplit(base).netloc
        self.read_only = False

    def view(self, *, read_only: bool) -> ExchangeClient:
        """The same connection; a read-only view refuses every cmdlet but Get-*."""
        clone = copy.copy(self)
        clone.read_only = read_only
        return clone

    @property
    def stats(self) -> RetryStats:
        return self._retry.stats

    async def invoke(
        self,
        cmdlet: str,
        parameters: dict[str, Any] | None = None,
        *,
        anchor_mailbox: str | None = None,
        page_size: int = 1000,
        max_pages: int = MAX_PAGES,
    ) -> CmdletResult:
        """Run one cmdlet and return every row of every page. Raises ServiceError."""
        if self.read_only and not cmdlet.startswith("Get-"):
            raise ReadOnlyViolation(f"dry run: refused to run {cmdlet}")
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        result = CmdletResult()
        url: str | None = self._url
        pages = 0
        while url:
            pages += 1
            if pages > max_pages:
                raise ServiceError(f"paging stopped after {max_pages} pages", service="exchange",
                                   path=cmdlet)
            token = await self._credential.get_token(EXCHANGE_SCOPE)
            headers = {
                "Authorization": f"Bearer {token.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Prefer": f"odata.maxpagesize={page_size}",
            }
            if anchor_mailbox:
                headers["X-AnchorMailbox"] = f"UPN:{anchor_mailbox}"
            try:
                response = await self._http.post(url, json=body, headers=headers)
            except TRANSIENT_ERRORS as exc:
                raise Unavailable(f"Exchange unreachable after retries: {type(exc).__name__}",
                                  service="exchange", method="POST", path=cmdlet) from exc
            except httpx.HTTPError as exc:  # a local mistake (bad header, URL): not transient
                raise BadRequest(f"Exchange request could not be sent: {type(exc).__name__}",
                                 service="exchange", method="POST", path=cmdlet) from exc
            data = _json(response)
            if response.status_code >= 400:
                raise self._error(response, data, cmdlet)
            if isinstance(data, dict):
                result.value.extend(data.get("value") or [])
                result.warnings.extend(str(w) for w in data.get("@adminapi.warnings") or [])
                link = data.get("@odata.nextLink")
                url = self._checked(link) if link else None
            else:
                url = None
        return result

    def _checked(self, link: str) -> str:
        if urlsplit(link).netloc != self._host:
            raise ServiceError("refusing a nextLink to another host", service="exchange")
        return link

    def _error(self, response: httpx.Response, data: Any, cmdlet: str) -> ServiceError:
        code, message = _error_message(data)
        status = response.status_code
        message = message or f"Exchange answered HTTP {status}"
        request_id = response.headers.get("request-id") or response.headers.get("x-requestid")
        lowered = message.lower()
        cls = error_for_status(status)
        if "couldn't be found" in lowered or "could not be found" in lowered:
            cls = NotFound
        if status in (401, 403) or "is not allowed to call" in lowered:
            message = f"{message.rstrip('.')}. {ROLE_HINT}"
            cls = error_for_status(403)
        kwargs: ServiceDetails = {"service": "exchange", "status": status, "code": code,
                                  "request_id": request_id, "method": "POST", "path": cmdlet}
        if cls is Throttled:
            return Throttled(message, retry_after=parse_retry_after(
                response.headers.get("Retry-After")), **kwargs)
        if cls is Forbidden:
            # One permission and one role cover every cmdlet: name both.
            return PermissionForbidden(message, needs=(PERM_EXCHANGE,),
                                     roles=("Exchange Administrator",), **kwargs)
        return cls(message, **kwargs)

    async def close(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


# --- cmdlets the playbook and sweeps use. Parameters travel as JSON values, never pasted
# --- into a command line, so a hostile UPN cannot inject a parameter.

PERM_EXCHANGE = "Exchange.ManageAsApp"


async def get_mailbox(ex: ExchangeClient, identity: str) -> dict[str, Any] | None:
    try:
        rows = (await ex.invoke("Get-Mailbox", {"Identity": identity},
                                anchor_mailbox=identity)).value
    except NotFound:
        return None
    return rows[0] if rows else None


async def mailboxes_matching(ex: ExchangeClient, opath_filter: str) -> list[dict[str, Any]]:
    """Server-side filtered mailbox list: calls grow with matches and pages, not mailboxes."""
    return (await ex.invoke("Get-Mailbox", {"Filter": opath_filter,
                                            "ResultSize": "Unlimited"})).value


async def set_mailbox(ex: ExchangeClient, identity: str, **params: Any) -> None:
    await ex.invoke("Set-Mailbox", {"Identity": identity, **params}, anchor_mailbox=identity)


async def organization_config(ex: ExchangeClient) -> dict[str, Any]:
    rows = (await ex.invoke("Get-OrganizationConfig")).value
    return rows[0] if rows else {}


async def audit_bypass(ex: ExchangeClient, identity: str) -> bool | None:
    try:
        rows = (await ex.invoke("Get-MailboxAuditBypassAssociation",
                                {"Identity": identity})).value
    except NotFound:
        return None
    return bool(rows[0].get("AuditBypassEnabled")) if rows else None


async def set_audit_bypass(ex: ExchangeClient, identity: str, enabled: bool) -> None:
    await ex.invoke("Set-MailboxAuditBypassAssociation",
                    {"Identity": identity, "AuditBypassEnabled": enabled})


async def blocked_senders(ex: ExchangeClient, address: str | None = None) -> list[dict[str, Any]]:
    params = {"SenderAddress": address} if address else {}
    return (await ex.invoke("Get-BlockedSenderAddress", params)).value


async def remove_blocked_sender(ex: ExchangeClient, address: str) -> None:
    await ex.invoke("Remove-BlockedSenderAddress", {"SenderAddress": address})


async def inbox_rules(ex: ExchangeClient, mailbox: str, *, include_hidden: bool = True)\
        -> list[dict[str, Any]]:
    """Get-InboxRule rows: what each rule really does, including what Graph cannot show
    (https://learn.microsoft.com/powershell/module/exchange/Get-InboxRule). -IncludeHidden
    adds hidden rules, Exchange's own among them (junk e-mail, automatic replies)."""
    params: dict[str, Any] = {"Mailbox": mailbox}
    if include_hidden:
        params["IncludeHidden"] = True
    return (await ex.invoke("Get-InboxRule", params, anchor_mailbox=mailbox)).value


async def set_inbox_rule_enabled(ex: ExchangeClient, mailbox: str, rule_identity: str,
                                 enabled: bool) -> list[str]:
    """Enable-/Disable-InboxRule, non-interactively; returns Exchange's warnings.

    Changing a rule this way removes Outlook's client-side rules, and the cmdlet asks for
    confirmation first when the mailbox has some. -Force hides warnings and confirmations
    for unattended runs; -AlwaysDeleteOutlookRulesBlob hides the warning about the rules
    (MicrosoftDocs/office-docs-powershell:exchange/exchange-ps/exchange/Disable-InboxRule.md;
    https://docs.microsoft.com/en-us/powershell/module/exchange/mailboxes/Set-InboxRule?view=exchange-ps).
    Callers must tell people that client-side rules may be gone."""
    cmdlet = "Enable-InboxRule" if enabled else "Disable-InboxRule"
    result = await ex.invoke(cmdlet, {"Mailbox": mailbox, "Identity": rule_identity,
                                      "Force": True, "AlwaysDeleteOutlookRulesBlob": True},
                             anchor_mailbox=mailbox)
    return result.warnings


async def set_organization_audit_disabled(ex: ExchangeClient, disabled: bool) -> None:
    """The organisation-wide switch: AuditDisabled true turns mailbox auditing off for all."""
    await ex.invoke("Set-OrganizationConfig", {"AuditDisabled": disabled})


async def audit_bypass_associations(ex: ExchangeClient) -> list[dict[str, Any]]:
    """Every audit bypass association, all pages. The cmdlet has no -Filter parameter, so
    callers filter on AuditBypassEnabled: the cost is pages (1000 rows each), not mailboxes."""
    return (await ex.invoke("Get-MailboxAuditBypassAssociation",
                            {"ResultSize": "Unlimited"})).value


async def all_mailboxes(ex: ExchangeClient) -> list[dict[str, Any]]:
    """Every mailbox, all pages (1000 rows each)."""
    return (await ex.invoke("Get-Mailbox", {"ResultSize": "Unlimited"})).value


# --- mailbox auditing on by default. "Manage mailbox auditing":
# https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide
# While the organisation switch is on (AuditDisabled false) a mailbox's AuditEnabled does not
# decide what is logged: the audited actions per sign-in type (AuditOwner, AuditDelegate,
# AuditAdmin; DefaultAuditSet lists the types still on Microsoft's defaults) and the bypass
# associations do. The one documented effect left to AuditEnabled: without an Audit (Premium)
# licence (E5/A5/G5) a mailbox's events reach audit log search and the Management Activity
# API only after `Set-Mailbox -AuditEnabled $true` (the page's "More information").

AUDIT_LOGON_TYPES = ("Admin", "Delegate", "Owner")
_DELETES = ("HardDelete", "MoveToDeletedItems", "SoftDelete")
# What an investigation of a compromised mailbox needs, all defaults on the page's table.
AUDIT_NEEDED: dict[str, tuple[str, ...]] = {
    "Owner": ("UpdateInboxRules", *_DELETES),
    "Delegate": ("UpdateInboxRules", *_DELETES, "SendAs", "SendOnBehalf"),
    "Admin": ("UpdateInboxRules", *_DELETES),
}
# The page: MailItemsAccessed and Send exist only with Audit (Premium) (Send: not Delegate).
AUDIT_NEEDED_PREMIUM: dict[str, tuple[str, ...]] = {
    "Owner": ("MailItemsAccessed", "Send"),
    "Delegate": ("MailItemsAccessed",),
    "Admin": ("MailItemsAccessed", "Send"),
}
# Microsoft's defaults per type (asterisks on the page's table, Premium ones included).
AUDIT_DEFAULTS: dict[str, frozenset[str]] = {
    "Admin": frozenset({"ApplyRecord", "Create", "HardDelete", "MailItemsAccessed",
                        "MoveToDeletedItems", "Send", "SendAs", "SendOnBehalf", "SoftDelete",
                        "Update", "UpdateCalendarDelegation", "UpdateFolderPermissions",
                        "UpdateInboxRules"}),
    "Delegate": frozenset({"ApplyRecord", "Create", "HardDelete", "MailItemsAccessed",
                           "MoveToDeletedItems", "SendAs", "SendOnBehalf", "SoftDelete",
                           "Update", "UpdateFolderPermissions", "UpdateInboxRules"}),
    "Owner": frozenset({"ApplyRecord", "HardDelete", "MailItemsAccessed", "MoveToDeletedItems",
                        "Send", "SoftDelete", "Update", "UpdateCalendarDelegation",
                        "UpdateFolderPermissions", "UpdateInboxRules"}),
}


def _names(value: Any) -> list[str]:
    """A multi-valued property as Exchange returns it: a list, or "A, B" text."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [str(i).strip() for i in items if str(i).strip()]


@dataclass
class AuditReview:
    """What is actually off in one mailbox's auditing, and how to put it right."""

    auditEnabled: bool
    premium: bool | None
    """Audit (Premium) licence, inferred (None = cannot tell; see `review_mailbox_audit`)."""
    missing: dict[str, list[str]] = field(default_factory=dict)
    """Per customised sign-in type, the needed actions it no longer audits."""
    restore: list[str] = field(default_factory=list)
    """Types to give Microsoft's defaults back (-DefaultAuditSet): their list only dropped
    default actions, so restoring loses nothing and brings back Premium ones where licensed."""
    add: dict[str, list[str]] = field(default_factory=dict)
    """Types with non-default customisations: add the missing actions, keep the rest."""
    premium_unknown: list[str] = field(default_factory=list)
    """Customised types lacking Premium-only actions while the licence is unknown (reported)."""

    @property
    def not_searchable(self) -> bool:
        """Events would not reach audit log search: no Premium licence (or unknown) and
        AuditEnabled false. Setting it is the documented workaround and harmless otherwise."""
        return not self.auditEnabled and self.premium is not True

    @property
    def actions_off(self) -> bool:
        return bool(self.restore or self.add)


def review_mailbox_audit(row: dict[str, Any]) -> AuditReview:
    """Judge a Get-Mailbox row by what is logged, never by AuditEnabled alone.

    The licence is inferred from the mailbox itself: while Owner is in DefaultAuditSet,
    AuditOwner is Microsoft's default list, which holds MailItemsAccessed only for Audit
    (Premium) users (the page's table); an explicit MailItemsAccessed on any type also means
    the licence exists. The docs do not describe this inference; when it gives no answer the
    licence counts as unknown and the conservative choices below apply."""
    default_set = {n.lower() for n in _names(row.get("DefaultAuditSet"))}
    lists = {t: _names(row.get("Audit" + t)) for t in AUDIT_LOGON_TYPES}
    premium: bool | None = None
    if any("MailItemsAccessed" in a for a in lists.values()):
        premium = True
    elif "owner" in default_set and lists["Owner"]:
        premium = False
    review = AuditReview(auditEnabled=bool(row.get("AuditEnabled")), premium=premium)
    for logon in AUDIT_LOGON_TYPES:
        if logon.lower() in default_set:
            continue  # Microsoft-managed: the defaults hold every needed action
        have = set(lists[logon])
        need = [a for a in AUDIT_NEEDED[logon] if a not in have]
        premium_need = [a for a in AUDIT_NEEDED_PREMIUM[logon] if a not in have]
        if premium is True:
            need += premium_need
        elif premium is None and premium_need:
            review.premium_unknown.append(logon)
        if not need:
            continue
        review.missing[logon] = need
        if have <= AUDIT_DEFAULTS[logon]:
            review.restore.append(logon)
        else:
            review.add[logon] = need
    return review


async def restore_mailbox_audit(ex: ExchangeClient, identity: str, review: AuditReview, *,
                                audit_enabled: bool) -> None:
    """One Set-Mailbox that puts back what `review` found missing (never removes an audited
    action): -DefaultAuditSet for pure reductions (the page's "Restore the default mailbox
    actions"), -Audit<Type> @{Add=...} otherwise (its "Change the mailbox actions to audit";
    a JSON object is how the REST endpoint takes a hashtable: not documented), and
    -AuditEnabled $true when asked (search availability without Premium)."""
    params: dict[str, Any] = {}
    if review.restore:
        params["DefaultAuditSet"] = list(review.restore)
    for logon, actions in review.add.items():
        params["Audit" + logon] = {"Add": list(actions)}
    if audit_enabled:
        params["AuditEnabled"] = True
    if params:
        await set_mailbox(ex, identity, **params)
