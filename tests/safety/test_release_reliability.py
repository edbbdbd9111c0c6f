"""Release, safe beside the runner: it holds the run's lease (deferred, or refused from the
command line, while a delivery works on the run), it marks the run released only over the
version it read, and a release can name a user instead of a run."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.models import RemediationRequest
from shared.playbook.release import release_run
from shared.playbook.runner import RUN_LEASE_ROW, RetryableRunError
from shared.state.clock import now
from shared.state.journal import RunRecord
from shared.state.lease import Lease
from tests.playbook.conftest import MEGAN, MEGAN_ID, run_via_queue, writes

ACTIONS = ["revoke_sessions"]


async def _run(svc: Any, run_id: str) -> None:
    await run_via_queue(svc, {"user": MEGAN, "requestId": run_id, "actions": ACTIONS})
    assert (await svc.journal.get_run(run_id)).state == "finished"


def _release(**kw: Any) -> dict[str, Any]:
    return {"user": MEGAN, "action": "release", "requestedBy": "soc", **kw}


async def _invalid_reasons(svc: Any) -> str:
    return " | ".join(r["reason"] for r in await svc.journal.items("invalid-messages"))


async def test_a_release_waits_for_the_delivery_that_holds_the_run(make_services, emulator):
    svc = make_services()
    await _run(svc, "held-1")
    delivery = Lease(svc.journal, "held-1", RUN_LEASE_ROW, 2, owner="instance-b:delivery")
    assert await delivery.acquire()
    row = await svc.journal.read_row("held-1", RUN_LEASE_ROW)
    assert row is not None
    until = row.values["expiresAt"]
    stats = await run_via_queue(svc, _release(runId="held-1"), limit=30)
    assert stats.failed == 0
    events = await svc.journal.events("held-1")
    deferred = [e for e in events if e["kind"] == "release-deferred"]
    started = [e for e in events if e["kind"] == "release-started"]
    assert deferred and "retried in" in deferred[0]["message"]
    assert len(started) == 1 and started[0]["at"] >= until, "not beside the delivery"
    assert (await svc.journal.get_run("held-1")).state == "released"


async def test_a_release_from_the_command_line_is_refused_while_the_run_is_held(
        make_services, emulator):
    svc = make_services()
    await _run(svc, "held-2")
    delivery = Lease(svc.journal, "held-2", RUN_LEASE_ROW, 30, owner="instance-b:delivery")
    assert await delivery.acquire()
    emulator.clear_log()
    request = RemediationRequest.model_validate(_release(runId="held-2"))
    with pytest.raises(RetryableRunError, match="being worked on now"):
        await release_run(svc, request)
    assert writes(emulator) == []
    assert (await svc.journal.get_run("held-2")).state == "finished"
    row = await svc.journal.read_row("held-2", RUN_LEASE_ROW)
    assert row is not None and row.values["owner"] == delivery.owner


async def test_two_writers_of_a_run_one_loses_the_condition_and_re_reads(make_services,
                                                                        emulator):
    svc = make_services()
    await svc.journal.create_run(RunRecord(run_id="race-1", user=MEGAN))
    first, second = await svc.journal.get_run("race-1"), await svc.journal.get_run("race-1")
    first.state, first.reason = "finished", "first writer"
    assert await svc.journal.save_run_if(first)
    second.state, second.reason = "released", "second writer"
    assert not await svc.journal.save_run_if(second), "wrote over a version it never read"
    fresh = await svc.journal.get_run("race-1")
    assert (fresh.state, fresh.reason) == ("finished", "first writer")
    fresh.reason = "second writer, after re-reading"
    assert await svc.journal.save_run_if(fresh)
    assert (await svc.journal.get_run("race-1")).reason == "second writer, after re-reading"


async def test_a_release_that_loses_the_condition_is_redone(make_services, emulator,
                                                            monkeypatch):
    svc = make_services()
    await _run(svc, "race-2")
    original = svc.journal.save_run_if
    calls: list[str] = []

    async def racing(run: RunRecord) -> bool:
        if not calls:  # another writer moves the run between the release's read and write
            await svc.journal.table.upsert_entity({"PartitionKey": "race-2", "RowKey": "run",
                                                   "state": "failed", "reason": "other"})
        calls.append(run.state)
        return await original(run)

    monkeypatch.setattr(svc.journal, "save_run_if", racing)
    stats = await run_via_queue(svc, _release(runId="race-2", requestId="rel-race-2"))
    assert stats.failed == 1 and stats.poisoned == 0, "the first release was retried"
    kinds = [e["kind"] for e in await svc.journal.events("race-2")]
    assert kinds.count("release-started") == 2
    assert [k for k in kinds if k.startswith("release")] == [
        "release-started", "release-partial", "release-started", "released"]
    partial = next(e for e in await svc.journal.events("race-2")
                   if e["kind"] == "release-partial")
    assert "changed during the release" in partial["message"]
    assert (await svc.journal.get_run("race-2")).state == "released"


async def test_release_by_user_takes_the_latest_unreleased_run_then_all(make_services,
                                                                        emulator):
    svc = make_services()
    await _run(svc, "u-1")
    await _run(svc, "u-2")
    latest = _release()
    await run_via_queue(svc, latest)
    assert (await svc.journal.get_run("u-2")).state == "released"
    assert (await svc.journal.get_run("u-1")).state == "finished"
    # the same request again (a redelivery, a double submit) does not take the next one
    await run_via_queue(svc, latest)
    assert (await svc.journal.get_run("u-1")).state == "finished"
    await run_via_queue(svc, _release(user=MEGAN_ID, all=True))
    assert (await svc.journal.get_run("u-1")).state == "released"
    events = [e["kind"] for e in await svc.journal.events("u-2")]
    assert events.count("released") == 1, "a released run is not released again"
    # nothing left to release: a clear, recorded refusal
    stats = await run_via_queue(svc, _release(all=True, reason="again"))
    assert stats.failed == 0
    assert "no unreleased run for user" in await _invalid_reasons(svc)


async def test_release_by_user_skips_refused_and_dry_runs(make_services, emulator):
    svc = make_services()
    await _run(svc, "g-1")
    later = now() + timedelta(minutes=1)
    for run_id, state, dry in (("g-refused", "refused", False), ("dry-g-2", "finished", True)):
        await svc.journal.create_run(RunRecord(run_id=run_id, user=MEGAN, upn=MEGAN,
                                               user_id=MEGAN_ID, state=state, dry_run=dry,
                                               created_at=later))
    await run_via_queue(svc, _release())
    assert (await svc.journal.get_run("g-1")).state == "released"
    assert (await svc.journal.get_run("g-refused")).state == "refused"
    assert (await svc.journal.get_run("dry-g-2")).state == "finished"


async def test_release_by_user_keeps_the_guards(make_services, emulator):
    svc = make_services()
    await _run(svc, "guard-1")
    # the global dry-run setting: plans only
    dry = make_services(settings=dataclasses.replace(svc.settings, dry_run=True))
    emulator.clear_log()
    outcome = await release_run(dry, RemediationRequest.model_validate(_release()))
    assert outcome.results and all(r.status.value != "done" for r in outcome.results.values())
    assert writes(emulator) == []
    assert (await svc.journal.get_run("guard-1")).state == "finished"
    # an account excluded since: refused with the reason, recorded, not retried
    excluded = make_services(settings=svc.settings,
                             exclusions={"users": [MEGAN], "groups": []})
    stats = await run_via_queue(excluded, _release())
    assert stats.failed == 0 and writes(emulator) == []
    assert "release refused" in await _invalid_reasons(svc)
    assert (await svc.journal.get_run("guard-1")).state == "finished"


async def test_release_by_an_unknown_user_is_refused_once_with_the_reason(make_services,
                                                                         emulator):
    svc = make_services()
    body = json.dumps({"user": "nobody@contoso.com", "action": "release"})
    stats = await run_via_queue(svc, body)
    assert stats.delivered == 1 and stats.failed == 0, "not retried"
    assert "no runs for user 'nobody@contoso.com'" in await _invalid_reasons(svc)
    poison = await svc.storage.ensure_queue(f"{svc.settings.remediation_queue}-poison")
    assert len(await poison.peek_messages(max_messages=5)) == 1
    assert writes(emulator) == []


async def test_all_needs_a_user_not_a_run_id(make_services, emulator):
    svc = make_services()
    await _run(svc, "one-1")
    await run_via_queue(svc, _release(runId="one-1", all=True))
    assert "`all` releases every run of a user" in await _invalid_reasons(svc)
    assert (await svc.journal.get_run("one-1")).state == "finished"


async def test_cli_release_by_user(make_services, azurite, emulator, monkeypatch, capsys):
    from shared import cli

    svc = make_services()
    await _run(svc, "cli-u-1")
    env = {"AzureWebJobsStorage": azurite.connection_string,
           "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
           "GRAPH_BASE_URL": emulator.base_url, "EXCHANGE_BASE_URL": emulator.base_url,
           "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": "emulator-test-token",
           "RESPONDER_JOURNAL_TABLE": svc.settings.journal_table,
           "RESPONDER_EVIDENCE_CONTAINER": svc.settings.evidence_container,
           "RESPONDER_POLICY": "devtools/demo-policy.json"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert await cli.main_async(["release"]) == 2
    assert await cli.main_async(["release", "cli-u-1", "--user", MEGAN]) == 2
    assert await cli.main_async(["release", "cli-u-1", "--all"]) == 2
    capsys.readouterr()
    emulator.clear_log()
    assert await cli.main_async(["release", "--user", MEGAN, "--dry-run"]) == 0
    assert "would undo" in capsys.readouterr().out and writes(emulator) == []
    assert await cli.main_async(["release", "--user", MEGAN, "--all"]) == 0
    assert "release of cli-u-1" in capsys.readouterr().out
    assert (await svc.journal.get_run("cli-u-1")).state == "released"
