"""Microsoft Sentinel incidents (automation rule -> Logic App -> HTTP).

Users are `relatedEntities[]` of kind Account: the UPN is `accountName@upnSuffix` and the
object id is `aadUserId`. An account known only to on-premises AD is reported as a problem:
its name may match a different cloud user, so it is never guessed.
"""

from __future__ import annotations

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
    dedupe,
    first,
    first_text,
    is_admin_identifier,
    is_admin_name,
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

SOURCE_INCIDENT = "sentinel.incident"
_INCIDENT_TYPE = "microsoftsecurityinsightsincidents"
_ON_PREM_SID_PREFIX = "S-1-5-21-"


def incident_of(payload: Any) -> dict[str, Any] | None:
    """The incident resource: the Logic App trigger's `object`, or the payload itself."""
    data = as_dict(payload)
    if data is None:
        return None
    inner = as_dict(data.get("object"))
    if inner is not None and (
        norm(data.get("objectSchemaType")) == "incident" or _looks_like_incident(inner)
    ):
        return inner
    return data if _looks_like_incident(data) else None


def _looks_like_incident(data: dict[str, Any]) -> bool:
    props = as_dict(data.get("properties"))
    if props is None:
        return False
    if norm(data.get("type")) == _INCIDENT_TYPE:
        return True
    return "relatedEntities" in props and ("incidentNumber" in props or "severity" in props)


def _custom_details(props: dict[str, Any]) -> dict[str, Any]:
    """Merged custom details of the incident's alerts (JSON strings decoded; bad ones skipped)."""
    merged: dict[str, Any] = {}
    for alert in as_list(props.get("alerts"), "incident alerts") or []:
        alert_props = as_dict((as_dict(alert) or {}).get("properties")) or {}
        extra = as_dict(decode_json(alert_props.get("additionalData"))) or {}
        for candidate in (
            alert_props.get("customDetails"),
            extra.get("Custom Details"),
            extra.get("customDetails"),
        ):
            details = as_dict(decode_json(candidate))
            for key, value in (details or {}).items():
                merged.setdefault(norm(key), value)
    return merged


def from_sentinel_incident(payload: Any) -> NormaliseResult:
    """One signal per cloud Account entity; closed incidents are ignored."""
    incident = incident_of(payload)
    if incident is None:
        raise MalformedPayload("not a Sentinel incident: no properties.relatedEntities")
    props = as_dict(incident.get("properties")) or {}
    prefix = "properties" if incident is payload else "object.properties"
    result = NormaliseResult()
    if norm(props.get("status")) == "closed":
        result.ignore("$", f"Sentinel incident is closed ({props.get('classification')})")
        return result
    entities = as_list(props.get("relatedEntities"), "relatedEntities") or []
    accounts = [
        (f"{prefix}.relatedEntities[{i}]", entity)
        for i, entity in enumerate(entities)
        if norm((as_dict(entity) or {}).get("kind")) == "account"
    ]
    if not accounts:
        result.problem("$", NoCloudUser("Sentinel incident has no Account entity"), SOURCE_INCIDENT)
        return result
    details = _custom_details(props)
    collect(
        result,
        accounts,
        lambda entity: _account_signal(incident, props, details, entity),
        SOURCE_INCIDENT,
    )
    result.signals = dedupe(result.signals)
    return result


def _account_signal(
    incident: dict[str, Any],
    props: dict[str, Any],
    details: dict[str, Any],
    entity: dict[str, Any],
) -> RiskSignal:
    """Signal for one Account entity of the incident."""
    account = as_dict(entity.get("properties")) or entity
    aad_id = clean_id(account.get("aadUserId"), "aadUserId")
    # The incident itself names no Entra tenant (its workspace is an Azure resource): the
    # Account entity's `aadTenantId` goes with its `aadUserId` and routes the signal.
    tenant = clean_tenant(account.get("aadTenantId"), "Account aadTenantId")
    upn = _entity_upn(account)
    if aad_id is None:
        sid = account.get("sid")
        on_prem = account.get("isDomainJoined") is True or (
            isinstance(sid, str) and sid.upper().startswith(_ON_PREM_SID_PREFIX)
        )
        if on_prem or upn is None:
            name = clean_text(account.get("accountName")) or "?"
            raise NoCloudUser(
                f"Sentinel account {name!r}: no resolvable cloud user (on-premises only, "
                "no aadUserId); not guessed from its name"
            )
    user_id, upn = resolve_user(aad_id, upn, "Sentinel account")
    title = clean_text(props.get("title"))
    event_type = first_text(first(details, "riskeventtype", "risktype"))
    detection_id = first_text(first(details, "detectionid", "riskdetectionid"))
    raw_props = {k: v for k, v in props.items() if k not in ("relatedEntities", "alerts")}
    raw_props["relatedEntities"] = [entity]
    raw = {k: v for k, v in incident.items() if k != "properties"}
    raw["properties"] = raw_props
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(props.get("severity")),
        risk_event_type=event_type or title,
        detection_id=clean_id(detection_id, "custom detail DetectionId")
        or clean_id(incident.get("name"), "incident name"),
        detected_at=parse_time_opt(props.get("createdTimeUtc"), props.get("firstActivityTimeUtc")),
        source=SOURCE_INCIDENT,
        admin_initiated=is_admin_identifier(event_type) or is_admin_name(title),
        raw=raw,
        tenant=tenant,
    )


def _entity_upn(account: dict[str, Any]) -> str | None:
    """`accountName@upnSuffix`, kept exactly (apostrophes, #EXT#); a full UPN in accountName
    is accepted as given."""
    name = account.get("accountName")
    suffix = account.get("upnSuffix")
    if isinstance(name, str) and isinstance(suffix, str) and name.strip() and suffix.strip():
        if "@" in name:
            return clean_upn(name, "accountName")
        return clean_upn(f"{name.strip()}@{suffix.strip()}", "Account UPN")
    return clean_upn(name, "accountName") if isinstance(name, str) and "@" in name else None


@register
class SentinelIncident(Source):
    """A Microsoft Sentinel incident (a Logic App trigger body, or the incident resource)."""

    name = SOURCE_INCIDENT
    level = "payload"

    @staticmethod
    def recognises(data: Any) -> bool:
        return incident_of(data) is not None

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return from_sentinel_incident(data)
