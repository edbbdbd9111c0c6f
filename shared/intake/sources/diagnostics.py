"""Event Hub records: Entra diagnostic settings (UserRiskEvents, RiskyUsers) and Defender XDR
streaming (AlertEvidence, AlertInfo).

An Event Hub body is `{"records": [...]}` with categories mixed; each record is handled on
its own, so one broken record becomes one problem and the others still become signals.
Trap: the top-level `correlationId` is the detection id in UserRiskEvents but the *user* id
in RiskyUsers, so identities are read from `properties` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.intake.sources.common import (
    as_dict,
    as_list,
    clean_id,
    clean_tenant,
    clean_text,
    clean_upn,
    collect,
    decode_json,
    get_ci,
    is_admin_identifier,
    is_admin_name,
    is_admin_state,
    make_signal,
    norm,
    parse_time_opt,
    resolve_user,
    risk_level,
)
from shared.intake.sources.errors import Ignored, MalformedPayload, NoCloudUser, UnknownShape
from shared.intake.sources.registry import Nested, Source, register
from shared.intake.sources.result import NormaliseResult
from shared.models import RiskSignal

SOURCE_USER_RISK_EVENTS = "diagnostics.userRiskEvents"
SOURCE_RISKY_USERS = "diagnostics.riskyUsers"
SOURCE_ALERT_EVIDENCE = "defender.alertEvidence"
SOURCE_ALERT_INFO = "defender.alertInfo"

_ON_PREM_SID_PREFIX = "S-1-5-21-"
"""Cloud-only accounts have SIDs starting S-1-12-1-; S-1-5-21- is an Active Directory domain."""


def _record_parts(record: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record and its `properties` (decoded if it arrived as a JSON string)."""
    data = as_dict(record)
    if data is None:
        raise MalformedPayload(f"record must be a JSON object, got {type(record).__name__}")
    props = as_dict(decode_json(data.get("properties")))
    if props is None:
        raise MalformedPayload("record properties is not a JSON object (or malformed JSON text)")
    return data, props


def _record_tenant(data: dict[str, Any]) -> str | None:
    """The record's top-level `tenantId`: "the tenant ID of the Active Directory tenant that
    this event is tied to", present in tenant-level logs such as Entra's
    (https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs-schema); the
    Defender XDR streaming records carry "the Id of the tenant that the event belongs to" at
    the same place (https://learn.microsoft.com/defender-xdr/streaming-api-event-hub)."""
    return clean_tenant(get_ci(data, "tenantId"), "record tenantId")


def from_user_risk_event_record(record: Any) -> RiskSignal:
    """A UserRiskEvents record: a risk detection; `properties.id` is the detection id."""
    data, props = _record_parts(record)
    user_id, upn = resolve_user(
        get_ci(props, "userId"), get_ci(props, "userPrincipalName"), "UserRiskEvents record"
    )
    event_type = clean_text(get_ci(props, "riskEventType", "riskType"))
    detail = get_ci(props, "riskDetail")
    detection_id = clean_id(get_ci(props, "id"), "detection id") or clean_id(
        data.get("correlationId"), "correlationId"
    )
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(get_ci(props, "riskLevel")),
        risk_event_type=event_type,
        detection_id=detection_id,
        detected_at=parse_time_opt(
            get_ci(props, "detectedDateTime"), get_ci(props, "activityDateTime"), data.get("time")
        ),
        source=SOURCE_USER_RISK_EVENTS,
        admin_initiated=(
            is_admin_identifier(event_type, detail) or is_admin_state(get_ci(props, "riskState"))
        ),
        raw=data,
        tenant=_record_tenant(data),
    )


def from_risky_user_record(record: Any) -> RiskSignal:
    """A RiskyUsers record: `properties.id` is the user id (never the top-level correlationId)."""
    data, props = _record_parts(record)
    user_id, upn = resolve_user(
        get_ci(props, "id"), get_ci(props, "userPrincipalName"), "RiskyUsers record"
    )
    detail = clean_text(get_ci(props, "riskDetail"))
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(get_ci(props, "riskLevel")),
        risk_event_type=detail if detail and detail.lower() != "none" else None,
        detection_id=None,
        detected_at=parse_time_opt(get_ci(props, "riskLastUpdatedDateTime"), data.get("time")),
        source=SOURCE_RISKY_USERS,
        admin_initiated=is_admin_identifier(detail) or is_admin_state(get_ci(props, "riskState")),
        raw=data,
        tenant=_record_tenant(data),
    )


