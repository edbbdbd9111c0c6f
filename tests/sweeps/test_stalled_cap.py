"""The stalled-run sweep never resurrects a run forever: re-enqueues are counted on the run
record and capped, a run that moved meanwhile (poisoned, finished, held by a delivery) is
left alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.playbook import runner
from shared.safety import notify
from shared.state.clock import now
from shared.sweeps import run_sweep
from shared.sweeps.stalled_runs import MAX_RESUMES, RESUMED
from tests.playbook.conftest import MEGAN, MEGAN_ID
from tests.sweeps.conftest import add_run, queued


async def _stalled(svc: Any, run_id: str) -> None:
    request = {"user": MEGAN, "requestId": run_id, "actions": ["revoke_sessions"]}
    await add_run(svc, run_id, user_id=MEGAN_ID, upn=MEGAN, state="running",
                  steps=request["actions"], age=timedelta(hours=3), request=request)


async def test_resumes_are_counted_and_capped_then_the_run_fails(emulator, make_services,
                                                                 monkeypatch):
    svc = make_services(emulator)
    announced: list[tuple[str, str]] = []

    async def announce(services: Any, run: Any, results: Any, **kw: Any) -> list[Any]:
        announced.append((run.run_id, run.state))
        return []

    monkeypatch.setattr(notify, "announce_run", announce)
    await _stalled(svc, "stuck-1")
    for n in range(1, MAX_RESUMES + 1):
        result = await run_sweep(svc, "stalled_runs")
        assert [a["what"] for a in result.actions] == ["resume enqueued"]
        run = await svc.journal.get_run("stuck-1")
        assert run.resumes == n and run.state == "running"
        # the resumed delivery never gets anywhere (its message lost again); time passes
        await svc.journal.put_item(RESUMED, "stuck-1", at=now() - timedelta(hours=2))
    assert len(await queued(svc)) == MAX_RESUMES

    result = await run_sweep(svc, "stalled_runs")
    assert [a["what"] for a in result.actions] == ["marked failed"]
    run = await svc.journal.get_run("stuck-1")
    assert run.state == "failed" and f"resumed {MAX_RESUMES} time(s)" in run.reason
    assert len(await queued(svc)) == MAX_RESUMES, "not enqueued again"
    assert announced == [("stuck-1", "failed")]
    kinds = [e["kind"] for e in await svc.journal.events("stuck-1")]
    assert kinds.count("resume-requested") == MAX_RESUMES and "run-failed" in kinds
    again = await run_sweep(svc, "stalled_runs")
    assert again.actions == [] and again.found == []


async def test_a_run_poisoned_meanwhile_is_never_re_enqueued(emulator, make_services,
                                                            monkeypatch):
    svc = make_services(emulator)
    await _stalled(svc, "poisoned-1")
    stale = await svc.journal.list_runs(state="running")
    # the host poisons it between the sweep's listing and its decision
    await svc.journal.table.upsert_entity({"PartitionKey": "poisoned-1", "RowKey": "run",
                                           "state": "poisoned"})

    async def listed(**kw: Any) -> list[Any]:
        return stale

    monkeypatch.setattr(svc.journal, "list_runs", listed)
    result = await run_sweep(svc, "stalled_runs")
    assert result.actions == [] and "poisoned" in result.skipped[0]["why"]
    assert await queued(svc) == []
    assert (await svc.journal.get_run("poisoned-1")).state == "poisoned"


async def test_a_run_whose_lease_a_delivery_holds_is_not_stalled(emulator, make_services):
    svc = make_services(emulator)
    await _stalled(svc, "held-1")
    holder = runner.run_lease(svc, "held-1")
    assert await holder.acquire()
    result = await run_sweep(svc, "stalled_runs")
    assert result.actions == [] and "working on it" in result.skipped[0]["why"]
    assert await queued(svc) == []
    assert (await svc.journal.get_run("held-1")).resumes == 0
    row = await svc.journal.read_row("held-1", runner.RUN_LEASE_ROW)
    assert row is not None and row.values["owner"] == holder.owner, "the holder kept it"
