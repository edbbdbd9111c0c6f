"""The approval page (functions/approvals_http.py is the thin adapter).

GET never decides, because mail link scanners open links: it shows a form that POSTs the
token, which the page's script copies from the URL fragment.
"""

from __future__ import annotations

import html as _html
import secrets
from typing import TYPE_CHECKING

from shared.safety.approvals import config
from shared.safety.approvals.decisions import preview
from shared.safety.approvals.tokens import TokenRefused

if TYPE_CHECKING:
    from shared.services import Services

TRUSTED = "authenticated (App Service Authentication header)"
SELF_ASSERTED = "self-asserted (not verified: whoever held the link)"
PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
}


def who(services: Services, principal_header: str | None, by_field: str | None) \
        -> tuple[str, str]:
    """The decider as the request shows it, and how far that can be trusted.

    `x-ms-client-principal-name` is set by App Service Authentication, which strips any
    client-supplied copy, but only when it is enabled: so it is trusted only when the app
    setting RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER is true. Otherwise the name is
    whatever the person typed (or the header claims) and is journaled as self-asserted.
    """
    trust = config.trusts_principal_header(services)
    header = (principal_header or "").strip()
    if trust and header:
        return header[:200], TRUSTED
    name = (by_field or "").strip() or header
    return (name[:200] or "anonymous"), SELF_ASSERTED


def page(title: str, body_html: str, *, script_nonce: str | None = None,
         script: str = "") -> str:
    csp = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    if script_nonce:
        csp += f"; script-src 'nonce-{script_nonce}'"
    tag = f"<script nonce=\"{script_nonce}\">{script}</script>" if script_nonce else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">"
            f"<title>{_html.escape(title)}</title><style>body{{font:15px system-ui,sans-serif;"
            "margin:40px;max-width:640px}button{font-size:15px;padding:6px 18px}</style>"
            f"</head><body><h1>{_html.escape(title)}</h1>{body_html}{tag}</body></html>")


_FILL_FROM_FRAGMENT = (
    "(function(){var m=/[#&]token=([^&]+)/.exec(location.hash);"
    "if(m){document.getElementById('token').value=decodeURIComponent(m[1]);"
    "history.replaceState(null,'',location.pathname);}})();"
)


def confirmation_page(query_token: str = "", detail: str = "", tenant: str = "") -> str:
    """GET never decides (mail link scanners open links): it shows a form that POSTs. The
    link's tenant rides in a hidden field (the page's script drops the query from the
    address, so the form could not post it otherwise)."""
    nonce = secrets.token_urlsafe(12)
    tenant_field = (f"<input type=\"hidden\" name=\"tenant\" "
                    f"value=\"{_html.escape(tenant, quote=True)}\">" if tenant else "")
    body = (f"<p>{_html.escape(detail) if detail else 'Confirm the decision in your link.'}"
            "</p><form method=\"post\">"
            f"<input type=\"hidden\" id=\"token\" name=\"token\" "
            f"value=\"{_html.escape(query_token, quote=True)}\">{tenant_field}"
            "<p><label>Your name (recorded as given, unless sign-in is enabled): "
            "<input name=\"by\" maxlength=\"200\"></label></p>"
            "<p><button type=\"submit\">Confirm</button></p></form>")
    return page("Responder approval", body, script_nonce=nonce, script=_FILL_FROM_FRAGMENT)


async def describe_token(services: Services, token: str, tenant: str | None = None) -> str:
    """A one-line preview for the GET page; never raises."""
    try:
        claims, approval = await preview(services, token, tenant=tenant)
    except TokenRefused as exc:
        return f"This link cannot be used: {exc}"
    verb = "APPROVE" if claims["decision"] == "approve" else "DENY"
    return (f"{verb} {', '.join(approval.steps)} for {approval.upn} (run {approval.run_id}); "
            f"link valid until {approval.expires_at.isoformat()}.")


def escape(text: str) -> str:
    return _html.escape(text, quote=True)
