"""Stalled runs are resumed (same request id: finished steps are not repeated); the opt-in
forwarding and rules sweep rotates through mailboxes, each read once per pass."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from devtools.emulator import make_tenant
from shared.models import StepResult, StepStatus
from shared.playbook.worker import handle_message
from shared.sweeps import run_sweep
from tests.playbook.conftest import MEGAN, MEGAN_ID
from tests.sweeps.conftest import add_run, exchange_calls, queued


async def test_stalled_run_is_resumed_and_skips_finished_steps(emulator, make_services):
    svc = make_services(emulator)
    request = {"user": MEGAN, "requestId": "stalled-1",
               "actions": ["collect_evidence", "revoke_sessions", "enable_mailbox_audit"]}
    await add_run(svc, "stalled-1", user_id=MEGAN_ID, upn=MEGAN, state="running",
                  steps=request["actions"], age=timedelta(hours=3), request=request)
    await svc.journal.record_step("stalled-1", StepResult(step="revoke_sessions",
                                                          status=StepStatus.DONE,
                                                          summary="done before the stall"), 1)
    await add_run(svc, "fresh-1", user_id=MEGAN_ID, upn=MEGAN, state="running",
                  age=timedelta(minutes=1))
    await add_run(svc, "old-finished", user_id=MEGAN_ID, upn=MEGAN, state="finished",
                  age=timedelta(days=2))

    result = await run_sweep(svc, "stalled_runs")
    assert [a["runId"] for a in result.actions] == ["stalled-1"]
    messages = await queued(svc)
    assert len(messages) == 1 and messages[0]["requestId"] == "stalled-1"
    # a second sweep before the worker picks it up does not enqueue it again
    again = await run_sweep(svc, "stalled_runs")
    assert again.actions == [] and "already requested" in again.skipped[0]["why"]
    assert len(await queued(svc)) == 1

    emulator.clear_log()
    outcome = await handle_message(svc, json.dumps(messages[0]))
    assert outcome.run is not None and outcome.run.run.state == "finished"
    paths = [e["path"] for e in emulator.requests()]
    assert not any(p.endswith("/revokeSignInSessions") for p in paths), "finished step redone"
    megan = next(u for u in emulator.state()["users"] if u["userPrincipalName"] == MEGAN)
    assert megan["mailbox"]["auditEnabled"] is True


async def test_stalled_runs_report_mode(emulator, make_services):
    svc = make_services(emulator, sweeps={"stalledRuns": {"mode": "report",
                                                          "afterMinutes": 30}})
    await add_run(svc, "stalled-2", user_id=MEGAN_ID, upn=MEGAN, state="running",
                  age=timedelta(minutes=45))
    result = await run_sweep(svc, "stalled_runs")
    assert [f["runId"] for f in result.found] == ["stalled-2"] and result.actions == []
    assert await queued(svc) == []


def _forwarding_tenant() -> dict[str, Any]:
    return make_tenant(30, offenders={"audit_disabled": 0, "audit_bypass": 0, "forwarding": 2,
                                      "forwarding_rules": 2, "hidden_rules": 1,
                                      "risky_high": 0, "blocked_senders": 0}, seed=21)


FWD = _forwarding_tenant()


@pytest.mark.parametrize("tenant_emulator", [FWD], indirect=True)
async def test_forwarding_sweep_is_opt_in(tenant_emulator, make_services):
    svc = make_services(tenant_emulator)
    tenant_emulator.clear_log()
    result = await run_sweep(svc, "forwarding_rules")
    assert result.status == "skipped" and "opt-in" in result.notes[0]
    assert tenant_emulator.requests() == []


@pytest.mark.parametrize("tenant_emulator", [FWD], indirect=True)
async def test_forwarding_sweep_rotates_and_finds_every_offender_once(tenant_emulator,
                                                                     make_services):
    svc = make_services(tenant_emulator, env={"RESPONDER_SWEEP_FORWARDING_ENABLED": "true"},
                        sweeps={"forwarding": {"mailboxesPerRun": 8, "mode": "enqueue"}})
    results, read, writes = [], [], []
    for _ in range(4):
        tenant_emulator.clear_log()
        results.append(await run_sweep(svc, "forwarding_rules"))
        this_run = [c["params"]["Mailbox"] for c in exchange_calls(tenant_emulator)
                    if c["cmdlet"] == "Get-InboxRule"]
        assert len(this_run) <= 8, "bounded per run"
        read += this_run
        writes += [c for c in exchange_calls(tenant_emulator) if c.get("write")]
    assert [r.complete for r in results] == [False, False, False, True]
    assert len(read) == len(set(read)) == 30, "each mailbox read once per pass"
    offenders = {u for kind in ("forwarding", "forwarding_rules", "hidden_rules")
                 for u in FWD["offenders"][kind]}
    found = [f["user"] for r in results for f in r.found]
    assert sorted(found) == sorted(offenders)
    ids = {u["userPrincipalName"]: u["id"] for u in FWD["users"]}
    assert sorted(m["user"] for m in await queued(svc)) == sorted(ids[u] for u in offenders)
    assert writes == [], "the sweep only reads; the runs it queues do the changing"


async def test_forwarding_sweep_leaves_colleagues_and_system_rules_alone(emulator,
                                                                        make_services):
    """Get-InboxRule shows a colleague as an EX: recipient and every mailbox has a hidden
    junk e-mail rule: neither is a finding. SMTP forwarding outside the accepted (verified)
    domains still is."""
    seed = emulator.state()
    seed["domains"].append({"id": "unverified.example", "isVerified": False})
    pradeep = next(u for u in seed["users"] if u["userPrincipalName"] == "pradeep@contoso.com")
    pradeep["mailbox"]["rules"] = [
        {"displayName": "Hidden copy to Megan", "hidden": True,
         "actions": {"redirectTo": ["megan@contoso.com"]}},
        {"displayName": "Board to onmicrosoft", "actions": {"forwardTo":
                                                            ["board@contoso.onmicrosoft.com"]}}]
    adele = next(u for u in seed["users"] if u["userPrincipalName"] == "adele@contoso.com")
    adele["mailbox"]["rules"] = [{"displayName": "Lookalike",
                                  "actions": {"forwardTo": ["adele@unverified.example"]}}]
    emulator.load_tenant(seed)
    svc = make_services(emulator, env={"RESPONDER_SWEEP_FORWARDING_ENABLED": "true"},
                        sweeps={"forwarding": {"mailboxesPerRun": 50, "mode": "report"}})
    result = await run_sweep(svc, "forwarding_rules")
    found = {f["user"]: f["why"] for f in result.found}
    assert "pradeep@contoso.com" not in found, found.get("pradeep@contoso.com")
    assert "Lookalike" in found["adele@contoso.com"]
    assert "Junk E-mail Rule" not in found["adele@contoso.com"]
    why = found[MEGAN]
    assert "Project Falcon to Adele" not in why and "EX:" not in why
    assert "Junk E-mail Rule" not in why
    assert "ap.remittance@gmail.example" in why  # the demo's malicious rules still found
    others = set(found) - {MEGAN, "adele@contoso.com"}
    assert all("Junk" not in found[u] for u in others)
