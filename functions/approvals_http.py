"""Approve/deny endpoint for privileged users' waiting steps (shared.safety.approvals).

Anonymous on purpose: the signed, expiring, single-use token in the link IS the credential
(a function key in the link would be a second, long-lived secret in every mail). GET only
shows a confirmation form (mail link scanners open links; they must not decide); POST with
the token decides. Put App Service Authentication in front and set
RESPONDER_APPROVAL_TRUST_PRINCIPAL_HEADER=true to record a verified identity. Being open to
anyone, a refused request costs no storage write and no query (logged and counted only;
at most one point read of the approval row).

A run of a tenant other than the default has links naming that tenant (`?tenant=<id>`, and
the same tenant signed into the token): the approval is read in that tenant's journal
only, once the token is shown to be signed for it, and the run resumes in that tenant.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

import azure.functions as func

from functions.runtime import hub, services
from shared.safety import approvals
from shared.services import Services
from shared.settings import tenant_domain, tenant_guid

bp = func.Blueprint()
log = logging.getLogger("responder.functions.approvals")


def _html(body: str, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(body, status_code=status, mimetype="text/html",
                             charset="utf-8", headers=approvals.PAGE_HEADERS)


def _fields(req: func.HttpRequest) -> dict[str, str]:
    raw = req.get_body() or b""
    if len(raw) > 8192:
        return {}
    if "json" in (req.headers.get("content-type") or ""):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # hostile nesting fits in 8 KiB
            return {}
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items() if v}


def _tenant(value: str | None) -> str:
    """The tenant a link names: a tenant id or a domain, else "" (the default tenant; a
    value that is neither can only be refused, as a token signed for no such tenant)."""
    text = (value or "").strip()[:253]
    return text if text and (tenant_guid(text) or tenant_domain(text)) else \
        ("-" if text else "")


async def _services_for(token: str, tenant: str, by: str = "") -> Services:
    """The default tenant's Services with no lookup; another tenant's only once the token
    is shown to be signed for it (approvals.services_for_link)."""
    if not tenant:
        return await services()
    return await approvals.services_for_link(await hub(), token, tenant, by=by)


@bp.function_name("approvals")
@bp.route(route="approvals", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def approvals_http(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "GET":
        token = req.params.get("token", "")
        tenant = _tenant(req.params.get("tenant"))
        detail = ""
        if token:
            try:
                svc = await _services_for(token, tenant)
                detail = await approvals.describe_token(svc, token, tenant or None)
            except approvals.TokenRefused as exc:
                detail = f"This link cannot be used: {exc}"
        return _html(approvals.confirmation_page(token, detail,
                                                 tenant if tenant != "-" else ""))
    fields = _fields(req)
    token = fields.get("token", "")
    tenant = _tenant(fields.get("tenant") or req.params.get("tenant"))
    by_field = fields.get("by")
    try:
        svc = await _services_for(token, tenant, by=by_field or "")
        by, trust = approvals.who(svc, req.headers.get("x-ms-client-principal-name"),
                                  by_field)
        decided = await approvals.decide(svc, token, by=by, by_trust=trust,
                                         tenant=tenant or None)
    except approvals.TokenRefused as exc:
        return _html(approvals.page("Not accepted", f"<p>{approvals.escape(str(exc))}</p>"),
                     exc.status)
    verb = "approved" if decided.state == "approved" else "denied"
    text = (f"{verb.capitalize()}: {', '.join(decided.steps)} for {decided.upn}. "
            f"Recorded as {by} ({trust}). The run continues in a moment.")
    return _html(approvals.page("Decision recorded", f"<p>{approvals.escape(text)}</p>"))
