"""Run reliability: steps stop when the run stops, a failure on the last delivery poisons the
run whatever the failure, and the run lease is short and renewed, so a crashed holder frees
its runs within about a minute while a long step keeps its own."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.models import RemediationRequest
from shared.playbook import runner
from shared.playbook.registry import REGISTRY
from shared.playbook.worker import handle_message
from shared.state.clock import now
from shared.state.lease import Lease
from shared.sweeps import run_sweep
from tests.playbook.conftest import MEGAN, run_via_queue, writes

ACTIONS = ["revoke_sessions", "enable_mailbox_audit"]


def _slow_plan(monkeypatch: pytest.MonkeyPatch, step: str, seconds: float) -> list[str]:
    """Make `step`'s plan take `seconds`; returns a list that gets "done" when it returns."""
    cls = REGISTRY[step]
    original = cls.plan
    finished: list[str] = []

    async def slow(self: Any, ctx: Any) -> Any:
        await asyncio.sleep(seconds)
        finished.append("done")
        return await original(self, ctx)

    monkeypatch.setattr(cls, "plan", slow)
    return finished


def _failing_record_step(monkeypatch: pytest.MonkeyPatch, services: Any, step: str) -> None:
    """Table storage refuses to record `step` (as when storage goes down mid-run): the
    transaction that carries its row fails."""
    original = services.journal.write_batch

    async def batch(run_id: str, **kw: Any) -> None:
        if any(result.step == step for result, _ in kw.get("steps") or []):
            raise HttpResponseError(message="Server Busy (storage unavailable)")
        await original(run_id, **kw)

    monkeypatch.setattr(services.journal, "write_batch", batch)


async def _lease_row(services: Any, run_id: str) -> dict[str, Any] | None:
    row = await services.journal.read_row(run_id, runner.RUN_LEASE_ROW)
    return row.values if row else None


async def test_a_storage_failure_stops_sibling_steps_before_the_lease_is_released(
        services, emulator, monkeypatch):
    finished = _slow_plan(monkeypatch, "enable_mailbox_audit", 0.5)
    _failing_record_step(monkeypatch, services, "revoke_sessions")
    request = RemediationRequest.model_validate(
        {"user": MEGAN, "requestId": "storage-1", "actions": ACTIONS})
    with pytest.raises(HttpResponseError):
        await runner.run_request(services, request)
    assert await _lease_row(services, "storage-1") is None, "the lease was given back"
    await asyncio.sleep(3.0)  # long enough for a sibling left running to act
    assert finished == [], "the sibling step was stopped, not left running"
    results = await services.journal.step_results("storage-1")
    assert "enable_mailbox_audit" not in results
    assert not any("Set-Mailbox" in json.dumps(w) for w in writes(emulator))


async def test_a_storage_failure_on_the_last_delivery_poisons_the_run(services, emulator,
                                                                     monkeypatch):
    _failing_record_step(monkeypatch, services, "revoke_sessions")
    body = {"user": MEGAN, "requestId": "storage-2", "actions": ["revoke_sessions"]}
    stats = await run_via_queue(services, body, limit=60)
    assert stats.poisoned == 1 and stats.delivered == 5
    run = await services.journal.get_run("storage-2")
    assert run.state == "poisoned", run.reason
    assert "maxDequeueCount" in run.reason and "HttpResponseError" in run.reason
    # a poisoned run stays poisoned: a redelivery does nothing, the sweep leaves it alone
    emulator.clear_log()
    monkeypatch.undo()
    again = await handle_message(services, json.dumps(body))
    assert again.status == "already-done" and writes(emulator) == []
    assert (await services.journal.get_run("storage-2")).state == "poisoned"
    await services.journal.table.upsert_entity({  # make it look old
        "PartitionKey": "storage-2", "RowKey": "run", "updatedAt": now() - timedelta(days=1)})
    result = await run_sweep(services, "stalled_runs")
    assert result.actions == [] and result.found == []


def test_the_run_lease_is_short():
    assert runner.RUN_LEASE_SECONDS <= 60, "a crashed instance's runs resume within a minute"


async def test_a_crashed_holders_run_resumes_once_its_short_lease_ran_out(services, emulator):
    # The holder died 65 s ago, right after taking the lease: nobody renewed or released it.
    taken = now() - timedelta(seconds=65)
    await services.journal.create_row("crash-1", runner.RUN_LEASE_ROW, {
        "owner": "dead-instance:0123", "takenAt": taken,
        "expiresAt": taken + timedelta(seconds=runner.RUN_LEASE_SECONDS)})
    body = {"user": MEGAN, "requestId": "crash-1", "actions": ["revoke_sessions"]}
    started = time.monotonic()
    outcome = await handle_message(services, json.dumps(body))
    assert outcome.status == "ran" and outcome.run.run.state == "finished"
    assert time.monotonic() - started < 30

    # A holder that died just now: the delivery is put back for when its lease ends.
    await services.journal.create_row("crash-2", runner.RUN_LEASE_ROW, {
        "owner": "dead-instance:4567", "takenAt": now(),
        "expiresAt": now() + timedelta(seconds=runner.RUN_LEASE_SECONDS)})
    deferred = await handle_message(services, json.dumps({**body, "requestId": "crash-2"}))
    assert deferred.status == "already-done"
    event = next(e for e in await services.journal.events("crash-2") if e["kind"] == "deferred")
    delay = int(event["message"].rsplit("retried in ", 1)[1].split()[0])
    assert delay <= 61


