"""Accounts this tenant cannot fully contain, through the real path (queue -> local host ->
emulator): B2B guests (password and sessions live at home), on-premises-mastered users
(the cloud refuses password and accountEnabled writes), and restricted senders (releases are
limited: at most one automatic release per breach)."""

from __future__ import annotations

import json

from functions import runtime
from shared.playbook.steps.followup import PENDING_UNBLOCKS
from tests.playbook.conftest import MEGAN, build_services, run_via_queue, writes

GUEST = "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"
DIEGO = "diego@contoso.com"
DIEGO_ID = "a7c4f0d5-9e6b-4b1a-8d84-5c0f3e1b7a46"


def _user(emulator, upn: str) -> dict:
    return next(u for u in emulator.state()["users"]
                if u["userPrincipalName"].lower() == upn.lower())


def _password_writes(emulator) -> list[dict]:
    return [e for e in writes(emulator) if e["method"] == "PATCH"
            and "passwordProfile" in json.dumps(e.get("body") or {})]


def _removes(emulator) -> list[dict]:
    return [e for e in writes(emulator) if e.get("cmdlet") == "Remove-BlockedSenderAddress"]


async def test_guest_is_blocked_here_and_the_home_tenant_work_is_reported(services, emulator):
    stats = await run_via_queue(services, {
        "user": GUEST, "requestId": "guest-1",
        "actions": ["reset_password", "revoke_sessions", "notify"]})
    assert stats.failed == 0
    run = await services.journal.get_run("guest-1")
    assert run.state == "finished", run.reason
    results = await services.journal.step_results("guest-1")
    reset, revoke = results["reset_password"], results["revoke_sessions"]
    # never a pretended password reset: the guest's password lives in the home tenant
    assert reset.status == "partial" and "home tenant" in reset.summary
    assert "blocked" in reset.summary and _password_writes(emulator) == []
    # Graph accepts the revocation, yet the home sessions live on: partial, not done
    assert revoke.status == "partial" and "home tenant" in revoke.summary
    alex = _user(emulator, GUEST)
    assert alex["accountEnabled"] is False
    assert alex["homeSessionsNotRevokedCount"] == 1
    mail = json.dumps(emulator.state()["sentMail"])
    assert "home tenant" in mail  # the SOC is told what the home tenant must do

    # a release gives the guest their sign-in back
    await run_via_queue(services, {"user": GUEST, "action": "release", "runId": "guest-1",
                                   "requestId": "guest-1-release"})
    assert _user(emulator, GUEST)["accountEnabled"] is True
    assert (await services.journal.get_run("guest-1")).state == "released"


async def test_guest_sign_in_is_left_alone_when_the_policy_says_so(settings, emulator):
    svc = build_services(settings, guests={"blockSignIn": False})
    runtime.use_services(svc)
    try:
        await run_via_queue(svc, {"user": GUEST, "requestId": "guest-2",
                                  "actions": ["reset_password", "revoke_sessions"]})
        results = await svc.journal.step_results("guest-2")
        assert results["reset_password"].status == "skipped"
        assert "guests.blockSignIn" in results["reset_password"].summary
        assert [e for e in writes(emulator) if e["method"] == "PATCH"] == []
        assert _user(emulator, GUEST)["accountEnabled"] is True
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_synced_user_writes_are_partial_with_the_on_premises_action(services, emulator):
    stats = await run_via_queue(services, {
        "user": DIEGO, "requestId": "sync-1",
        "actions": ["reset_password", "disable_account", "revoke_sessions"]})
    # refused by the cloud: recorded once, never retried (one delivery per lane, one
    # PATCH each; the evidence follows in the clean-up lane)
    assert stats.failed == 0 and stats.by_function == {"remediation_worker": 1,
                                                       "remediation_cleanup": 1}
    run = await services.journal.get_run("sync-1")
    assert run.state == "finished", run.reason
    results = await services.journal.step_results("sync-1")
    for step in ("reset_password", "disable_account"):
        assert results[step].status == "partial", (step, results[step].summary)
        assert "on-premises" in results[step].summary
        assert results[step].error_code == "Request_BadRequest"
    assert results["revoke_sessions"].status == "done"
    patches = [e for e in emulator.requests()
               if e["method"] == "PATCH" and DIEGO_ID in e["path"]]
    assert len(patches) == 2 and all(e["status"] == 400 for e in patches)
    diego = _user(emulator, DIEGO)
    assert diego["accountEnabled"] is True and diego["passwordChangeCount"] == 0

    # the release reports the on-premises action instead of pretending to re-enable
    await run_via_queue(services, {"user": DIEGO, "action": "release", "runId": "sync-1",
                                   "requestId": "sync-1-release"})
    events = await services.journal.events("sync-1")
    released = next(e for e in events if e["kind"] == "released")
    items = {i["item"]: i for i in released["data"]["items"]}
    assert items["account:onPremises"]["status"] == "partial"
    assert "on-premises" in items["account:onPremises"]["summary"]
    assert "account" not in items  # nothing was disabled in the cloud


async def test_request_unblock_releases_once_and_never_after_a_new_block(services, emulator):
    body = {"user": MEGAN, "actions": ["revoke_sessions", "request_unblock"]}
    await run_via_queue(services, {**body, "requestId": "unblock-1"})
    first = (await services.journal.step_results("unblock-1"))["request_unblock"]
    assert first.status == "done" and len(_removes(emulator)) == 1
    record = await services.journal.get_item(PENDING_UNBLOCKS, MEGAN)
    assert record["state"] == "released" and record["runId"] == "unblock-1"

    emulator.tenant.block_sender(MEGAN)  # the account spams again after the release
    await run_via_queue(services, {**body, "requestId": "unblock-2"})
    second = (await services.journal.step_results("unblock-2"))["request_unblock"]
    assert second.status == "partial" and "blocked again" in second.summary
    assert len(_removes(emulator)) == 1, "released a second time"
    assert MEGAN in {b["SenderAddress"] for b in emulator.state()["blockedSenders"]}
    assert (await services.journal.get_item(PENDING_UNBLOCKS, MEGAN))["state"] == "reblocked"

    await run_via_queue(services, {**body, "requestId": "unblock-3"})
    assert len(_removes(emulator)) == 1


async def test_release_refused_past_the_limit_is_partial_and_not_retried(services, emulator):
    emulator.configure(blocked_sender_release_limit=0)
    stats = await run_via_queue(services, {"user": MEGAN, "requestId": "limit-1",
                                           "actions": ["revoke_sessions", "request_unblock"]})
    assert stats.failed == 0 and stats.by_function == {"remediation_worker": 1,
                                                       "remediation_cleanup": 1}
    result = (await services.journal.step_results("limit-1"))["request_unblock"]
    assert result.status == "partial" and "Microsoft support" in result.summary
    assert len([e for e in emulator.requests()
                if e.get("cmdlet") == "Remove-BlockedSenderAddress"]) == 1
    assert (await services.journal.get_item(PENDING_UNBLOCKS, MEGAN))["state"] == "refused"
