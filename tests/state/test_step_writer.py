"""Steps that finish together share one Table transaction (rows and events), and each
`record` returns only once its row is stored; a storage failure reaches every waiting step."""

from __future__ import annotations

import asyncio

from azure.core.exceptions import HttpResponseError

from shared.models import StepResult, StepStatus
from shared.state.journal import StepWriter


def _done(name: str) -> StepResult:
    return StepResult(step=name, status=StepStatus.DONE, summary=f"{name} done")


async def test_steps_finishing_together_share_one_transaction(counted):
    journal, calls = counted
    writer = StepWriter(journal, "run-w1", linger=0.05)
    await asyncio.gather(*(writer.record(_done(f"s{i}"), 1) for i in range(5)))
    assert len(calls) == 1 and calls[0].endswith("$batch")
    stored = await journal.step_results("run-w1")
    assert set(stored) == {f"s{i}" for i in range(5)}
    events = [e["message"] for e in await journal.events("run-w1")]
    assert sorted(events) == sorted(f"s{i}: done" for i in range(5))


async def test_a_step_recorded_later_gets_its_own_write(counted):
    journal, calls = counted
    writer = StepWriter(journal, "run-w2", linger=0.0)
    await writer.record(_done("first"), 1)
    await writer.record(_done("second"), 1)
    assert len(calls) == 2
    assert set(await journal.step_results("run-w2")) == {"first", "second"}


async def test_a_storage_failure_reaches_every_step_of_the_batch(counted, monkeypatch):
    journal, _ = counted

    async def down(*_a, **_k):
        raise HttpResponseError(message="Server Busy")

    monkeypatch.setattr(journal, "write_batch", down)
    writer = StepWriter(journal, "run-w3", linger=0.02)
    outcomes = await asyncio.gather(*(writer.record(_done(f"s{i}"), 1) for i in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, HttpResponseError) for o in outcomes)


async def test_steps_running_side_by_side_share_a_write_however_far_apart_they_finish(counted):
    """Told which steps started, the writer waits for each started step's record (up to
    its linger), not a fixed moment: three steps finishing 0.1 s apart cost one write."""
    journal, calls = counted
    writer = StepWriter(journal, "run-w4", linger=2.0)

    async def step(i: int) -> float:
        writer.step_started()
        await asyncio.sleep(0.1 * i)
        await writer.record(_done(f"s{i}"), 1)
        return asyncio.get_running_loop().time()

    loop = asyncio.get_running_loop()
    start = loop.time()
    ends = await asyncio.gather(*(step(i) for i in range(3)))
    assert len(calls) == 1 and calls[0].endswith("$batch")
    assert max(ends) - start < 1.0  # written when the last one arrived, not at the linger
    assert set(await journal.step_results("run-w4")) == {"s0", "s1", "s2"}


async def test_a_step_alone_is_written_at_once_and_a_missing_record_waits_only_the_linger(
        counted):
    journal, calls = counted
    writer = StepWriter(journal, "run-w5", linger=0.5)
    loop = asyncio.get_running_loop()
    writer.step_started()
    start = loop.time()
    await writer.record(_done("evidence"), 1)  # the only step running: no wait
    assert loop.time() - start < 0.3 and len(calls) == 1
    writer.step_started()
    writer.step_started()  # this one never records (its delivery failed)
    start = loop.time()
    await writer.record(_done("next"), 1)
    waited = loop.time() - start
    assert 0.45 <= waited < 2.0 and len(calls) == 2
