"""`decide` is pure: levels to playbooks, the documented `hidden`/`none` choices, and every
reason a signal must never start a run. Fixture payloads of every source are decided too."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.intake.decision import HIDDEN_LEVEL, Refusal, decide
from shared.intake.sources import normalise
from shared.models import RemediationRequest, RiskSignal
from shared.policy import Policy, parse_policy
from tests.intake.conftest import FIXTURES

ALICE = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"


def signal(**kw: Any) -> RiskSignal:
    base: dict[str, Any] = {"user_id": ALICE, "upn": "alice@contoso.com", "risk_level": "high",
                            "source": "graph.riskDetection", "detection_id": "d1",
                            "risk_event_type": "unfamiliarFeatures",
                            "detected_at": datetime(2026, 11, 25, 3, 12, tzinfo=UTC)}
    base.update(kw)
    return RiskSignal(**base)


@pytest.mark.parametrize(("level", "playbook"), [
    ("high", "full-containment"), ("medium", "standard"), ("low", "notify-only"),
])
def test_levels_map_to_policy_playbooks(level: str, playbook: str) -> None:
    request = decide(signal(risk_level=level), Policy(), route="http")
    assert isinstance(request, RemediationRequest)
    assert (request.user, request.risk_level, request.playbook) == (ALICE, level, playbook)
    assert request.source == "graph.riskDetection"
    assert request.requested_by == "intake"
    assert request.detected_at == datetime(2026, 11, 25, 3, 12, tzinfo=UTC)
    assert "unfamiliarFeatures" in (request.reason or "") and "via http" in (request.reason or "")
    message = json.loads(request.to_message())
    assert message["detectedAt"].startswith("2026-11-25T03:12")
    assert message["riskLevel"] == level and message["requestId"].startswith("alert-")


def test_custom_policy_mapping_is_followed() -> None:
    policy = parse_policy({"riskLevelPlaybooks": {"high": "standard", "medium": "notify-only",
                                                  "low": "notify-only"}})
    request = decide(signal(risk_level="high"), policy)
    assert isinstance(request, RemediationRequest) and request.playbook == "standard"


def test_hidden_level_is_treated_as_medium() -> None:
    assert HIDDEN_LEVEL == "medium"
    request = decide(signal(risk_level="hidden"), Policy())
    assert isinstance(request, RemediationRequest)
    assert (request.risk_level, request.playbook) == ("medium", "standard")
    assert "hidden as medium" in (request.reason or "")


def test_none_level_starts_nothing() -> None:
    refusal = decide(signal(risk_level="none"), Policy())
    assert isinstance(refusal, Refusal) and refusal.code == "no_risk"


@pytest.mark.parametrize("state", ["remediated", "dismissed", "confirmedSafe"])
def test_settled_detections_start_nothing(state: str) -> None:
    refusal = decide(signal(raw={"riskState": state}), Policy())
    assert isinstance(refusal, Refusal) and refusal.code == "settled"
    nested = decide(signal(raw={"properties": {"RiskState": state}}), Policy())
    assert isinstance(nested, Refusal) and nested.code == "settled"


def test_admin_initiated_never_starts_a_run() -> None:
    refusal = decide(signal(admin_initiated=True,
                            risk_event_type="adminConfirmedUserCompromised"), Policy())
    assert isinstance(refusal, Refusal) and refusal.code == "admin_initiated"
    assert "adminConfirmedUserCompromised" in refusal.reason


@pytest.mark.parametrize("listed", [ALICE.upper(), "ALICE@contoso.com"])
def test_excluded_users_by_id_or_upn_case_insensitively(listed: str) -> None:
    policy = parse_policy({"exclusions": {"users": [listed]}})
    refusal = decide(signal(), policy)
    assert isinstance(refusal, Refusal) and refusal.code == "excluded"
    upn_only = decide(signal(user_id=None), policy)
    assert isinstance(upn_only, Refusal) == (listed.startswith("ALICE@"))


def test_exclusion_wins_over_everything() -> None:
    policy = parse_policy({"exclusions": {"users": ["alice@contoso.com"]}})
    refusal = decide(signal(admin_initiated=True), policy)
    assert isinstance(refusal, Refusal) and refusal.code == "excluded"


def test_upn_only_guest_and_apostrophe_users_are_kept_exactly() -> None:
    for upn in ("o'brien@contoso.com", "ana.lima_fabrikam.com#EXT#@contoso.onmicrosoft.com"):
        request = decide(signal(user_id=None, upn=upn), Policy())
        assert isinstance(request, RemediationRequest) and request.user == upn


def test_request_ids_are_deterministic() -> None:
    first = decide(signal(), Policy())
    again = decide(signal(), Policy())
    other = decide(signal(detection_id="d2"), Policy())
    assert isinstance(first, RemediationRequest) and isinstance(again, RemediationRequest)
    assert isinstance(other, RemediationRequest)
    assert first.request_id == again.request_id != other.request_id


def _expected_requests(fixture: dict[str, Any]) -> list[tuple[str, str, str]]:
    playbooks = {"high": "full-containment", "medium": "standard", "low": "notify-only"}
    out = []
    for sig in fixture["expected"]:
        if sig.get("admin_initiated") or sig.get("risk_level") == "none":
            continue
        level = HIDDEN_LEVEL if sig["risk_level"] == "hidden" else sig["risk_level"]
        out.append((sig["user_id"] or sig["upn"], level, playbooks[level]))
    return sorted(out)


FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_every_fixture_decides_to_the_expected_requests(path: Any) -> None:
    fixture = json.loads(path.read_text(encoding="utf-8"))
    result = normalise(fixture["payload"])
    got = []
    for sig in result.signals:
        decision = decide(sig, Policy())
        if isinstance(decision, RemediationRequest):
            got.append((decision.user, decision.risk_level, decision.playbook))
        else:
            assert decision.code in ("admin_initiated", "no_risk", "settled"), decision
    assert sorted(got) == _expected_requests(fixture)
