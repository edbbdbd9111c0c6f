"""What a tenant's failure means for its registry row, and keeping that row current.

Timers (the risk poller, the sweeps) act for every registered tenant in turn. When one
tenant refuses the app, the others must still be served, and an operator must see which
tenant and why: the row's `consentStatus` and `lastError` (`shared.state.tenants`).

What counts as withdrawn consent:
- a token request refused with `AADSTS700016` (the application wasn't found in the
  directory: never consented, or its enterprise application was deleted), `AADSTS7000229`
  (no service principal in the tenant), `AADSTS65001` (not consented) or `AADSTS7000112`
  (the application is disabled)
  (https://learn.microsoft.com/entra/identity-platform/reference-error-codes); azure-identity
  raises these as `ClientAuthenticationError`;
- Graph or Exchange answering 401 to a token the tenant issued before: the tenant no
  longer accepts it (https://learn.microsoft.com/graph/resolve-auth-errors).
Any other authentication failure (a federated credential that does not match, an expired
assertion) is the deployment's, not the tenant's: it is kept as `lastError` and leaves
`consentStatus` as it was. The error text kept never holds a token or an assertion: anything
shaped like a JWT or a bearer value is cut out before it is stored or logged.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from azure.core.exceptions import ClientAuthenticationError

from shared.errors import ServiceError
from shared.state.tenants import ConsentStatus

if TYPE_CHECKING:
    from shared.tenancy import TenantHub

log = logging.getLogger("responder.tenancy.health")

WITHDRAWN_CODES = frozenset({"AADSTS700016", "AADSTS7000229", "AADSTS65001", "AADSTS7000112"})
MAX_ERROR_CHARS = 1000
_AADSTS = re.compile(r"AADSTS\d+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_BEARER = re.compile(r"(?i)(bearer|client_assertion|access_token)([\"'=:\s]+)[^\s\"'&,]+")
_HTTP_401 = re.compile(r"\bHTTP 401\b")


def safe_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """An error text fit to store: no JWT-shaped or bearer value, not the raw response an
    azure-identity error quotes after `Content:`, one paragraph, bounded."""
    text = text.split("\nContent:", 1)[0]
    text = _JWT.sub("[token removed]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}[removed]", text)
    text = " ".join(text.split())
    return text[:limit]


def describe(exc: BaseException) -> str:
    """`Type: message`, fit to store. A token error keeps only Entra's description (the
    first line of azure-identity's message), not the response it quotes."""
    message = str(exc)
    if isinstance(exc, ClientAuthenticationError):
        message = getattr(exc, "message", None) or message
    return safe_text(f"{type(exc).__name__}: {message}")


def is_auth_failure(error: str) -> bool:
    """True when an error text says the tenant refused the app's token or credential."""
    return ("ClientAuthenticationError" in error or bool(_AADSTS.search(error))
            or bool(_HTTP_401.search(error)))


def consent_withdrawn(error: str) -> bool:
    """True when an error text says the tenant no longer lets the app in."""
    codes = set(_AADSTS.findall(error))
    return bool(codes & WITHDRAWN_CODES) or (not codes and bool(_HTTP_401.search(error)))


def error_of(exc: BaseException) -> str:
    """`describe(exc)`, with the HTTP status of a Graph or Exchange error made explicit."""
    text = describe(exc)
    if isinstance(exc, ServiceError) and exc.status == 401 and "HTTP 401" not in text:
        text = safe_text(f"{text} (HTTP 401)")
    return text


async def note_outcome(hub: TenantHub, tenant: str | None, error: str | None) -> None:
    """Keep a registered tenant's row current after a timer acted for it: an auth failure
    sets `lastError` (and `consentStatus` withdrawn when it says so); success after a
    failure (or a first success) sets `consentStatus` ok and clears `lastError`. Other
    failures (a Graph 5xx, storage) say nothing about consent and change nothing. The
    default tenant has no row to keep. Never raises: the timer's own result stands."""
    if not tenant or hub.is_default(tenant):
        return
    try:
        record = await hub.registry.get(tenant)
        if record is None:
            return
        if error is not None and is_auth_failure(error):
            error = safe_text(error)
            status: ConsentStatus | None = "withdrawn" if consent_withdrawn(error) else None
            if record.last_error != error or (status and record.consent_status != status):
                await hub.registry.set_status(record.tenant_id, consent_status=status,
                                              last_error=error)
            log.warning("tenant %s refused the app: %s", record.tenant_id, error)
        elif error is None and (record.consent_status != "ok" or record.last_error):
            await hub.registry.set_status(record.tenant_id, consent_status="ok",
                                          last_error=None)
            log.info("tenant %s answered again: consent ok", record.tenant_id)
    except Exception:  # a registry write must not turn a tenant's result into a crash
        log.warning("could not update the registry row of tenant %s", tenant, exc_info=True)


async def forget_services(hub: TenantHub, tenant: str | None) -> None:
    """After an auth failure, drop the tenant's Services (and close them), so the next
    timer builds a fresh credential: azure-identity keeps a token until it expires, and a
    token issued under a withdrawn consent stays refused after consent is granted again.
    Whatever else was using them was failing with the same refusal."""
    if not tenant or hub.is_default(tenant):
        return
    await hub.forget(tenant)
