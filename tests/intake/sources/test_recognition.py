"""Which registered source recognises what, and in which order: shapes overlap, so the
order in shared.intake.sources.catalogue is part of the behaviour and is pinned here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shared.intake.sources import normalise
from shared.intake.sources.catalogue import ITEM_ORDER, PAYLOAD_ORDER
from shared.intake.sources.detect import classify
from shared.intake.sources.registry import all_sources

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"


def payload_source(payload: Any) -> str | None:
    """The source that claims a whole payload: a payload source, else the item it is."""
    claimed = next((s.name for s in PAYLOAD_ORDER if s.recognises(payload)), None)
    if claimed is None and isinstance(payload, dict):
        item = classify(payload)
        claimed = item.name if item else None
    return claimed


def test_the_recognition_order_is_pinned() -> None:
    assert [s.name for s in PAYLOAD_ORDER] == [
        "diagnostics.records", "eventgrid", "monitor.logAlert", "sentinel.incident",
        "graph.collection",
    ]
    assert [s.name for s in ITEM_ORDER] == [
        "diagnostics.record", "graph.changeNotification", "graph.riskDetection",
        "graph.riskyUser", "graph.alert",
    ]


FIXTURE_PREFIXES = {
    "cloudevents_": "eventgrid",
    "eventgrid_": "eventgrid",
    "defender_": "diagnostics.records",
    "diag_": "diagnostics.records",
    "graph_alert_": "graph.alert",
    "graph_change_notification_": "graph.collection",
    "graph_risk_detection_page": "graph.collection",
    "graph_risky_user_at_risk": "graph.collection",
    "graph_risk_detection_": "graph.riskDetection",
    "graph_risky_user_": "graph.riskyUser",
    "monitor_log_alert_": "monitor.logAlert",
    "sentinel_incident_": "sentinel.incident",
}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_each_fixture_is_claimed_by_its_source(path: Path) -> None:
    expected = next(name for prefix, name in FIXTURE_PREFIXES.items()
                    if path.stem.startswith(prefix))
    assert payload_source(json.loads(path.read_text(encoding="utf-8"))["payload"]) == expected


@pytest.mark.parametrize(("item", "expected"), [
    # an exact @odata.type wins over every key
    ({"@odata.type": "#microsoft.graph.riskyUser", "category": "UserRiskEvents",
      "properties": {}, "riskEventType": "x"}, "graph.riskyUser"),
    ({"@odata.type": "#microsoft.graph.security.alert", "lifecycleEvent": "missed"},
     "graph.alert"),
    # then keys, in ITEM_ORDER
    ({"category": "UserRiskEvents", "properties": {}, "riskEventType": "x",
      "subscriptionId": "s", "resource": "Users/u"}, "diagnostics.record"),
    ({"subscriptionId": "s", "resource": "Users/u", "riskEventType": "x", "userId": "u"},
     "graph.changeNotification"),
    ({"lifecycleEvent": "missed", "riskEventType": "x"}, "graph.changeNotification"),
    ({"riskEventType": "x", "riskLastUpdatedDateTime": "2024-01-01T00:00:00Z"},
     "graph.riskDetection"),
    ({"userId": "u", "riskLevel": "high", "riskState": "atRisk"}, "graph.riskDetection"),
    ({"riskState": "atRisk", "riskLevel": "high", "evidence": []}, "graph.riskyUser"),
    ({"serviceSource": "x", "severity": "high"}, "graph.alert"),
    ({"subscriptionId": "s"}, None),
    ({"category": "UserRiskEvents"}, None),
])
def test_overlapping_items_go_to_the_first_source_in_order(item: dict[str, Any],
                                                           expected: str | None) -> None:
    found = classify(item)
    assert (found.name if found else None) == expected


ENVELOPE = {"eventType": "Custom", "dataVersion": "1"}
MONITOR_BODY = {"essentials": {"monitorCondition": "Fired"}, "alertContext": {}}
INCIDENT_PROPS = {"relatedEntities": [], "incidentNumber": 1}


@pytest.mark.parametrize(("payload", "expected"), [
    ({"records": [], **ENVELOPE, "data": MONITOR_BODY}, "diagnostics.records"),
    ({**ENVELOPE, "data": MONITOR_BODY}, "eventgrid"),
    ({"schemaId": "azureMonitorCommonAlertSchema", "properties": INCIDENT_PROPS},
     "monitor.logAlert"),
    ({"properties": INCIDENT_PROPS, "value": []}, "sentinel.incident"),
    ({"value": [], "riskEventType": "x"}, "graph.collection"),
    ([{**ENVELOPE, "data": {}}], "eventgrid"),
    ([{"records": []}], None),
])
def test_overlapping_payloads_go_to_the_first_source_in_order(payload: Any,
                                                              expected: str | None) -> None:
    claimed = next((s.name for s in PAYLOAD_ORDER if s.recognises(payload)), None)
    assert claimed == expected


def test_every_source_normalises_at_least_one_payload(monkeypatch) -> None:
    """Trace the fixtures (and one bare record) through detection: each source is used."""
    used: Counter[str] = Counter()
    for name, cls in all_sources().items():
        original = cls.normalise

        def traced(data: Any, nested: Any, _name: str = name, _original: Any = original) -> Any:
            used[_name] += 1
            return _original(data, nested)

        monkeypatch.setattr(cls, "normalise", staticmethod(traced))
    for path in sorted(FIXTURES.glob("*.json")):
        normalise(json.loads(path.read_text(encoding="utf-8"))["payload"])
    result = normalise({"value": [{"category": "RiskyUsers", "properties": {
        "id": "6f4b9c1e-1c1d-4f43-9b8e-1a2b3c4d5e6f", "userPrincipalName": "adele@contoso.com",
        "riskLevel": "high", "riskState": "atRisk"}}]})
    assert len(result.signals) == 1 and result.signals[0].source == "diagnostics.riskyUsers"
    assert set(used) == set(all_sources()), f"never used: {set(all_sources()) - set(used)}"
