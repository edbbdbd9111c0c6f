"""Azure Monitor alerts in the common alert schema (log search alerts on AADUserRiskEvents).

The user is only in `data.alertContext.condition.allOf[].dimensions[{name, value}]`: search
results are not embedded. A `Resolved` alert never starts a remediation, so it is ignored.
"""

from __future__ import annotations

from typing import Any

from shared.intake.sources.common import (
    as_dict,
    as_list,
    clean_id,
    clean_tenant,
    clean_text,
    collect,
    dedupe,
    is_admin_identifier,
    make_signal,
    norm,
    parse_time_opt,
    resolve_user,
    risk_level,
)
from shared.intake.sources.errors import MalformedPayload, NoCloudUser
from shared.intake.sources.registry import Nested, Source, register
from shared.intake.sources.result import NormaliseResult
from shared.models import RiskSignal

SOURCE_LOG_ALERT = "monitor.logAlert"
SCHEMA_ID = "azureMonitorCommonAlertSchema"

# Dimension names are compared with norm(): case and punctuation do not matter.
_USER_ID_DIMS = ("userid", "aaduserid", "accountobjectid", "objectid")
_UPN_DIMS = ("userprincipalname", "upn", "accountupn")
_DETECTION_DIMS = ("id", "detectionid", "riskdetectionid")
_EVENT_TYPE_DIMS = ("riskeventtype", "risktype")
_LEVEL_DIMS = ("risklevel",)
_DETAIL_DIMS = ("riskdetail",)
_TIME_DIMS = ("detecteddatetime", "activitydatetime", "timegenerated")
_TENANT_DIMS = ("aadtenantid",)
"""Only an `AADTenantId` dimension names the Entra tenant: Log Analytics tables describe their
`TenantId` column as "The Log Analytics workspace ID", not a tenant's (for example
https://learn.microsoft.com/azure/azure-monitor/reference/tables/auditlogs, which also has
`AADTenantId`)."""


def is_common_alert(payload: Any) -> bool:
    """True for a common-alert-schema payload (schemaId, or `data.essentials`)."""
    data = as_dict(payload)
    if data is None:
        return False
    if data.get("schemaId") == SCHEMA_ID:
        return True
    return _body(data) is not None


def _body(data: dict[str, Any]) -> dict[str, Any] | None:
    """The `{essentials, alertContext}` part: under `data` for webhooks, or bare when an
    Event Grid event's data carries it."""
    inner = as_dict(data.get("data"))
    if inner is not None and as_dict(inner.get("essentials")) is not None:
        return inner
    if as_dict(data.get("essentials")) is not None and "alertContext" in data:
        return data
    return None


def _dimensions(condition: dict[str, Any]) -> dict[str, Any]:
    """`[{name, value}]` to `{normalised name: value}`; the first value of a name wins."""
    dims: dict[str, Any] = {}
    for dim in as_list(condition.get("dimensions"), "dimensions") or []:
        entry = as_dict(dim) or {}
        name = norm(entry.get("name"))
        if name and name not in dims and entry.get("value") is not None:
            dims[name] = entry.get("value")
    return dims


def _last_segment(value: Any) -> Any:
    """The alert GUID from an ARM alert id path (`/subscriptions/.../alerts/{guid}`)."""
    return value.rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) else None


def _pick(dims: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((dims[name] for name in names if name in dims), None)


def from_log_alert(payload: Any) -> NormaliseResult:
    """One signal per user found in the alert's dimensions; `Resolved` alerts are ignored."""
    data = as_dict(payload)
    body = _body(data) if data is not None else None
    essentials = as_dict((body or {}).get("essentials"))
    if data is None or body is None or essentials is None:
        raise MalformedPayload("common alert schema payload needs data.essentials")
    result = NormaliseResult()
    condition_state = norm(essentials.get("monitorCondition"))
    if condition_state == "resolved":
        result.ignore("$", "monitor alert is Resolved")
        return result
    context = as_dict(body.get("alertContext")) or {}
    condition = as_dict(context.get("condition")) or {}
    all_of = as_list(condition.get("allOf"), "condition.allOf") or []
    pairs = [(f"data.alertContext.condition.allOf[{i}]", item) for i, item in enumerate(all_of)]
    if not pairs:
        result.problem(
            "$",
            NoCloudUser(
                "monitor alert has no condition dimensions: no resolvable cloud user "
                "(split the log search alert by a UserId dimension)"
            ),
            SOURCE_LOG_ALERT,
        )
        return result
    collect(result, pairs, lambda item: _condition_signal(data, essentials, item), SOURCE_LOG_ALERT)
    result.signals = dedupe(result.signals)
    return result


def _condition_signal(payload: dict[str, Any], essentials: dict[str, Any], item: Any) -> RiskSignal:
    """Signal for one `allOf` entry from its dimensions."""
    condition = as_dict(item)
    if condition is None:
        raise MalformedPayload("condition.allOf entry is not an object")
    dims = _dimensions(condition)
    user_id, upn = resolve_user(
        _pick(dims, _USER_ID_DIMS), _pick(dims, _UPN_DIMS), "monitor alert dimensions"
    )
    event_type = clean_text(_pick(dims, _EVENT_TYPE_DIMS))
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(_pick(dims, _LEVEL_DIMS), essentials.get("severity")),
        risk_event_type=event_type,
        detection_id=clean_id(_pick(dims, _DETECTION_DIMS), "detection id dimension")
        or clean_id(_last_segment(essentials.get("alertId")), "essentials.alertId"),
        detected_at=parse_time_opt(_pick(dims, _TIME_DIMS), essentials.get("firedDateTime")),
        source=SOURCE_LOG_ALERT,
        admin_initiated=is_admin_identifier(event_type, _pick(dims, _DETAIL_DIMS)),
        raw=payload,
        tenant=clean_tenant(_pick(dims, _TENANT_DIMS), "AADTenantId dimension"),
    )


@register
class MonitorLogAlert(Source):
    """An Azure Monitor alert in the common alert schema (a log search alert's webhook)."""

    name = SOURCE_LOG_ALERT
    level = "payload"

    @staticmethod
    def recognises(data: Any) -> bool:
        return is_common_alert(data)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return from_log_alert(data)
