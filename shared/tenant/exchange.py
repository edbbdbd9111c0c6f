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
    NotFound,
    ReadOnlyViolation,
    ServiceDetails,
    ServiceError,
    Throttled,
    Unavailable,
    error_for_status,
)
from shared.settings import Settings
from shared.tenant.credentials import EXCHANGE_SCOPE, AsyncTokenCredential
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
        self._retry = RetryTransport(transport or httpx.AsyncHTTPTransport(), policy)
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
    params: dict[str, Any] = {"Mailbox": mailbox}
    if include_hidden:
        params["IncludeHidden"] = True
    return (await ex.invoke("Get-InboxRule", params, anchor_mailbox=mailbox)).value


async def set_inbox_rule_enabled(ex: ExchangeClient, mailbox: str, rule_identity: str,
                                 enabled: bool) -> None:
    cmdlet = "Enable-InboxRule" if enabled else "Disable-InboxRule"
    await ex.invoke(cmdlet, {"Mailbox": mailbox, "Identity": rule_identity},
                    anchor_mailbox=mailbox)


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
