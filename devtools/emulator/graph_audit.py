"""Graph audit log routes: the directory audit list (security-info events among others).

https://learn.microsoft.com/graph/api/directoryaudit-list (GET /auditLogs/directoryAudits,
$filter, $top, $orderby, skiptoken paging) and
https://learn.Microsoft.com/en-us/graph/api/resources/directoryaudit (which properties
support $filter: activityDateTime eq/ge/le, activityDisplayName eq/startswith,
correlationId, id and loggedByService eq; category is not listed, so filtering on it is
refused here). Filters on initiatedBy/targetResources need lambda operators the emulator's
filter parser does not implement; they are refused too (400)."""

from __future__ import annotations

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError

router = Router()

AUDIT_FILTER_FIELDS = ["activityDateTime", "activityDisplayName", "correlationId", "id",
                       "loggedByService"]


@router.add("GET", "auditLogs/directoryAudits")
def list_directory_audits(ctx: Ctx) -> EmuResponse:
    """Oldest first unless $orderby says otherwise; withheld (late) events are not shown."""
    items = ctx.tenant.visible_audit_events()
    return ctx.collection(items, "auditLogs/directoryAudits", filter_fields=AUDIT_FILTER_FIELDS,
                          page_key="directoryAudits", max_top=999)


@router.add("GET", "auditLogs/directoryAudits/{aid}")
def get_directory_audit(ctx: Ctx, aid: str) -> EmuResponse:
    for ev in ctx.tenant.visible_audit_events():
        if ev["id"] == aid:
            return ctx.entity("auditLogs/directoryAudits", ev)
    raise GraphError(404, "Request_ResourceNotFound", f"Resource '{aid}' does not exist.")
