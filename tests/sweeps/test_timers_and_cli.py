"""The timer functions (real TimerRequest objects, in-process), past_due, overlapping runs,
and the command line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

import function_app
from devtools.localhost import app_functions
from functions import runtime
from functions.sweeps import SweepFailed
from shared.cli import main_async
from shared.settings import EXTRA_SETTINGS
from shared.sweeps import SWEEPS, run_sweep
from shared.sweeps.base import acquire_lease, event_partition
from tests.sweeps.conftest import exchange_calls, exchange_writes


def timer_function(name: str) -> Any:
    fn = next(f for f in app_functions(function_app.app) if f.get_function_name() == name)
    return fn.get_user_function()


def test_one_timer_per_sweep_with_a_schedule_setting() -> None:
    functions = {f.get_function_name(): f for f in app_functions(function_app.app)}
    names = {s.name for s in EXTRA_SETTINGS}
    defaults = {s.name: s.default for s in EXTRA_SETTINGS}
    for sweep in SWEEPS.values():
        fn = functions[f"sweep_{sweep.name}"]
        binding = fn.get_bindings()[0]
        assert binding.type == "timerTrigger"
        assert binding.schedule == f"%{sweep.schedule_setting}%"
        assert sweep.schedule_setting in names
        assert defaults[sweep.schedule_setting] == sweep.default_schedule
        assert len(sweep.default_schedule.split()) == 6  # NCRONTAB with seconds


@pytest.fixture
async def injected(tenant_emulator, make_services):
    svc = make_services(tenant_emulator)
    runtime.use_services(svc)
    yield svc
    runtime.use_services(None)


async def test_past_due_timer_runs_once_and_says_so(tenant_emulator, injected):
    await timer_function("sweep_audit")(TimerRequest(past_due=True))
    events = await injected.journal.events(event_partition("audit"))
    assert [e["kind"] for e in events] == ["sweep-ok"]
    data = events[0]["data"]
    assert data["pastDue"] is True and data["trigger"] == "timer"
    assert len(data["actions"]) == 8 and "past due" in data["notes"][0]


async def test_a_tick_while_the_previous_run_holds_the_lease_does_nothing(tenant_emulator,
                                                                          injected):
    assert await acquire_lease(injected, "audit", "previous-run", 600)
    tenant_emulator.clear_log()
    await timer_function("sweep_audit")(TimerRequest())
    assert exchange_calls(tenant_emulator) == []
    events = await injected.journal.events(event_partition("audit"))
    assert [e["kind"] for e in events] == ["sweep-skipped"]
    assert await acquire_lease(injected, "audit", "another-run", 600) is False
    # a lease left by a crashed run expires and is taken over
    await injected.journal.table.delete_entity("sweep-leases", "audit")
    assert await acquire_lease(injected, "audit", "crashed-run", -1)  # already expired
    await timer_function("sweep_audit")(TimerRequest())
    assert len(exchange_writes(tenant_emulator)) == 8


async def test_two_runs_at_once_do_not_overlap(tenant_emulator, injected):
    first, second = await asyncio.gather(run_sweep(injected, "audit", trigger="timer"),
                                         run_sweep(injected, "audit", trigger="cli"))
    assert sorted([first.status, second.status]) == ["ok", "skipped"]
    targets = [w["params"]["Identity"] for w in exchange_writes(tenant_emulator)]
    assert len(targets) == len(set(targets)) == 8


async def test_a_failed_sweep_fails_the_invocation(tenant_emulator, injected):
    tenant_emulator.add_fault(cmdlet="Get-OrganizationConfig", status=400, code="BadRequest",
                              message="injected", count=1)
    with pytest.raises(SweepFailed):
        await timer_function("sweep_audit")(TimerRequest())
    events = await injected.journal.events(event_partition("audit"))
    assert events[-1]["kind"] == "sweep-failed" and "injected" in events[-1]["data"]["errors"][0]
    # the lease was released: the next tick runs
    await timer_function("sweep_audit")(TimerRequest())
    assert len(exchange_writes(tenant_emulator)) == 8


def _env(monkeypatch, azurite, emulator) -> None:
    from tests.conftest import make_settings

    settings = make_settings(azurite, emulator)
    for key, value in {
        "AzureWebJobsStorage": settings.storage_connection,
        "RESPONDER_TENANT_ID": settings.tenant_id, "GRAPH_BASE_URL": emulator.base_url,
        "EXCHANGE_BASE_URL": emulator.base_url, "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": settings.static_token,
        "RESPONDER_JOURNAL_TABLE": settings.journal_table,
        "REMEDIATION_QUEUE": settings.remediation_queue,
        "RESPONDER_POLICY": "devtools/demo-policy.json",
    }.items():
        monkeypatch.setenv(key, value)


async def test_cli_sweep_dry_run_and_posture(monkeypatch, capsys, azurite, emulator):
    _env(monkeypatch, azurite, emulator)
    assert await main_async(["sweep", "audit", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dryRun"] is True and report["sweep"] == "audit"
    assert [a["identity"] for a in report["actions"]] == ["megan@contoso.com"]
    assert exchange_writes(emulator) == []

    assert await main_async(["sweep", "audit"]) == 0
    assert "sweep audit: ok; found 1, acted 1" in capsys.readouterr().out
    assert len(exchange_writes(emulator)) == 1

    assert await main_async(["sweep", "nonsense"]) == 2
    capsys.readouterr()

    assert await main_async(["posture"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Secure Score ") and "Controls against account compromise" in out
    emulator.configure(secure_score_forbidden=True)
    assert await main_async(["posture"]) == 0
    assert "not available" in capsys.readouterr().out
