"""The Microsoft Purview audit log query API (Graph): an asynchronous search of the
unified audit log, here over the Exchange admin records `exchange_permissions` writes.

- POST /security/auditLog/queries creates a query (201, status notStarted):
  https://learn.microsoft.com/graph/api/security-auditcoreroot-post-auditlogqueries
  (filterStartDateTime, filterEndDateTime, recordTypeFilters, operationFilters,
  userPrincipalNameFilters, objectIdFilters, ...; status notStarted, running, succeeded,
  failed, cancelled).
- GET /security/auditLog/queries/{id} reads its status; GET .../{id}/records lists the
  auditLogRecord results, paged with @odata.nextLink:
  https://learn.microsoft.com/graph/api/security-auditlogquery-list-records
The docs give no figure for how long a query runs: the emulator's `audit_query_seconds`
(default 0) says when a query turns from running to succeeded. Records are listed only
once the query succeeded (what the API answers before is not documented)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .timefmt import parse_dt

router = Router()
FIELDS = ("displayName", "filterStartDateTime", "filterEndDateTime", "recordTypeFilters",
          "keywordFilter", "serviceFilter", "operationFilters", "userPrincipalNameFilters",
          "ipAddressFilters", "objectIdFilters", "administrativeUnitIdFilters")
TYPE = "#microsoft.graph.security.auditLogQuery"


def _strings(body: dict, key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GraphError(400, "BadRequest", f"Invalid value for property '{key}'.")
    return value


def _matches(rec: dict, q: dict) -> bool:
    when = parse_dt(rec["createdDateTime"])
    if q.get("filterStartDateTime") and when < parse_dt(q["filterStartDateTime"]):
        return False
    if q.get("filterEndDateTime") and when > parse_dt(q["filterEndDateTime"]):
        return False
    checks = (("recordTypeFilters", "auditLogRecordType"), ("operationFilters", "operation"),
              ("objectIdFilters", "objectId"),
              ("userPrincipalNameFilters", "userPrincipalName"))
    for key, prop in checks:
        wanted = {v.lower() for v in q.get(key) or []}
        if wanted and str(rec.get(prop) or "").lower() not in wanted:
            return False
    return True


def _view(q: dict, config: dict) -> dict:
    out = {"@odata.type": TYPE, "id": q["id"], **{k: q.get(k) for k in FIELDS}}
    ready = time.monotonic() - q["_created"] >= float(config.get("audit_query_seconds", 0))
    out["status"] = "succeeded" if ready else "running"
    return out


@router.add("POST", "security/auditLog/queries")
def create_query(ctx: Ctx) -> EmuResponse:
    body = ctx.body_dict()
    q: dict[str, Any] = {"id": str(uuid.uuid4()), "_created": time.monotonic()}
    for key in FIELDS:
        if key.endswith("Filters"):
            q[key] = _strings(body, key)
        else:
            q[key] = body.get(key)
    for key in ("filterStartDateTime", "filterEndDateTime"):
        if q[key]:
            try:
                parse_dt(str(q[key]))
            except ValueError as exc:
                raise GraphError(400, "BadRequest", f"Invalid value for '{key}'.") from exc
    q["_records"] = [r for r in ctx.tenant.exchange_audit if _matches(r, q)]
    ctx.tenant.audit_queries[q["id"]] = q
    view = _view(q, ctx.config)
    view["status"] = "notStarted"
    body_out = {"@odata.context": ctx.context_url("security/auditLog/queries/$entity"), **view}
    return ctx.json(body_out, status=201, write=True)


def _query(ctx: Ctx, qid: str) -> dict:
    q = ctx.tenant.audit_queries.get(qid)
    if q is None:
        raise GraphError(404, "NotFound", f"The audit log query '{qid}' was not found.")
    return q


@router.add("GET", "security/auditLog/queries/{qid}")
def get_query(ctx: Ctx, qid: str) -> EmuResponse:
    return ctx.entity("security/auditLog/queries", _view(_query(ctx, qid), ctx.config))


@router.add("GET", "security/auditLog/queries/{qid}/records")
def list_records(ctx: Ctx, qid: str) -> EmuResponse:
    q = _query(ctx, qid)
    done = _view(q, ctx.config)["status"] == "succeeded"
    items = [dict(r) for r in q["_records"]] if done else []
    return ctx.collection(items, f"security/auditLog/queries('{qid}')/records",
                          filter_fields=[], page_key="auditLogRecords", max_top=1000)
