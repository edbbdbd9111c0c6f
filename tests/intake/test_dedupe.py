"""Deduplication in Table storage: one run per user per window, upgrades, racing instances
(ETag-conditional writes), the same detection by several routes, crash recovery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.intake.decision import decide
from shared.intake.dedupe import Deduper
from shared.intake.pipeline import intake_signals
from shared.models import RiskSignal
from tests.intake.conftest import intake_events, queued

ALICE = "6a7c3d1e-2b4f-4c8a-9e0d-1f2a3b4c5d6e"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def sig(level: str = "high", detection: str | None = "det-1", **kw: Any) -> RiskSignal:
    fields: dict[str, Any] = {"user_id": ALICE, "upn": "alice@contoso.com", "risk_level": level,
                              "source": "graph.riskDetection", "detection_id": detection,
                              "detected_at": T0}
    fields.update(kw)
    return RiskSignal(**fields)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_medium_then_high_upgrades_to_a_high_request(svc: Any) -> None:
    clock = Clock(T0)
    first = await intake_signals(svc, [sig("medium", "det-m")], route="eventhub", clock=clock)
    clock.now += timedelta(minutes=5)
    second = await intake_signals(svc, [sig("high", "det-h")], route="poller", clock=clock)
    clock.now += timedelta(minutes=1)
    third = await intake_signals(svc, [sig("medium", "det-m2"), sig("high", "det-h2")],
                                 route="http", clock=clock)
    assert [i.outcome for i in first.items] == ["enqueued"]
    assert [i.outcome for i in second.items] == ["upgraded"]
    assert [i.outcome for i in third.items] == ["duplicate", "duplicate"]
    messages = await queued(svc)
    assert [(m["riskLevel"], m["playbook"]) for m in messages] == [
        ("medium", "standard"), ("high", "full-containment")]
    assert len({m["requestId"] for m in messages}) == 2
    assert len(await intake_events(svc, "duplicate")) == 2
    assert len(await intake_events(svc, "upgraded")) == 1


async def test_a_new_window_opens_after_dedupe_minutes(svc: Any) -> None:
    clock = Clock(T0)
    await intake_signals(svc, [sig(detection="a")], route="http", clock=clock)
    clock.now += timedelta(minutes=svc.policy.dedupe_minutes - 1)
    inside = await intake_signals(svc, [sig(detection="b")], route="http", clock=clock)
    clock.now += timedelta(minutes=2)
    after = await intake_signals(svc, [sig(detection="c")], route="http", clock=clock)
    assert [i.outcome for i in inside.items] == ["duplicate"]
    assert [i.outcome for i in after.items] == ["enqueued"]
    assert len(await queued(svc)) == 2


async def test_the_same_detection_is_handled_once_even_after_the_window(svc: Any) -> None:
    clock = Clock(T0)
    await intake_signals(svc, [sig(detection="same")], route="eventhub", clock=clock)
    clock.now += timedelta(days=2)
    again = await intake_signals(svc, [sig(detection="same")], route="poller", clock=clock)
    assert [i.outcome for i in again.items] == ["duplicate"]
    assert "already handled" in again.items[0].reason
    assert len(await queued(svc)) == 1


async def test_racing_instances_enqueue_exactly_once(svc: Any) -> None:
    """50 concurrent intakes (as if 50 function instances) for one user: one request."""
    signals = [sig(detection=f"race-{i}") for i in range(50)]
    results = await asyncio.gather(*(intake_signals(svc, [s], route="eventhub")
                                     for s in signals))
    outcomes = [r.items[0].outcome for r in results]
    assert outcomes.count("enqueued") == 1
    assert outcomes.count("duplicate") == 49
    assert len(await queued(svc)) == 1


async def test_racing_upgrades_end_with_exactly_one_high_request(svc: Any) -> None:
    clock = Clock(T0)
    await intake_signals(svc, [sig("low", "low-1")], route="http", clock=clock)
    highs = [sig("high", f"hi-{i}") for i in range(20)]
    await asyncio.gather(*(intake_signals(svc, [s], route="http", clock=clock) for s in highs))
    levels = sorted(m["riskLevel"] for m in await queued(svc))
    assert levels == ["high", "low"]


async def test_upn_only_and_id_routes_share_a_window(svc: Any) -> None:
    # Sentinel gave the object id and the UPN; an action-group alert later only the UPN.
    await intake_signals(svc, [sig(detection="s-1")], route="http")
    later = await intake_signals(svc, [sig(detection="m-1", user_id=None,
                                           upn="ALICE@contoso.com")], route="http")
    assert [i.outcome for i in later.items] == ["duplicate"]
    # And the other way round: a UPN-only request first, then the same user with an id.
    other = "bob@contoso.com"
    await intake_signals(svc, [sig(detection="m-2", user_id=None, upn=other)], route="http")
    with_id = await intake_signals(svc, [sig(detection="s-2", user_id="0f9e8d7c-6b5a-4f3e-8d2c-"
                                             "1b0a9f8e7d6c", upn=other)], route="http")
    assert [i.outcome for i in with_id.items] == ["duplicate"]
    assert len(await queued(svc)) == 2


async def test_a_failed_enqueue_releases_the_reservation(svc: Any, monkeypatch: Any) -> None:
    real = svc.storage.enqueue

    async def broken(queue: str, text: str, **kw: Any) -> None:
        raise ConnectionError("queue unavailable")

    monkeypatch.setattr(svc.storage, "enqueue", broken)
    failed = await intake_signals(svc, [sig(detection="x")], route="eventhub")
    assert [i.outcome for i in failed.items] == ["error"]
    assert failed.errors and isinstance(failed.errors[0], ConnectionError)
    monkeypatch.setattr(svc.storage, "enqueue", real)
    retried = await intake_signals(svc, [sig(detection="x")], route="eventhub")
    assert [i.outcome for i in retried.items] == ["enqueued"]
    assert len(await queued(svc)) == 1


async def test_a_reservation_left_by_a_dead_instance_is_taken_over(svc: Any) -> None:
    """An instance reserved the user and died before enqueuing: after STALE_RESERVATION the
    next signal enqueues the reserved request (same request id), before that it waits."""
    await svc.journal.ensure()
    deduper = Deduper(svc.journal, window_minutes=60)
    request = decide(sig(), svc.policy)
    assert not isinstance(request, type(None))
    admission = await deduper.admit(request, ALICE, now=T0)  # type: ignore[arg-type]
    assert admission.kind == "new"  # ... and the instance dies here
    soon = await intake_signals(svc, [sig(detection="n1")], route="http",
                                clock=lambda: T0 + timedelta(seconds=30))
    assert [i.outcome for i in soon.items] == ["duplicate"]
    late = await intake_signals(svc, [sig(detection="n2")], route="http",
                                clock=lambda: T0 + timedelta(minutes=3))
    assert [i.outcome for i in late.items] == ["enqueued"]
    [message] = await queued(svc)
    assert message["requestId"] == admission.request.request_id


@pytest.mark.parametrize("minutes", [0])
async def test_a_zero_window_turns_user_dedupe_off(make_services: Any, minutes: int) -> None:
    services = make_services({"dedupeMinutes": minutes})
    clock = Clock(T0)
    for i in range(3):
        clock.now += timedelta(seconds=1)
        await intake_signals(services, [sig(detection=f"z{i}")], route="http", clock=clock)
    assert len(await queued(services)) == 3
