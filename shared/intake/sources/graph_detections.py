"""Microsoft Graph shapes: riskDetection, riskyUser, alerts_v2, change notifications.

Each item function raises a typed error for an item it cannot use; the collection
functions turn per-item errors into problems so one bad item never hides the others.
"""

from __future__ import annotations

import re
from typing import Any

from shared.intake.sources.common import (
    as_dict,
    as_list,
    clean_id,
    clean_tenant,
    clean_text,
    clean_upn,
    collect,
    dedupe,
    first,
    is_admin_identifier,
    is_admin_name,
    is_admin_state,
    make_signal,
    norm,
    parse_time_opt,
    resolve_user,
    risk_level,
)
from shared.intake.sources.errors import AlertError, Ignored, MalformedPayload, NoCloudUser
from shared.intake.sources.registry import Nested, Source, register
from shared.intake.sources.result import NormaliseResult, UserChange
from shared.models import RiskSignal

SOURCE_DETECTION = "graph.riskDetection"
SOURCE_RISKY_USER = "graph.riskyUser"
SOURCE_ALERT = "graph.alert"
SOURCE_NOTIFICATION = "graph.changeNotification"

_USER_RESOURCE = re.compile(r"users/([^/()']+)|users\('([^/()']+)'\)", re.IGNORECASE)
_BENIGN_CLASSIFICATIONS = frozenset({"falsepositive", "informationalexpectedactivity"})


def _require_dict(item: Any, what: str) -> dict[str, Any]:
    """Items must be JSON objects; anything else is a malformed payload."""
    data = as_dict(item)
    if data is None:
        raise MalformedPayload(f"{what} must be a JSON object, got {type(item).__name__}")
    return data


def from_risk_detection(item: Any) -> RiskSignal:
    """One riskDetection (Graph poll or push): user in `userId` / `userPrincipalName`."""
    data = _require_dict(item, "riskDetection")
    user_id, upn = resolve_user(data.get("userId"), data.get("userPrincipalName"), "riskDetection")
    event_type = clean_text(first(data, "riskEventType", "riskType"))
    detail = data.get("riskDetail")
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(data.get("riskLevel")),
        risk_event_type=event_type,
        detection_id=clean_id(data.get("id"), "riskDetection id"),
        detected_at=parse_time_opt(
            data.get("detectedDateTime"),
            data.get("activityDateTime"),
            data.get("lastUpdatedDateTime"),
        ),
        source=SOURCE_DETECTION,
        admin_initiated=(
            is_admin_identifier(event_type, detail) or is_admin_state(data.get("riskState"))
        ),
        raw=data,
    )


def from_risky_user(item: Any) -> RiskSignal:
    """One riskyUser: here `id` *is* the user id (there is no `userId`)."""
    data = _require_dict(item, "riskyUser")
    user_id, upn = resolve_user(data.get("id"), data.get("userPrincipalName"), "riskyUser")
    detail = clean_text(data.get("riskDetail"))
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(data.get("riskLevel")),
        risk_event_type=detail if detail and detail.lower() != "none" else None,
        detection_id=None,
        detected_at=parse_time_opt(data.get("riskLastUpdatedDateTime")),
        source=SOURCE_RISKY_USER,
        admin_initiated=is_admin_identifier(detail) or is_admin_state(data.get("riskState")),
        raw=data,
    )


def from_security_alert(alert: Any) -> NormaliseResult:
    """A Graph security alert (alerts_v2): one signal per cloud user in its evidence.

    userEvidence with `azureAdUserId: null` is an on-premises account: reported as a
    problem even when it has a UPN, because that UPN may belong to someone else in the cloud.
    """
    data = _require_dict(alert, "security alert")
    result = NormaliseResult()
    status = norm(data.get("status"))
    classification = norm(data.get("classification"))
    if status == "resolved":
        result.ignore("$", "security alert is resolved")
        return result
    if classification in _BENIGN_CLASSIFICATIONS:
        result.ignore("$", f"security alert classified {data.get('classification')}")
        return result
    # "The Microsoft Entra tenant the alert was created in"
    # (https://learn.microsoft.com/graph/api/resources/security-alert): the tenant acted on.
    tenant = clean_tenant(data.get("tenantId"), "alert tenantId")
    evidence = as_list(data.get("evidence"), "alert evidence") or []
    user_items = [
        (f"evidence[{i}]", ev)
        for i, ev in enumerate(evidence)
        if norm((as_dict(ev) or {}).get("@odata.type"))
        in ("microsoftgraphsecurityuserevidence", "microsoftgraphsecuritymailboxevidence")
    ]
    if not user_items:
        result.problem(
            "$", NoCloudUser("security alert has no user or mailbox evidence"), SOURCE_ALERT
        )
        return result
    collect(result, user_items, lambda ev: _alert_evidence_signal(data, ev, tenant),
            SOURCE_ALERT)
    result.signals = dedupe(result.signals)
    return result


