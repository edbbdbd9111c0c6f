"""The unified audit log through Graph's audit log query API (Microsoft Purview): the one
documented, app-only source that dates a mailbox delegation.

Get-MailboxPermission and Get-RecipientPermission carry no date. Exchange writes an admin
audit record for each Add-MailboxPermission, Add-RecipientPermission and Set-Mailbox
(-GrantSendOnBehalfTo) run, and the query API searches those records with an application
permission: AuditLogsQuery-Exchange.Read.All is the least privileged one for Exchange
records (AuditLogsQuery.Read.All covers every service).
https://learn.microsoft.com/graph/api/security-auditcoreroot-post-auditlogqueries
https://learn.microsoft.com/graph/api/security-auditlogquery-list-records
(Search-UnifiedAuditLog through the Exchange endpoint is not used: its app-only use is not
documented for the admin REST endpoint this project calls.)

The query is asynchronous: created, then polled until `succeeded`, then its records are
listed. The docs say neither how long a query runs nor how late a record arrives after the
cmdlet ran beyond "60 to 90 minutes" for most services (see docs/real-tenant.md), so callers
bound the wait and treat what they could not date as undetermined.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from shared.errors import ServiceError
from shared.tenant.graph.client import GraphClient, build_path

PERM_AUDIT_QUERY_EXCHANGE = "AuditLogsQuery-Exchange.Read.All"
DELEGATION_OPERATIONS = ("Add-MailboxPermission", "Add-RecipientPermission", "Set-Mailbox")


class QueryNotFinished(ServiceError):
    """The audit log query did not finish within the wait the caller allowed."""


def _literal(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def exchange_admin_records(graph: GraphClient, operations: tuple[str, ...], *,
                                 start: datetime, end: datetime, wait_seconds: float,
                                 poll_seconds: float = 2.0) -> list[dict[str, Any]]:
    """Exchange admin records of `operations` between start and end, oldest first.

    Raises QueryNotFinished when the query is still running after `wait_seconds`, and a
    ServiceError when it failed or was cancelled."""
    body = {"displayName": "responder: delegation changes",
            "filterStartDateTime": _literal(start), "filterEndDateTime": _literal(end),
            "recordTypeFilters": ["exchangeAdmin"], "operationFilters": list(operations)}
    created = await graph.request("POST", "/security/auditLog/queries", body=body,
                                  permission=PERM_AUDIT_QUERY_EXCHANGE)
    qid = str((created or {}).get("id") or "")
    if not qid:
        raise ServiceError("the audit log query was not created", service="graph")
    deadline = time.monotonic() + wait_seconds
    status = str((created or {}).get("status") or "notStarted")
    delay = min(poll_seconds, 0.05)
    while status != "succeeded":
        if status in ("failed", "cancelled"):
            raise ServiceError(f"the audit log query {status}", service="graph",
                               path="/security/auditLog/queries")
        if time.monotonic() >= deadline:
            raise QueryNotFinished(f"the audit log query was still {status} after "
                                   f"{wait_seconds:g} s", service="graph",
                                   path="/security/auditLog/queries")
        await asyncio.sleep(delay)
        delay = min(poll_seconds, delay * 4)
        query = await graph.request("GET", build_path("/security/auditLog/queries/{}", qid),
                                    permission=PERM_AUDIT_QUERY_EXCHANGE)
        status = str((query or {}).get("status") or "")
    rows = await graph.list_all(build_path("/security/auditLog/queries/{}/records", qid),
                                permission=PERM_AUDIT_QUERY_EXCHANGE)
    return sorted(rows, key=lambda r: str(r.get("createdDateTime") or ""))


def parameters(record: dict[str, Any]) -> dict[str, str]:
    """A record's cmdlet parameters (auditData.Parameters [{Name, Value}]), names lower."""
    data = record.get("auditData") or {}
    out: dict[str, str] = {}
    for p in data.get("Parameters") or []:
        if isinstance(p, dict) and p.get("Name"):
            out[str(p["Name"]).lower()] = str(p.get("Value") or "")
    return out