async def test_a_long_step_keeps_its_lease_renewed_and_a_concurrent_delivery_is_deferred(
        services, emulator, monkeypatch):
    monkeypatch.setattr(runner, "RUN_LEASE_SECONDS", 1.5)  # renewed every 0.5 s
    finished = _slow_plan(monkeypatch, "enable_mailbox_audit", 3.0)
    body = {"user": MEGAN, "requestId": "long-1", "actions": ACTIONS}
    first = asyncio.create_task(handle_message(services, json.dumps(body)))
    await asyncio.sleep(0.4)
    row = await _lease_row(services, "long-1")
    assert row is not None
    first_expiry = row["expiresAt"]
    await asyncio.sleep(2.0)  # past the lease's first expiry, the step still running
    row = await _lease_row(services, "long-1")
    assert row is not None and row["expiresAt"] > first_expiry, "the lease was renewed"
    assert row["expiresAt"] > now()
    second = await handle_message(services, json.dumps(body))
    assert second.status == "already-done", "deferred, not run beside the first"
    kinds = [e["kind"] for e in await services.journal.events("long-1")]
    assert "deferred" in kinds
    outcome = await first
    assert outcome.status == "ran" and outcome.run.run.state == "finished"
    assert finished == ["done"], "the long step ran once"


async def test_a_delivery_that_finds_its_lease_lost_stops(services, emulator, monkeypatch):
    monkeypatch.setattr(runner, "RUN_LEASE_SECONDS", 1.5)
    finished = _slow_plan(monkeypatch, "enable_mailbox_audit", 3.0)
    body = {"user": MEGAN, "requestId": "lost-1", "actions": ACTIONS}
    first = asyncio.create_task(handle_message(services, json.dumps(body)))
    await asyncio.sleep(0.3)
    # Another instance took the run over (as after this one stalled past its lease).
    thief = Lease(services.journal, "lost-1", runner.RUN_LEASE_ROW, 30, owner="other")
    current = await services.journal.read_row("lost-1", runner.RUN_LEASE_ROW)
    assert current is not None
    assert await services.journal.write_row_if("lost-1", runner.RUN_LEASE_ROW,
                                               thief._values(), current.etag)
    outcome = await asyncio.wait_for(first, 5)
    assert outcome.status == "already-done"
    assert finished == [], "the step stopped with the delivery"
    kinds = [e["kind"] for e in await services.journal.events("lost-1")]
    assert "lease-lost" in kinds
    row = await _lease_row(services, "lost-1")
    assert row is not None and row["owner"] == "other", "the new holder's lease was kept"


async def test_a_delivery_reads_the_steps_only_once_it_holds_the_lease(
        services, emulator, monkeypatch):
    """Another delivery finishes the password and the sessions and gives the lease back
    just before this one takes it: this delivery reads the run under the lease, so it
    sees those steps done and repeats neither (read before the lease, it would reset the
    password a second time)."""
    from shared.models import StepResult, StepStatus
    from shared.state.journal import RunRecord

    run_id = "lease-read-1"
    await services.journal.create_run(RunRecord(run_id=run_id, user=MEGAN))
    original = Lease.try_acquire

    async def other_delivery_finishes_first(self: Lease) -> float:
        for step in ("reset_password", "revoke_sessions"):
            await services.journal.record_step(
                run_id, StepResult(step=step, status=StepStatus.DONE, summary="by the other"), 1)
        return await original(self)

    monkeypatch.setattr(Lease, "try_acquire", other_delivery_finishes_first)
    before = len(writes(emulator))
    request = RemediationRequest.model_validate(
        {"user": MEGAN, "requestId": run_id, "actions": ["reset_password", "revoke_sessions"]})
    outcome = await runner.run_request(services, request, dequeue_count=2)
    assert outcome.run.state == "finished", outcome.run.reason
    assert writes(emulator)[before:] == [], "nothing was done twice"
    results = await services.journal.step_results(run_id)
    assert results["reset_password"].summary == "by the other"
    assert results["revoke_sessions"].summary == "by the other"
    assert await _lease_row(services, run_id) is None


async def test_a_failed_delivery_that_could_not_read_the_run_keeps_what_the_record_holds(
        services):
    """The last delivery of a run fails on storage before it could read the run record: it
    marks the run poisoned with a stand-in record. The saved record keeps the user, the
    evidence, the attempts and the creation time that earlier deliveries recorded (a save
    of the stand-in blanked them, and a poisoned run then named no user)."""
    from shared.state.journal import RunRecord

    journal = services.journal
    created = RunRecord(run_id="stand-in-1", user=MEGAN, steps=["reset_password"])
    assert await journal.create_run(created, ("run-started", "run", {}))
    recorded = await journal.get_run("stand-in-1")
    recorded.user_id, recorded.upn = "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13", MEGAN
    recorded.evidence_blob, recorded.attempts = "stand-in-1/evidence.json", 3
    await journal.save_run(recorded)

    stand_in = RunRecord(run_id="stand-in-1", user=MEGAN, steps=["reset_password"])
    failure = HttpResponseError(message="storage down")
    await runner._give_up_if_last(services, stand_in, failure, 5, 5)

    after = await journal.get_run("stand-in-1")
    assert after.state == "poisoned" and "maxDequeueCount" in after.reason
    assert after.user_id == "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13" and after.upn == MEGAN
    assert after.evidence_blob == "stand-in-1/evidence.json"
    assert after.attempts == 3
    assert abs((after.created_at - created.created_at).total_seconds()) < 1