def _alert_evidence_signal(alert: dict[str, Any], evidence: dict[str, Any],
                           tenant: str | None) -> RiskSignal:
    """Signal for one user/mailbox evidence item of an alert."""
    account = as_dict(evidence.get("userAccount"))
    if norm(evidence.get("@odata.type")).endswith("userevidence"):
        if account is None:
            raise MalformedPayload("userEvidence has no userAccount")
        if clean_id(account.get("azureAdUserId"), "azureAdUserId") is None:
            raise NoCloudUser(
                "userEvidence: no resolvable cloud user: azureAdUserId is null "
                "(an on-premises account); its UPN is not used as a guess"
            )
        user_id, upn = resolve_user(
            account.get("azureAdUserId"), account.get("userPrincipalName"), "userEvidence"
        )
    else:
        user_id, upn = resolve_user(
            first(account, "azureAdUserId"),
            first(evidence, "upn") or first(account, "userPrincipalName"),
            "mailboxEvidence",
        )
    detector = clean_text(first(alert, "title", "category"))
    raw = {k: v for k, v in alert.items() if k != "evidence"}
    raw["evidence"] = [evidence]
    return make_signal(
        user_id=user_id,
        upn=upn,
        risk_level=risk_level(alert.get("severity")),
        risk_event_type=detector,
        detection_id=clean_id(alert.get("id"), "alert id"),
        detected_at=parse_time_opt(
            alert.get("createdDateTime"), alert.get("firstActivityDateTime")
        ),
        source=SOURCE_ALERT,
        admin_initiated=is_admin_name(alert.get("detectorId"), alert.get("title")),
        raw=raw,
        tenant=tenant,
    )


def from_change_notification(item: Any) -> UserChange:
    """One Graph change notification about a user (`resource` like `Users/{id}`).

    A user notification says only that *something* about the user changed: Graph and Event
    Grid fire it when a user is created or updated, whatever the property
    (https://learn.microsoft.com/en-us/azure/event-grid/partner-events-graph-api). So it is
    a `UserChange`, never a risk signal. Only the envelope fields are read (`resource`,
    `resourceData.id`, `changeType`, `clientState`); risk-looking keys beside them are not.
    Lifecycle notifications and user deletions raise `Ignored`; notifications about other
    resources (legacy security alerts) name no user and raise `NoCloudUser`.
    """
    data = _require_dict(item, "change notification")
    lifecycle = data.get("lifecycleEvent")
    if lifecycle is not None:
        raise Ignored(f"lifecycle notification {str(lifecycle)[:60]!r} carries no resource")
    raw_resource = data.get("resource")
    resource = raw_resource if isinstance(raw_resource, str) else ""
    resource_data = as_dict(data.get("resourceData"))
    match = _USER_RESOURCE.fullmatch(resource.strip().strip("/"))
    is_user = match is not None or norm(first(resource_data, "@odata.type")) == "microsoftgraphuser"
    if not is_user:
        raise NoCloudUser(
            f"change notification for {resource[:100]!r} names no user; "
            "the resource must be fetched to find one"
        )
    change = clean_text(data.get("changeType"))
    if change and "deleted" in change.lower():
        raise Ignored("change notification reports a deleted user")
    data_id = clean_id(first(resource_data, "id"), "resourceData.id")
    path_id = clean_id(match.group(1) or match.group(2), "resource id") if match else None
    if data_id and path_id and data_id.lower() != path_id.lower():
        raise MalformedPayload("resourceData.id and resource name different users")
    ident = data_id or path_id
    if ident is None:
        raise NoCloudUser("change notification has no user id in resourceData or resource")
    is_upn = "@" in ident
    state = data.get("clientState")
    return UserChange(
        user_id=None if is_upn else ident,
        upn=clean_upn(ident, "resource UPN") if is_upn else None,
        change_type=change,
        source=SOURCE_NOTIFICATION,
        client_state=state if isinstance(state, str) else None,
        # "Unique identifier for the tenant from which the change notification originated"
        # (https://learn.microsoft.com/graph/api/resources/changenotification): required.
        tenant=clean_tenant(data.get("tenantId"), "notification tenantId"),
    )


