"""Walk every JSON fixture in tests/fixtures/alerts: positive and negative cases side by side.

Each fixture holds a `payload`, the `expected` signals (an empty list means "must not produce
a signal"), how many `problems` and `ignored` entries it must report, and how many user
changes (`userChecks`: a paced risk read, never a signal) it must yield.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.intake.sources import NormaliseResult, normalise
from shared.models import RiskSignal

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _compare(signal: RiskSignal, expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        got = getattr(signal, key)
        if key == "detected_at" and got is not None:
            got = got.isoformat()
        assert got == want, f"{key}: got {got!r}, expected {want!r}"


def test_there_are_fixtures_for_every_source() -> None:
    sources = {sig["source"] for path in FIXTURE_FILES for sig in _load(path)["expected"]}
    assert sources >= {
        "graph.riskDetection",
        "graph.riskyUser",
        "graph.alert",
        "diagnostics.userRiskEvents",
        "diagnostics.riskyUsers",
        "defender.alertEvidence",
        "monitor.logAlert",
        "sentinel.incident",
    }
    assert any(_load(path).get("userChecks") for path in FIXTURE_FILES)
    negatives = [path for path in FIXTURE_FILES if not _load(path)["expected"]]
    assert len(negatives) >= 10


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_fixture(path: Path) -> None:
    fixture = _load(path)
    result = normalise(fixture["payload"])
    assert isinstance(result, NormaliseResult)
    expected = fixture["expected"]
    assert len(result.signals) == len(expected), (
        f"signals: {[s.model_dump(exclude={'raw'}) for s in result.signals]}; "
        f"problems: {result.problems}"
    )
    for signal, want in zip(result.signals, expected, strict=True):
        _compare(signal, want)
        assert signal.detected_at is None or signal.detected_at.utcoffset() is not None
        assert signal.raw, "the raw item is kept for the audit trail"
    assert len(result.problems) == fixture.get("problems", 0), result.problems
    assert len(result.ignored) == fixture.get("ignored", 0), result.ignored
    assert len(result.user_changes) == fixture.get("userChecks", 0), result.user_changes
    if "problem_errors" in fixture:
        assert [p.error for p in result.problems] == fixture["problem_errors"]
    for problem in result.problems:
        assert problem.reason and problem.locator and problem.source


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_fixture_as_json_text(path: Path) -> None:
    """Event Hub and HTTP bodies arrive as text: the same result either way."""
    payload = _load(path)["payload"]
    as_text = normalise(json.dumps(payload))
    as_bytes = normalise(json.dumps(payload).encode())
    direct = normalise(payload)
    assert as_text.signals == direct.signals == as_bytes.signals
    assert as_text.user_changes == direct.user_changes == as_bytes.user_changes
    assert as_text.problems == direct.problems
