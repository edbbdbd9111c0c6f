"""A run's lease rides in the run's own transactions: taken in the write that creates the
run, given back in its holder's last save. Each case counts the Table requests sent to
Azurite and checks the rows left behind."""

from __future__ import annotations

import asyncio

from shared.models import StepResult, StepStatus
from shared.state.journal import Journal, RunRecord
from shared.state.lease import Lease


def _lease(journal: Journal, run_id: str, seconds: float = 60) -> Lease:
    return Lease(journal, run_id, "lease", seconds)


async def test_a_new_run_is_taken_in_the_transaction_that_creates_it(counted):
    journal, calls = counted
    lease = _lease(journal, "lt-new")
    created = await journal.create_run(RunRecord(run_id="lt-new", user="a@contoso.com"),
                                       ("run-started", "started", {}), lease=lease)
    assert created
    batches = [c for c in calls if "$batch" in c]
    assert len(batches) == 1, calls
    assert not [c for c in calls if "RowKey='lease'" in c], "no write of the lease's own"
    assert lease.etag is not None
    row = await journal.read_row("lt-new", "lease")
    assert row is not None and row.values["owner"] == lease.owner and row.etag == lease.etag
    assert await _lease(journal, "lt-new").try_acquire() > 0, "another holder finds it busy"
    # a second creation of the same run is a redelivery: nothing is created or taken
    again = _lease(journal, "lt-new")
    assert not await journal.create_run(RunRecord(run_id="lt-new", user="a@contoso.com"),
                                        lease=again)
    assert again.etag is None


async def test_a_leftover_lease_row_does_not_stop_the_run_being_created(counted):
    journal, _ = counted
    other = _lease(journal, "lt-left")
    assert await other.acquire()
    lease = _lease(journal, "lt-left")
    assert await journal.create_run(RunRecord(run_id="lt-left", user="b@contoso.com"),
                                    ("run-started", "started", {}), lease=lease)
    assert await journal.get_run("lt-left") is not None
    assert lease.etag is None, "the lease was not taken: the caller asks for it as usual"
    row = await journal.read_row("lt-left", "lease")
    assert row is not None and row.values["owner"] == other.owner
    assert [e["kind"] for e in await journal.events("lt-left")] == ["run-started"]


async def test_the_last_save_gives_the_lease_back_in_its_transaction(counted):
    journal, calls = counted
    run = RunRecord(run_id="lt-last", user="c@contoso.com")
    lease = _lease(journal, "lt-last")
    assert await journal.create_run(run, lease=lease)
    calls.clear()
    run.state = "finished"
    await journal.save_run(run, events=[("run-finished", "done", {})], release=lease)
    assert [c for c in calls if "$batch" in c] and not [c for c in calls if "lease" in c]
    assert await journal.read_row("lt-last", "lease") is None
    assert lease.released
    saved = await journal.get_run("lt-last")
    assert saved is not None and saved.state == "finished"
    calls.clear()
    await lease.release()
    assert calls == [], "nothing is left to give back"


async def test_a_lease_renewed_meanwhile_is_kept_out_of_the_save_and_released_after(counted):
    journal, _ = counted
    run = RunRecord(run_id="lt-race", user="d@contoso.com")
    lease = _lease(journal, "lt-race")
    assert await journal.create_run(run, lease=lease)
    stale = lease.etag
    assert await lease.renew()  # a renewal landed just before the final save ...
    lease.etag = stale  # ... whose answer the save did not see yet
    run.state = "finished"
    await journal.save_run(run, events=[("run-finished", "done", {})], release=lease)
    saved = await journal.get_run("lt-race")
    assert saved is not None and saved.state == "finished", "the save itself went through"
    assert [e["kind"] for e in await journal.events("lt-race")] == ["run-finished"]
    assert not lease.released
    assert await journal.read_row("lt-race", "lease") is not None
    await lease.release()
    assert await journal.read_row("lt-race", "lease") is None


async def test_the_keeper_does_not_call_a_lease_given_back_lost(counted):
    journal, _ = counted
    run = RunRecord(run_id="lt-keep", user="e@contoso.com")
    lease = _lease(journal, "lt-keep", seconds=0.3)  # renewed every 0.1 s

    async def work() -> str:
        await asyncio.sleep(0.25)  # a couple of renewals while it runs
        await journal.save_run(run, events=[("run-finished", "done", {})], release=lease)
        await asyncio.sleep(0.35)  # renewal rounds come after the row is gone
        return "done"

    assert await journal.create_run(run, lease=lease)
    assert await lease.run_while_held(work()) == "done"
    assert lease.released and await journal.read_row("lt-keep", "lease") is None


async def test_the_record_and_its_steps_come_in_one_query(counted):
    journal, calls = counted
    run = RunRecord(run_id="lt-read", user="f@contoso.com")
    lease = _lease(journal, "lt-read")
    assert await journal.create_run(run, ("run-started", "started", {}), lease=lease)
    await journal.record_step("lt-read", StepResult(step="reset_password",
                                                    status=StepStatus.DONE), 1)
    calls.clear()
    found, steps = await journal.run_and_steps("lt-read")
    assert len(calls) == 1
    assert found is not None and found.run_id == "lt-read" and found.etag
    assert list(steps) == ["reset_password"] and steps["reset_password"].status == "done"
    assert await journal.run_and_steps("lt-none") == (None, {})


async def test_a_user_key_differing_only_in_case_is_indexed_once(counted):
    journal, calls = counted
    run = RunRecord(run_id="lt-case", user="Grace@Contoso.com")
    assert await journal.create_run(run)
    calls.clear()
    run.upn, run.user_id = "grace@contoso.com", "0b1c-grace"
    await journal.save_run(run)
    index_writes = [c for c in calls if "$batch" not in c]
    assert len(index_writes) == 1 and "0b1c-grace" not in index_writes[0]  # the id's row
    assert [r["RowKey"] for r in await journal.runs_for_user("grace@contoso.com")] == ["lt-case"]
    assert [r["RowKey"] for r in await journal.runs_for_user("0b1c-grace")] == ["lt-case"]
