"""The mechanics the storm benchmark relies on: Identity Protection calls paced by one gate
that backs off when another instance shares the rate, Exchange concurrency found by AIMD,
risk records and detections read for many users in one call, and steps that start as soon
as their own dependencies finish."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from shared.tenant.graph import identity_protection
from shared.tenant.pacing import AdaptiveLimit, Aggregator, IntervalGate, LimitedExchange
from shared.tenant.retry import RetryTransport

MEGAN = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13"


async def test_gate_spaces_calls_and_backs_off_only_after_a_retried_call() -> None:
    """The gate widens its spacing when a call was refused and retried (through the real
    retry transport), not when a call was merely slow: waiting for a fresh shared slot or a
    starved event loop must not slow every later call of the tenant."""
    gate = IntervalGate(0.2, max_interval=1.0)
    stamps: list[float] = []
    answers: list[int] = []

    def answer(_request: httpx.Request) -> httpx.Response:
        status = answers.pop(0) if answers else 200
        return httpx.Response(status)

    async def no_wait(_seconds: float) -> None:
        return None

    transport = RetryTransport(httpx.MockTransport(answer), sleep=no_wait)
    async with httpx.AsyncClient(transport=transport) as client:

        async def call(*, slow: bool = False, refused: bool = False) -> None:
            if refused:
                answers.append(429)
            async with gate.turn():
                stamps.append(time.monotonic())
                if slow:
                    await asyncio.sleep(0.15)  # longer than half the interval
                response = await client.post("https://graph.invalid/identityProtection")
                assert response.status_code == 200

        await call()
        await call()
        assert stamps[1] - stamps[0] >= 0.2
        await call(slow=True)
        assert gate.interval == 0.2  # slow, not refused
        await call(refused=True)
        assert transport.stats.throttled == 1
        assert gate.interval == 0.4
        await call()
        assert stamps[4] - stamps[3] >= 0.4 - 0.01
        assert gate.interval < 0.4


async def test_aggregators_sharing_a_gate_never_overlap() -> None:
    gate = IntervalGate(0.1)
    in_call = 0
    overlaps = 0

    async def send(ids: Any) -> dict[str, str]:
        nonlocal in_call, overlaps
        in_call += 1
        overlaps += in_call > 1
        await asyncio.sleep(0.02)
        in_call -= 1
        return {i: f"r-{i}" for i in ids}

    a = Aggregator(send, window=0.01, max_ids=3, gate=gate)
    b = Aggregator(send, window=0.01, max_ids=3, gate=gate)
    results = await asyncio.gather(*(agg.submit(str(i)) for i in range(8)
                                     for agg in (a, b)))
    assert results == [f"r-{i}" for i in range(8) for _ in (a, b)]
    assert overlaps == 0
    assert a.calls + b.calls >= 6  # at most 3 ids per call


async def test_adaptive_limit_halves_on_throttling_and_grows_back() -> None:
    limit = AdaptiveLimit(start=8, floor=1, ceiling=10, cooldown=0)
    limit.record(throttled=True)
    assert limit.limit == 4
    limit.record(throttled=True)
    assert limit.limit == 2
    for _ in range(40):
        limit.record(throttled=False)
    assert 8 <= limit.limit <= 10


async def test_limited_exchange_caps_concurrency_and_reads_throttling() -> None:
    class Stats:
        throttled = 0

    class Fake:
        stats = Stats()
        peak = 0
        now = 0
        read_only = False

        async def invoke(self, cmdlet: str) -> str:
            self.now += 1
            self.peak = max(self.peak, self.now)
            await asyncio.sleep(0.01)
            if cmdlet == "throttled":
                self.stats.throttled += 1
            self.now -= 1
            return cmdlet

    fake = Fake()
    limit = AdaptiveLimit(start=3, ceiling=3, cooldown=0)
    ex = LimitedExchange(fake, limit)
    assert ex.read_only is False  # everything else passes through
    await asyncio.gather(*(ex.invoke("Get-Mailbox") for _ in range(12)))
    assert fake.peak <= 3
    await ex.invoke("throttled")
    assert limit.limit < 3


async def test_bulk_risk_reads_match_single_reads(graph: Any, emulator: Any) -> None:
    risky_ids = list(emulator.tenant.risky_users)[:3]
    ids = [*risky_ids, "00000000-0000-4000-8000-000000000000"]
    records = await identity_protection.risky_users_by_id(graph, ids)
    assert set(records) == set(risky_ids)
    for uid in risky_ids:
        assert records[uid]["id"] == (await identity_protection.get_risky_user(graph, uid))["id"]
    detections = await identity_protection.detections_by_user(graph, ids)
    assert set(detections) == set(ids)
    assert detections[ids[-1]] == []
    calls = [e for e in emulator.requests() if "riskyUsers" in e["path"]
             or "riskDetections" in e["path"]]
    assert sum(1 for e in calls if e["path"].endswith(("riskyUsers", "riskDetections"))) == 2


async def test_bulk_read_halves_the_list_on_400(graph: Any, emulator: Any) -> None:
    risky_ids = list(emulator.tenant.risky_users)[:2]
    emulator.add_fault(method="GET", path_regex=r"/identityProtection/riskyUsers$",
                       status=400, count=1)
    records = await identity_protection.risky_users_by_id(graph, risky_ids)
    assert set(records) == set(risky_ids)
    reads = [e for e in emulator.requests() if e["path"].endswith("/riskyUsers")]
    assert [e["status"] for e in reads] == [400, 200, 200]


async def _run_megan(settings: Any, request_id: str) -> Any:
    """One run of the default playbook for Megan through the runner, as the worker runs it."""
    from functions import runtime
    from shared.models import RemediationRequest
    from shared.playbook.runner import run_request
    from tests.playbook.conftest import build_services

    services = build_services(settings)
    runtime.use_services(services)
    try:
        request = RemediationRequest.model_validate({"user": MEGAN, "requestId": request_id,
                                                     "riskLevel": "high"})
        outcome = await run_request(services, request)
        assert outcome.run.state in ("finished", "failed")
        return outcome
    finally:
        runtime.use_services(None)
        await services.close()


def _first(log: list[dict[str, Any]], method: str, suffix: str) -> float:
    return next(e["t"] for e in log if e["method"] == method and e["path"].endswith(suffix))


async def test_revoke_follows_the_password_without_waiting_for_evidence(
        settings: Any, emulator: Any) -> None:
    emulator.add_fault(method="GET", path_regex=r"/riskDetections$", status=200,
                       body={"value": []}, delay_ms=1500, count=1)
    await _run_megan(settings, "dag-1")
    log = emulator.requests()
    revoke = _first(log, "POST", "/revokeSignInSessions")
    slow = _first(log, "GET", "/riskDetections")
    assert revoke < slow + 1.0, "revoke waited for the slow evidence read"


async def test_revoke_follows_the_password_without_waiting_for_its_read_back(
        settings: Any, emulator: Any, monkeypatch: Any) -> None:
    """Sessions are revoked once the new password is set, not once the reset is read back
    and recorded: a slow read-back does not hold containment up."""
    from shared.playbook.steps.account import ResetPassword

    read_back = ResetPassword.verify
    read_back_started: list[float] = []

    async def slow_read_back(self: Any, ctx: Any, result: Any) -> Any:
        read_back_started.append(time.monotonic())
        await asyncio.sleep(1.5)
        return await read_back(self, ctx, result)

    monkeypatch.setattr(ResetPassword, "verify", slow_read_back)
    outcome = await _run_megan(settings, "dag-2")
    log = emulator.requests()
    revoke = _first(log, "POST", "/revokeSignInSessions")
    reset = _first(log, "PATCH", f"/users/{MEGAN}")
    assert read_back_started and reset < revoke < read_back_started[0] + 1.0, \
        "revoke waited for the password's read-back"
    # The read-back still happened and is recorded with the step.
    reset_result = outcome.results["reset_password"]
    assert reset_result.status.value == "done"
    assert reset_result.data["verification"]["verified"] is True
