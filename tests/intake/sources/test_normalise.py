"""Per-source functions, guards, helpers, and property tests for `normalise`."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.intake.sources import (
    AlertError,
    Ignored,
    MalformedPayload,
    NoCloudUser,
    NormaliseResult,
    PayloadTooLarge,
    UnknownShape,
    is_eventgrid_validation,
    normalise,
    notification_client_states,
)
from shared.intake.sources.diagnostics import from_alert_info_record, from_record, from_records
from shared.intake.sources.eventgrid import from_eventgrid, unwrap_event
from shared.intake.sources.graph_detections import (
    from_change_notification,
    from_risk_detection,
    from_risky_user,
    from_security_alert,
)
from shared.intake.sources.monitor import from_log_alert
from shared.intake.sources.sentinel import from_sentinel_incident

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
USER = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"


def fixture_payload(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["payload"]


def detection(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "f" * 64,
        "riskEventType": "unfamiliarFeatures",
        "riskLevel": "high",
        "userId": USER,
        "userPrincipalName": "alice@contoso.com",
        "detectedDateTime": "2026-11-25T03:12:44Z",
    }
    item.update(overrides)
    return item


# ---- single-item functions raise typed errors -------------------------------------------


def test_single_detection_functions() -> None:
    signal = from_risk_detection(detection())
    assert signal.user_id == USER and signal.source == "graph.riskDetection"
    assert signal.raw == detection()
    with pytest.raises(NoCloudUser):
        from_risk_detection(detection(userId=None, userPrincipalName=None))
    with pytest.raises(MalformedPayload):
        from_risk_detection(["not", "an", "object"])


def test_risk_type_used_when_risk_event_type_missing() -> None:
    signal = from_risk_detection(detection(riskEventType=None, riskType="leakedCredentials"))
    assert signal.risk_event_type == "leakedCredentials"


def test_upn_that_is_not_a_upn_is_not_used() -> None:
    signal = from_risk_detection(detection(userPrincipalName="Alice Smith"))
    assert signal.upn is None and signal.user_id == USER
    with pytest.raises(NoCloudUser):
        from_risk_detection(detection(userId=None, userPrincipalName="alice"))


def test_ids_with_path_characters_are_refused() -> None:
    with pytest.raises(MalformedPayload):
        from_risk_detection(detection(userId="../../users/admin"))
    with pytest.raises(MalformedPayload):
        from_risk_detection(detection(userId=None, userPrincipalName="a#b@contoso.com"))


def test_risky_user_id_is_user_id() -> None:
    signal = from_risky_user({"id": USER, "riskLevel": "medium", "riskState": "atRisk"})
    assert (signal.user_id, signal.risk_level, signal.detection_id) == (USER, "medium", None)
    assert not signal.admin_initiated
    remediated = from_risky_user(
        {"id": USER, "riskState": "remediated", "riskDetail": "adminGeneratedTemporaryPassword"}
    )
    assert remediated.admin_initiated
    self_service = from_risky_user(
        {"id": USER, "riskState": "remediated", "riskDetail": "userPerformedSecuredPasswordReset"}
    )
    assert not self_service.admin_initiated


def test_change_notification_lifecycle_raises_ignored() -> None:
    with pytest.raises(Ignored):
        from_change_notification({"subscriptionId": "s", "lifecycleEvent": "missed"})


def test_alert_info_record_without_account_is_ignored() -> None:
    with pytest.raises(Ignored):
        from_alert_info_record({"category": "AdvancedHunting-AlertInfo", "properties": {}})


def test_alert_info_with_account_columns_becomes_a_signal() -> None:
    record = {
        "category": "AdvancedHunting-AlertInfo",
        "properties": {"AlertId": "a1", "Severity": "Low", "AccountObjectId": USER},
    }
    signal = from_record(record)
    assert signal.source == "defender.alertInfo" and signal.risk_level == "low"


def test_diagnostic_properties_as_json_string() -> None:
    record = {
        "category": "UserRiskEvents",
        "correlationId": "e" * 64,
        "properties": json.dumps({"userId": USER, "riskLevel": "High"}),
    }
    signal = from_record(record)
    assert signal.user_id == USER and signal.risk_level == "high"
    assert signal.detection_id == "e" * 64  # top-level correlationId: the detection id here


def test_risky_users_record_never_takes_correlation_id_as_anything() -> None:
    record = {"category": "RiskyUsers", "correlationId": USER, "properties": {"riskLevel": "high"}}
    with pytest.raises(NoCloudUser):
        from_record(record)


def test_per_source_batch_functions_return_results() -> None:
    assert isinstance(from_records({"records": []}), NormaliseResult)
    assert from_log_alert(fixture_payload("monitor_log_alert_resolved")).ignored
    assert from_sentinel_incident(fixture_payload("sentinel_incident_onprem_only")).problems
    assert from_security_alert(fixture_payload("graph_alert_onprem_null_id")).problems
    with pytest.raises(MalformedPayload):
        from_records({"nothing": 1})
    with pytest.raises(MalformedPayload):
        from_log_alert({"data": {}})
    with pytest.raises(MalformedPayload):
        from_sentinel_incident({"object": "x"})


# ---- raw stays small: the item, not the batch -------------------------------------------


def test_raw_is_the_item_not_the_batch() -> None:
    payload = fixture_payload("diag_mixed_batch_one_broken")
    result = normalise(payload)
    for signal in result.signals:
        assert "records" not in signal.raw
        assert signal.raw in payload["records"]


def test_alert_raw_keeps_only_the_users_evidence() -> None:
    result = normalise(fixture_payload("graph_alert_user_evidence"))
    (signal,) = result.signals
    assert len(signal.raw["evidence"]) == 1
    assert signal.raw["evidence"][0]["userAccount"]["azureAdUserId"] == signal.user_id


def test_sentinel_raw_keeps_only_the_users_entity() -> None:
    result = normalise(fixture_payload("sentinel_incident_cloud_and_onprem"))
    (signal,) = result.signals
    assert len(signal.raw["properties"]["relatedEntities"]) == 1
    assert "alerts" not in signal.raw["properties"]


# ---- guards -------------------------------------------------------------------------------


def test_more_than_ten_thousand_records_is_refused() -> None:
    record = {"category": "SignInLogs", "properties": {}}
    with pytest.raises(PayloadTooLarge):
        normalise({"records": [record] * 10_001})
    assert len(normalise({"records": [record] * 10_000}).ignored) == 10_000


def test_more_than_ten_thousand_events_or_items_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        normalise([{"specversion": "1.0", "type": "x", "data": {}}] * 10_001)
    with pytest.raises(PayloadTooLarge):
        normalise({"value": [detection()] * 10_001})


def test_overlong_ids_are_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        from_risk_detection(detection(userId="a" * 1025))
    with pytest.raises(PayloadTooLarge):
        from_risk_detection(detection(id="a" * 1025))
    result = normalise({"value": [detection(userId="a" * 1025), detection()]})
    assert len(result.signals) == 1
    assert [p.error for p in result.problems] == ["PayloadTooLarge"]
    assert from_risk_detection(detection(userId="a" * 1024)).user_id == "a" * 1024


def test_deeply_nested_envelopes_are_refused() -> None:
    payload: Any = {"records": []}
    for _ in range(8):
        payload = {"specversion": "1.0", "type": "wrap", "id": "1", "data": payload}
    result = normalise(payload)
    assert not result.signals
    assert any(p.error == "MalformedPayload" for p in result.problems)


# ---- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [{}, {"hello": "world"}, 42, None, True, "null", "[1", b"\xff\xfe", {"value": "x"}],
)
def test_unknown_or_malformed_shapes_raise_typed_errors(payload: Any) -> None:
    with pytest.raises(AlertError) as info:
        normalise(payload)
    assert isinstance(info.value, (UnknownShape, MalformedPayload))
    assert str(info.value)


def test_empty_batches_are_empty_results() -> None:
    assert normalise([]) == NormaliseResult()
    assert normalise({"records": []}) == NormaliseResult()
    assert normalise({"value": []}) == NormaliseResult()


def test_envelope_keeps_inner_source_and_locators() -> None:
    inner = {"records": [{"category": "UserRiskEvents", "properties": {"riskLevel": "high"}}]}
    event = {"specversion": "1.0", "id": "1", "type": "t", "source": "s"}
    event["data_base64"] = base64.b64encode(json.dumps(inner).encode()).decode()
    result = normalise([event, dict(event)])
    assert [p.locator for p in result.problems] == ["[0].data.records[0]", "[1].data.records[0]"]
    assert {p.source for p in result.problems} == {"diagnostics.userRiskEvents"}


def test_unwrap_event_data_as_json_string() -> None:
    event = {"eventType": "x", "dataVersion": "1", "data": json.dumps(detection())}
    assert unwrap_event(event) == detection()
    result = from_eventgrid([event], normalise)
    assert result.signals[0].source == "graph.riskDetection"


# ---- handshake helpers --------------------------------------------------------------------


def test_is_eventgrid_validation() -> None:
    payload = fixture_payload("eventgrid_subscription_validation")
    assert is_eventgrid_validation(payload) == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert is_eventgrid_validation(payload[0]) == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert is_eventgrid_validation(fixture_payload("eventgrid_schema_array")) is None
    for junk in (
        None,
        1,
        "x",
        [],
        [1],
        {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent"},
    ):
        assert is_eventgrid_validation(junk) is None


def test_notification_client_states_per_item() -> None:
    payload = copy.deepcopy(fixture_payload("graph_change_notification_mixed"))
    payload["value"][1]["clientState"] = None
    payload["value"][2]["clientState"] = 7
    assert notification_client_states(payload) == ["secretClientState", None, None]
    assert notification_client_states({"subscriptionId": "s", "clientState": "c"}) == ["c"]
    with pytest.raises(MalformedPayload):
        notification_client_states({"hello": 1})
    with pytest.raises(MalformedPayload):
        notification_client_states([1])


# ---- properties ---------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "records",
        "value",
        "category",
        "properties",
        "userId",
        "userPrincipalName",
        "id",
        "riskLevel",
        "riskEventType",
        "riskState",
        "riskDetail",
        "data",
        "data_base64",
        "specversion",
        "type",
        "eventType",
        "dataVersion",
        "schemaId",
        "essentials",
        "alertContext",
        "condition",
        "allOf",
        "dimensions",
        "name",
        "monitorCondition",
        "object",
        "objectSchemaType",
        "relatedEntities",
        "kind",
        "accountName",
        "upnSuffix",
        "aadUserId",
        "evidence",
        "@odata.type",
        "userAccount",
        "azureAdUserId",
        "subscriptionId",
        "resource",
        "resourceData",
        "lifecycleEvent",
        "changeType",
        "AccountObjectId",
        "AccountUpn",
        "AdditionalFields",
        "EntityType",
        "severity",
        "detectedDateTime",
        "time",
        "status",
        "alerts",
        "additionalData",
        "Custom Details",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "UserRiskEvents",
            "RiskyUsers",
            "AdvancedHunting-AlertEvidence",
            "Account",
            "azureMonitorCommonAlertSchema",
            "1.0",
            "Incident",
            "Resolved",
            "high",
            "#microsoft.graph.security.userEvidence",
            "#microsoft.graph.riskDetection",
            "Users/abc",
            "alice@contoso.com",
            "11/25/2026 3:12:44 AM",
            "2026-11-25T8:48:50Z",
            "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eyJhIjoxfQ==",
            '{"a": [',
        ]
    )
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(_KEYS | st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)


def _check(payload: Any) -> None:
    try:
        result = normalise(payload)
    except AlertError:
        return
    assert isinstance(result, NormaliseResult)
    for signal in result.signals:
        assert signal.user_id or signal.upn
        assert signal.risk_level in ("none", "low", "medium", "high", "hidden")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_normalise_arbitrary_json_only_raises_alert_errors(payload: Any) -> None:
    _check(payload)


_FIXTURE_PAYLOADS = [
    json.loads(path.read_text(encoding="utf-8"))["payload"]
    for path in sorted(FIXTURES.glob("*.json"))
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(_paths(child, (*prefix, index)))
    return out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FIXTURE_PAYLOADS), st.data())
def test_mutated_fixtures_only_raise_alert_errors(payload: Any, data: st.DataObject) -> None:
    """Real shapes with one value replaced anywhere: nulls, wrong types, junk strings."""
    mutated = copy.deepcopy(payload)
    path = data.draw(st.sampled_from(_paths(mutated)))
    replacement = data.draw(JSON_VALUES)
    if not path:
        mutated = replacement
    else:
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    _check(mutated)
