"""The riskDetections poller against the emulator: paging an unsorted list, the watermark,
a crash mid-way and a rerun (no missed and no repeated detections), a detection that
surfaces 30 hours late, the lease, and <= 1 Identity Protection request per second (from
the emulator's own request log, with its 1 rps throttle on)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from shared.intake import poller
from shared.intake.poller import Lease, poll_once, read_watermark
from shared.timestamps import parse_time
from tests.intake.conftest import intake_events, queued, user_function
from tests.intake.emulator_data import detection, iso7, recent, seed_detections, user_id


def ip_requests(emulator: Any) -> list[dict[str, Any]]:
    return [e for e in emulator.requests() if e["cls"] == "identity_protection"]


def assert_at_most_one_per_second(emulator: Any) -> None:
    entries = ip_requests(emulator)
    times = sorted(e["t"] for e in entries)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert not any(e["throttled"] for e in entries)


@pytest.fixture
def twelve(emulator: Any) -> list[dict[str, Any]]:
    emulator.configure(throttle={"identity_protection": {"rps": 1}})
    dets = [detection(i, i, recent(30, i)) for i in range(12)]
    seed_detections(emulator, dets)
    emulator.clear_log()
    return dets


async def test_pages_watermark_and_a_quiet_rerun(svc: Any, emulator: Any,
                                                 twelve: list[dict[str, Any]]) -> None:
    first = await poll_once(svc, page_size=5)
    assert first.completed and first.error is None
    assert first.pages == 3 and first.detections == 12
    messages = await queued(svc)
    assert sorted(m["user"] for m in messages) == sorted(user_id(i) for i in range(12))
    assert {m["source"] for m in messages} == {"graph.riskDetection"}
    watermark = await read_watermark(svc)  # the start of the last complete poll
    assert watermark is not None and watermark > parse_time(twelve[-1]["detectedDateTime"])

    again = await poll_once(svc, page_size=5)  # the overlap re-reads all 12: none repeated
    assert again.completed and again.detections == 12
    assert again.outcome.count("enqueued", "upgraded") == 0
    assert await queued(svc) == []
    calls = ip_requests(emulator)
    assert len(calls) == 6
    assert "$skiptoken" in calls[1]["query"]
    assert calls[0]["query"]["$filter"].startswith("detectedDateTime ge ")
    assert_at_most_one_per_second(emulator)


async def test_a_crash_mid_way_then_a_rerun_misses_nothing_and_repeats_nothing(
        make_services: Any, emulator: Any, twelve: list[dict[str, Any]],
        monkeypatch: Any) -> None:
    services = make_services(RESPONDER_MAX_ATTEMPTS="3")
    real = poller.intake_result
    pages_seen = 0

    async def then_break(*args: Any, **kw: Any) -> Any:
        nonlocal pages_seen
        pages_seen += 1
        outcome = await real(*args, **kw)
        if pages_seen == 1:  # the 2nd page's connection drops, on every retry
            emulator.add_fault(method="GET", path_regex="identityProtection/riskDetections",
                               status="drop", count=None)
        return outcome

    monkeypatch.setattr(poller, "intake_result", then_break)
    crashed = await poll_once(services, page_size=5)
    assert not crashed.completed and crashed.error
    assert crashed.pages == 1
    assert await read_watermark(services) is None  # only a complete poll moves it
    first_batch = await queued(services)
    assert len(first_batch) == 5  # one unsorted page of five
    failed = await intake_events(services, "poll-failed")
    assert len(failed) == 1
    drops = [e for e in ip_requests(emulator) if e["fault"]]
    assert len(drops) == 3  # RESPONDER_MAX_ATTEMPTS: retries exhausted

    emulator.clear_faults()
    monkeypatch.setattr(poller, "intake_result", real)
    rerun = await poll_once(services, page_size=5)
    assert rerun.completed
    second_batch = await queued(services)
    assert sorted(m["user"] for m in first_batch + second_batch) == sorted(
        user_id(i) for i in range(12))
    enqueued = await intake_events(services, "enqueued")
    assert sorted(e["data"]["detectionId"] for e in enqueued) == sorted(
        d["id"] for d in twelve)  # every detection exactly once
    assert await read_watermark(services) is not None
    assert_at_most_one_per_second(emulator)


async def test_a_held_lease_skips_the_run_and_an_expired_one_is_taken_over(
        svc: Any, emulator: Any, twelve: list[dict[str, Any]]) -> None:
    await svc.journal.ensure()
    other = Lease(svc, 600)
    assert await other.acquire()
    skipped = await poll_once(svc, page_size=50)
    assert skipped.ran is False
    assert ip_requests(emulator) == [] and await queued(svc) == []
    await other.release()

    dead = Lease(svc, -1)  # a holder that crashed: its lease has already expired
    assert await dead.acquire()
    taken = await poll_once(svc, page_size=50)
    assert taken.ran and taken.completed and len(await queued(svc)) == 12
    assert not await dead.renew()  # the dead holder lost it


async def test_the_timer_function_polls_even_when_past_due(svc: Any, emulator: Any,
                                                         twelve: list[dict[str, Any]]) -> None:
    await user_function("risk_poller")(TimerRequest(past_due=True))
    assert len(await queued(svc)) == 12


async def test_a_forbidden_poll_is_recorded_not_raised(svc: Any, emulator: Any,
                                                       twelve: list[dict[str, Any]]) -> None:
    emulator.add_fault(method="GET", path_regex="identityProtection/riskDetections", status=403,
                       code="Authorization_RequestDenied", count=None)
    result = await poll_once(svc)
    assert not result.completed and "Forbidden" in (result.error or "")
    assert await read_watermark(svc) is None
    assert len(await intake_events(svc, "poll-failed")) == 1


async def test_a_detection_that_surfaces_30_hours_late_is_taken_exactly_once(
        svc: Any, emulator: Any) -> None:
    """Offline detections surface up to 48 h after their detectedDateTime: polls that have
    long moved past its time still take it when it appears, once, and never again."""
    emulator.configure(throttle={"identity_protection": {"rps": 1}})
    now = datetime.now(UTC)
    on_time = [detection(i, i, recent(20, i)) for i in range(3)]
    late = detection(7, 99, now - timedelta(hours=30))
    late["detectionTimingType"] = "offline"
    late["visibleAt"] = iso7(now + timedelta(days=1))  # not surfaced yet
    seed_detections(emulator, [*on_time, late])
    emulator.clear_log()

    first = await poll_once(svc, page_size=2, lookback_minutes=3 * 24 * 60)
    second = await poll_once(svc, page_size=2)
    assert first.completed and second.completed
    assert sorted(m["user"] for m in await queued(svc)) == sorted(user_id(i) for i in range(3))
    assert (await read_watermark(svc) or now) > parse_time(late["detectedDateTime"])

    with emulator.tenant.lock:  # it surfaces now, 30 hours after it was detected
        [stored] = [d for d in emulator.tenant.risk_detections if d["id"] == late["id"]]
        stored["visibleAt"] = iso7(datetime.now(UTC) - timedelta(seconds=1))
    third = await poll_once(svc, page_size=2)
    assert third.completed
    [message] = await queued(svc)
    assert (message["user"], message["riskLevel"]) == (user_id(7), "high")

    fourth = await poll_once(svc, page_size=2)  # seen again on the next poll: not re-submitted
    assert fourth.completed and fourth.detections == 4
    assert await queued(svc) == []
    enqueued = [e["data"]["detectionId"] for e in await intake_events(svc, "enqueued")]
    assert enqueued.count(late["id"]) == 1 and len(enqueued) == 4
    for call in ip_requests(emulator):
        assert "$orderby" not in call["query"]
    assert_at_most_one_per_second(emulator)
