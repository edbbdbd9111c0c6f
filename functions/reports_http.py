"""Run report endpoint: GET /api/runs/{runId}/report?format=html|md|json|case|pdf (function
key). `case` is the printable case report; `pdf` is that page printed by headless Chromium,
501 where there is no Chromium (the Azure Functions image has none: use the CLI's --pdf).
`&tenant=<id or domain>` names the tenant whose journal holds the run (default: the default
tenant); a tenant this app does not serve, or a run of another tenant, is 404."""

from __future__ import annotations

import azure.functions as func

from functions.runtime import services, services_for
from shared.errors import UnknownTenant
from shared.playbook import case_pdf, case_report, reports
from shared.services import Services

bp = func.Blueprint()
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
FORMATS = ("html", "md", "json", "case", "pdf")


@bp.function_name("run_report")
@bp.route(route="runs/{runId}/report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def run_report(req: func.HttpRequest) -> func.HttpResponse:
    fmt = (req.params.get("format") or "html").lower()
    if fmt not in FORMATS:
        return func.HttpResponse(f"format must be one of {', '.join(FORMATS)}", status_code=400,
                                 headers=_HEADERS)
    run_id = req.route_params.get("runId", "")
    tenant = (req.params.get("tenant") or "").strip()
    try:
        svc = await services_for(tenant) if tenant else await services()
    except UnknownTenant:
        return func.HttpResponse("unknown tenant", status_code=404, headers=_HEADERS)
    if fmt == "pdf":
        return await _pdf(svc, run_id)
    if fmt == "case":
        case = await case_report.load_case(svc, run_id)
        if case is None:
            return func.HttpResponse("no such run", status_code=404, headers=_HEADERS)
        return func.HttpResponse(case_report.case_html(case), status_code=200, headers={
            **_HEADERS, "Content-Type": "text/html; charset=utf-8"})
    report = await reports.load(svc, run_id)
    if report is None:
        return func.HttpResponse("no such run", status_code=404, headers=_HEADERS)
    body, content_type = reports.render(report, fmt)
    return func.HttpResponse(body, status_code=200, headers={**_HEADERS,
                                                             "Content-Type": content_type})


async def _pdf(svc: Services, run_id: str) -> func.HttpResponse:
    try:
        data = await case_pdf.case_pdf(svc, run_id)
    except case_pdf.PdfUnavailable as exc:
        return func.HttpResponse(f"PDF not available here: {exc}", status_code=501,
                                 headers=_HEADERS)
    except case_pdf.PdfFailed as exc:
        return func.HttpResponse(f"PDF failed: {exc}", status_code=500, headers=_HEADERS)
    if data is None:
        return func.HttpResponse("no such run", status_code=404, headers=_HEADERS)
    return func.HttpResponse(data, status_code=200, headers={
        **_HEADERS, "Content-Type": "application/pdf",
        "Content-Disposition": f"attachment; filename=\"{case_pdf.pdf_filename(run_id)}\""})
