"""Risky-user sweep and restricted-senders reconciliation: exactly the expected requests,
through intake's decision and deduplication; nothing for recent runs or excluded accounts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from devtools.emulator import make_tenant
from devtools.emulator.generate import BREAKGLASS_GROUP_ID
from shared.playbook.steps.followup import PENDING_UNBLOCKS
from shared.sweeps import run_sweep
from tests.sweeps.conftest import add_run, exchange_writes, queued

NONE = {"audit_disabled": 0, "audit_bypass": 0, "forwarding": 0, "forwarding_rules": 0,
        "hidden_rules": 0, "risky_high": 0, "blocked_senders": 0}


def _risky_tenant() -> dict[str, Any]:
    seed = make_tenant(40, offenders={**NONE, "risky_high": 7}, seed=11)
    users = {u["userPrincipalName"]: u for u in seed["users"]}
    risky = sorted(seed["offenders"]["risky_high"])
    users[risky[0]]["memberOf"] = [BREAKGLASS_GROUP_ID]          # excluded by group
    medium = next(u for u in seed["users"][1:] if u["userPrincipalName"] not in risky)
    seed["riskyUsers"].append({"id": medium["id"], "riskLevel": "medium",
                               "riskState": "atRisk", "riskDetail": "none",
                               "riskLastUpdatedDateTime": "2026-11-25T11:00:00Z"})
    seed["riskyUsers"].append({"id": users[risky[6]]["id"], "riskLevel": "high",
                               "riskState": "remediated", "riskDetail": "none"})
    seed["riskyUsers"] = [r for r in seed["riskyUsers"]
                          if not (r["id"] == users[risky[6]]["id"] and r["riskState"] ==
                                  "atRisk")]
    seed["expected"] = {"risky": risky, "medium": medium["userPrincipalName"],
                        "ids": {upn: u["id"] for upn, u in users.items()}}
    return seed


RISKY = _risky_tenant()


@pytest.mark.parametrize("tenant_emulator", [RISKY], indirect=True)
async def test_risky_users_enqueue_exactly_the_expected_requests(tenant_emulator,
                                                                 make_services):
    ids = RISKY["expected"]["ids"]
    risky = RISKY["expected"]["risky"]
    svc = make_services(tenant_emulator,
                        exclusions={"users": [risky[1]], "groups": [BREAKGLASS_GROUP_ID]})
    await add_run(svc, "recent-finished", user_id=ids[risky[2]], upn=risky[2],
                  state="finished", age=timedelta(hours=1))
    await add_run(svc, "old-finished", user_id=ids[risky[3]], upn=risky[3],
                  state="finished", age=timedelta(hours=48))
    await add_run(svc, "recent-dry", user_id=ids[risky[4]], upn=risky[4],
                  state="finished", age=timedelta(minutes=5), dry_run=True)

    result = await run_sweep(svc, "risky_users")

    messages = await queued(svc)
    assert sorted(m["user"] for m in messages) == sorted(ids[u] for u in risky[3:6])
    assert all(m["riskLevel"] == "high" and m["source"] == "sweep.riskyUsers"
               and m["playbook"] == "full-containment" for m in messages)
    assert {s["user"]: s["why"] for s in result.skipped}.keys() == set(risky[:3])
    why = {s["user"]: s["why"] for s in result.skipped}
    assert "excluded group" in why[risky[0]] and "exclusions.users" in why[risky[1]]
    assert "recent-finished" in why[risky[2]]
    assert exchange_writes(tenant_emulator) == []

    # the next sweep queues nothing again: intake's deduplication holds the window
    again = await run_sweep(svc, "risky_users")
    assert len(await queued(svc)) == 3 and again.actions == []

    # medium by policy
    medium = make_services(tenant_emulator, env={
        "REMEDIATION_QUEUE": svc.settings.remediation_queue,
        "RESPONDER_JOURNAL_TABLE": svc.settings.journal_table},
        exclusions={"users": [risky[1]], "groups": [BREAKGLASS_GROUP_ID]},
        sweeps={"riskyUsers": {"levels": ["high", "medium"]}})
    await run_sweep(medium, "risky_users")
    added = [m for m in await queued(svc) if m["user"] == ids[RISKY["expected"]["medium"]]]
    assert len(added) == 1 and added[0]["riskLevel"] == "medium"
    assert len(await queued(svc)) == 4


@pytest.mark.parametrize("tenant_emulator", [RISKY], indirect=True)
async def test_risky_users_report_mode_and_dry_run_enqueue_nothing(tenant_emulator,
                                                                   make_services):
    report = make_services(tenant_emulator, sweeps={"riskyUsers": {"mode": "report"}})
    result = await run_sweep(report, "risky_users")
    assert result.found and result.actions == [] and await queued(report) == []
    dry = make_services(tenant_emulator)
    planned = await run_sweep(dry, "risky_users", dry_run=True)
    assert planned.actions and all(a["submission"] == "would-enqueue" for a in planned.actions)
    assert await queued(dry) == []


def _senders_tenant() -> dict[str, Any]:
    seed = make_tenant(20, offenders={**NONE, "blocked_senders": 4}, seed=12)
    seed["blockedSenders"].append({"SenderAddress": "stranger@elsewhere.example",
                                   "Reason": "OutboundSpamLimitExceeded"})
    return seed


SENDERS = _senders_tenant()


def _blocked(emulator) -> set[str]:
    return {b["SenderAddress"].lower() for b in emulator.state()["blockedSenders"]}


@pytest.mark.parametrize("automatic", [False, True])
@pytest.mark.parametrize("tenant_emulator", [SENDERS], indirect=True)
async def test_restricted_senders_reconciled(tenant_emulator, make_services, automatic):
    blocked = sorted(SENDERS["offenders"]["blocked_senders"])
    ids = {u["userPrincipalName"]: u["id"] for u in SENDERS["users"]}
    contained, no_run, protected, busy = blocked
    svc = make_services(tenant_emulator, unblock={"automatic": automatic},
                        exclusions={"users": [protected], "groups": [BREAKGLASS_GROUP_ID]})
    await add_run(svc, "contained-1", user_id=ids[contained], upn=contained, state="finished",
                  age=timedelta(hours=2))
    await add_run(svc, "busy-1", user_id=ids[busy], upn=busy, state="running")

    result = await run_sweep(svc, "restricted_senders")

    messages = await queued(svc)
    assert [m["user"] for m in messages] == [ids[no_run]]
    assert messages[0]["source"] == "sweep.restrictedSenders"
    pending = await svc.journal.get_item(PENDING_UNBLOCKS, contained)
    if automatic:
        # the release is recorded (state released), so it is never repeated automatically
        assert contained not in _blocked(tenant_emulator) and pending["state"] == "released"
        assert [w["cmdlet"] for w in exchange_writes(tenant_emulator)] == \
            ["Remove-BlockedSenderAddress"]
    else:
        assert contained in _blocked(tenant_emulator)
        assert pending and pending["state"] == "pending" and pending["runId"] == "contained-1"
        assert exchange_writes(tenant_emulator) == []
    why = {s["user"]: s["why"] for s in result.skipped}
    assert "exclusions.users" in why[protected]
    assert "still going" in why[busy]
    assert "no user" in why["stranger@elsewhere.example"]
    assert _blocked(tenant_emulator) >= {no_run, protected, busy}

    # a second sweep files nothing twice and queues nothing twice
    again = await run_sweep(svc, "restricted_senders")
    assert len(await queued(svc)) == 1
    assert not [a for a in again.actions if a.get("what") == "pending unblock request filed"]


async def test_reblocked_sender_is_contained_again_and_never_released_twice(
        demo_services, emulator):
    """block -> contained and released -> blocked again: the sweep opens a new containment
    (high risk, through intake), escalates to the SOC, and releases nothing; nor do the
    sweeps after it."""
    from tests.playbook.conftest import MEGAN, MEGAN_ID, run_via_queue

    svc = demo_services  # demo policy: unblock.automatic, notify by mail
    await run_via_queue(svc, {"user": MEGAN, "requestId": "contain-1",
                              "actions": ["revoke_sessions", "request_unblock"]})
    assert (await svc.journal.get_run("contain-1")).state == "finished"
    assert MEGAN not in _blocked(emulator)
    assert len(exchange_writes(emulator)) == 1  # the one release

    emulator.tenant.block_sender(MEGAN)
    result = await run_sweep(svc, "restricted_senders")

    assert [w["cmdlet"] for w in exchange_writes(emulator)] == \
        ["Remove-BlockedSenderAddress"], "released again"
    assert MEGAN in _blocked(emulator)
    messages = await queued(svc)
    assert [(m["user"], m["riskLevel"], m["source"]) for m in messages] == \
        [(MEGAN_ID, "high", "sweep.restrictedSenders")]
    assert [a["what"] for a in result.actions] == ["remediation request"]
    assert (await svc.journal.get_item(PENDING_UNBLOCKS, MEGAN))["state"] == "reblocked"
    escalations = [m for m in emulator.state()["sentMail"]
                   if "ESCALATION" in json.dumps(m)]
    assert len(escalations) == 1

    for _ in range(2):
        again = await run_sweep(svc, "restricted_senders")
        assert not again.actions
        assert any("blocked again" in s["why"] for s in again.skipped)
    assert [w["cmdlet"] for w in exchange_writes(emulator)] == ["Remove-BlockedSenderAddress"]
    assert len(await queued(svc)) == 1
    assert len([m for m in emulator.state()["sentMail"]
                if "ESCALATION" in json.dumps(m)]) == 1
