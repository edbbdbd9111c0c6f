"""Run report endpoint: GET /api/runs/{runId}/report?format=html|md|json (function key)."""

from __future__ import annotations

import azure.functions as func

from functions.runtime import services
from shared.playbook import reports

bp = func.Blueprint()
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


@bp.function_name("run_report")
@bp.route(route="runs/{runId}/report", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def run_report(req: func.HttpRequest) -> func.HttpResponse:
    fmt = (req.params.get("format") or "html").lower()
    if fmt not in ("html", "md", "json"):
        return func.HttpResponse("format must be html, md or json", status_code=400,
                                 headers=_HEADERS)
    report = await reports.load(await services(), req.route_params.get("runId", ""))
    if report is None:
        return func.HttpResponse("no such run", status_code=404, headers=_HEADERS)
    body, content_type = reports.render(report, fmt)
    return func.HttpResponse(body, status_code=200, headers={**_HEADERS,
                                                             "Content-Type": content_type})