def _defender_signal(record: Any, source: str) -> RiskSignal:
    """Shared by AlertEvidence and AlertInfo: the account columns, with AdditionalFields as
    a fallback for the ids (it is a JSON string, possibly malformed: then it is ignored)."""
    data, props = _record_parts(record)
    extra = as_dict(decode_json(get_ci(props, "AdditionalFields"))) or {}
    nested = as_dict(get_ci(extra, "Account")) or {}
    entity = clean_text(get_ci(props, "EntityType"))
    object_id = (
        get_ci(props, "AccountObjectId")
        or get_ci(extra, "AadUserId", "AccountObjectId")
        or get_ci(nested, "AadUserId", "AccountObjectId")
    )
    upn_value = (
        get_ci(props, "AccountUpn")
        or get_ci(extra, "UserPrincipalName", "AccountUpn", "Upn")
        or get_ci(nested, "UserPrincipalName", "Upn")
    )
    has_account = clean_id(object_id, "AccountObjectId") or clean_upn(upn_value, "AccountUpn")
    if not has_account:
        if source == SOURCE_ALERT_INFO:
            raise Ignored("AlertInfo carries no user; its AlertEvidence records name the users")
        if norm(entity) not in ("user", "mailbox", ""):
            raise Ignored(f"AlertEvidence entity type {entity!r} carries no user")
        raise NoCloudUser("AlertEvidence: no resolvable cloud user (no AccountObjectId, no UPN)")
    sid = get_ci(props, "AccountSid") or get_ci(extra, "Sid")
    on_prem = isinstance(sid, str) and sid.upper().startswith(_ON_PREM_SID_PREFIX)
    if clean_id(object_id, "AccountObjectId") is None and on_prem:
        raise NoCloudUser(
            "AlertEvidence: no resolvable cloud user: an on-premises account (domain SID, "
            "no AccountObjectId); its UPN is not used as a guess"
        )
    user_id, upn = resolve_user(object_id, upn_value, "Defender record")
    title = clean_text(get_ci(props, "Title"))
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(get_ci(props, "Severity")),
        risk_event_type=title or clean_text(get_ci(props, "Category")),
        detection_id=clean_id(get_ci(props, "AlertId"), "AlertId"),
        detected_at=parse_time_opt(get_ci(props, "Timestamp"), data.get("time")),
        source=source,
        admin_initiated=is_admin_name(title),
        raw=data,
        tenant=_record_tenant(data),
    )


def from_alert_evidence_record(record: Any) -> RiskSignal:
    """A Defender XDR AlertEvidence record (`properties.AccountObjectId` / `AccountUpn`)."""
    return _defender_signal(record, SOURCE_ALERT_EVIDENCE)


def from_alert_info_record(record: Any) -> RiskSignal:
    """A Defender XDR AlertInfo record: it names no user, so normally raises `Ignored`."""
    return _defender_signal(record, SOURCE_ALERT_INFO)


_CATEGORIES: dict[str, tuple[str, Callable[[Any], RiskSignal]]] = {
    "userriskevents": (SOURCE_USER_RISK_EVENTS, from_user_risk_event_record),
    "riskyusers": (SOURCE_RISKY_USERS, from_risky_user_record),
    "advancedhuntingalertevidence": (SOURCE_ALERT_EVIDENCE, from_alert_evidence_record),
    "alertevidence": (SOURCE_ALERT_EVIDENCE, from_alert_evidence_record),
    "advancedhuntingalertinfo": (SOURCE_ALERT_INFO, from_alert_info_record),
    "alertinfo": (SOURCE_ALERT_INFO, from_alert_info_record),
}


def record_source(record: Any) -> str:
    """The source name for a record's category, or `unknown`."""
    category = norm((as_dict(record) or {}).get("category"))
    entry = _CATEGORIES.get(category)
    return entry[0] if entry else "unknown"


def from_record(record: Any) -> RiskSignal:
    """Dispatch one record by category; other categories (sign-ins, audit) raise `Ignored`."""
    data = as_dict(record)
    if data is None:
        raise MalformedPayload(f"record must be a JSON object, got {type(record).__name__}")
    category = data.get("category")
    if not isinstance(category, str) or not category.strip():
        raise UnknownShape("record has no category")
    entry = _CATEGORIES.get(norm(category))
    if entry is None:
        raise Ignored(f"record category {category[:60]!r} is not a risk source")
    return entry[1](data)


def from_records(payload: Any) -> NormaliseResult:
    """An Event Hub body `{"records": [...]}` (or a bare list of records)."""
    records = as_list(payload, "records")
    if records is None:
        records = as_list((as_dict(payload) or {}).get("records"), "records")
    if records is None:
        raise MalformedPayload('expected {"records": [...]} from Event Hub')
    result = NormaliseResult()
    pairs = [(f"records[{i}]", record) for i, record in enumerate(records)]
    collect(result, pairs, from_record, record_source)
    return result


@register
class EventHubRecords(Source):
    """An Event Hub body `{"records": [...]}` from Entra diagnostic settings or Defender XDR
    streaming; each record is normalised on its own."""

    name = "diagnostics.records"
    level = "payload"

    @staticmethod
    def recognises(data: Any) -> bool:
        body = as_dict(data)
        return body is not None and isinstance(body.get("records"), list)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return from_records(data)


@register
class DiagnosticRecord(Source):
    """One diagnostic or streaming record (a `category` and its `properties`) met on its own,
    in a collection or an envelope; problems name the record's category source."""

    name = "diagnostics.record"
    level = "item"

    @staticmethod
    def recognises(data: Any) -> bool:
        return "category" in data and "properties" in data

    @staticmethod
    def normalise(data: Any, nested: Nested) -> RiskSignal:
        return from_record(data)

    @classmethod
    def problem_source(cls, item: Any) -> str:
        return record_source(item)