NOTIFICATION_COLLECTION_KEYS = frozenset({"value", "validationTokens", "@odata.type",
                                          "@odata.context"})
"""What a changeNotificationCollection holds
(https://learn.microsoft.com/en-us/graph/api/resources/changenotificationcollection)."""


def from_change_notifications(payload: Any) -> NormaliseResult:
    """A change notification collection read strictly as one, item by item.

    Only `value` (or a bare notification) is read, and every item only as a change
    notification: a risk-detection shape, a `records` array or any other alert beside it is
    never handed to the general normaliser, so a notification body cannot start a run.
    """
    data = _require_dict(payload, "change notification payload")
    result = NormaliseResult()
    items = as_list(data.get("value"), "notification value")
    pairs = [("$", data)] if items is None else [
        (f"value[{i}]", item) for i, item in enumerate(items)]
    for locator, item in pairs:
        try:
            result.user_changes.append(from_change_notification(item))
        except Ignored as exc:
            result.ignore(locator, str(exc))
        except AlertError as exc:
            result.problem(locator, exc, SOURCE_NOTIFICATION)
    return result


def notification_client_states(payload: Any) -> list[str | None]:
    """Each notification's `clientState`, in order, so the HTTP layer can check every item.

    A missing or non-string clientState is None (which the HTTP layer must treat as a mismatch).
    """
    data = as_dict(payload)
    if data is None:
        raise MalformedPayload("change notification payload must be a JSON object")
    items = as_list(data.get("value"), "notification value")
    if items is None:
        if "subscriptionId" not in data:
            raise MalformedPayload("not a change notification payload: no value array")
        items = [data]
    states: list[str | None] = []
    for item in items:
        state = (as_dict(item) or {}).get("clientState")
        states.append(state if isinstance(state, str) else None)
    return states


# the registry entries (recognition order: shared.intake.sources.catalogue) ---------------
@register
class GraphCollection(Source):
    """A Graph collection body `{"value": [...]}`: a page of results, or a batch of change
    notifications; each member is recognised and normalised on its own."""

    name = "graph.collection"
    level = "payload"

    @staticmethod
    def recognises(data: Any) -> bool:
        body = as_dict(data)
        return body is not None and isinstance(body.get("value"), list)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        items = as_list(data.get("value"), "value") or []
        return nested.items([(f"value[{i}]", item) for i, item in enumerate(items)])


@register
class GraphRiskDetection(Source):
    """An Identity Protection riskDetection (Graph, the poller's pages, notification data)."""

    name = SOURCE_DETECTION
    level = "item"
    odata_types = ("microsoftgraphriskdetection",)

    @staticmethod
    def recognises(data: Any) -> bool:
        return "riskEventType" in data or (
            "userId" in data and ("riskLevel" in data or "detectedDateTime" in data))

    @staticmethod
    def normalise(data: Any, nested: Nested) -> RiskSignal:
        return from_risk_detection(data)


@register
class GraphRiskyUser(Source):
    """An Identity Protection riskyUser: the user's risk state, not one detection."""

    name = SOURCE_RISKY_USER
    level = "item"
    odata_types = ("microsoftgraphriskyuser",)

    @staticmethod
    def recognises(data: Any) -> bool:
        return "riskLastUpdatedDateTime" in data or (
            "riskState" in data and "riskLevel" in data and "userId" not in data)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> RiskSignal:
        return from_risky_user(data)


@register
class GraphSecurityAlert(Source):
    """A Defender alert from Graph security alerts_v2; one signal per cloud user in evidence."""

    name = SOURCE_ALERT
    level = "item"
    odata_types = ("microsoftgraphsecurityalert",)

    @staticmethod
    def recognises(data: Any) -> bool:
        return "evidence" in data or ("serviceSource" in data and "severity" in data)

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return from_security_alert(data)


@register
class GraphChangeNotification(Source):
    """One Graph change notification about a user (or a lifecycle notification): a
    `UserChange`, never a risk signal."""

    name = SOURCE_NOTIFICATION
    level = "item"

    @staticmethod
    def recognises(data: Any) -> bool:
        return "lifecycleEvent" in data or (
            "subscriptionId" in data and ("changeType" in data or "resource" in data))

    @staticmethod
    def normalise(data: Any, nested: Nested) -> NormaliseResult:
        return NormaliseResult(user_changes=[from_change_notification(data)])
