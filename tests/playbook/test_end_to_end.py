"""Message on an Azurite queue -> local host -> queue-triggered function -> emulator state."""

from __future__ import annotations

import asyncio
import json
import logging

from azure.storage.queue import TextBase64DecodePolicy

from shared.state.storage import poison_queue_name
from tests.playbook.conftest import MEGAN, MEGAN_ID, run_via_queue, writes

ATTACKER_METHOD_CREATED = "2026-11-25T03:20:00"


def _user(state: dict, upn: str) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == upn.lower())


def _rules(state: dict, upn: str) -> dict[str, dict]:
    return {r["displayName"]: r for r in _user(state, upn)["mailbox"]["rules"]}


async def test_full_containment_changes_exactly_what_it_should(services, emulator):
    before = emulator.state()
    stats = await run_via_queue(services, {"user": MEGAN, "requestId": "e2e-1",
                                           "riskLevel": "high", "reason": "test"})
    # one delivery contains the account, one cleans up (the two lanes), none retried
    assert stats.by_function == {"remediation_worker": 1, "remediation_cleanup": 1}
    assert stats.failed == 0
    after = emulator.state()
    megan_before, megan = _user(before, MEGAN), _user(after, MEGAN)

    # account: password changed once, sessions revoked once
    pw_before = megan_before.get("passwordChangeCount", 0)
    assert megan.get("passwordChangeCount", 0) == pw_before + 1
    assert megan.get("sessionsRevokedCount", 0) == megan_before.get("sessionsRevokedCount", 0) + 1
    # risk confirmed
    risky = next(r for r in after["riskyUsers"] if r["id"] == MEGAN_ID)
    assert risky["riskState"] == "confirmedCompromised"
    # MFA: CA group membership and per-user MFA enforced
    ca = next(g for g in after["groups"] if g["displayName"] == "CA-Require-MFA-Compromised")
    assert ca["id"] in megan["memberOf"] and ca["id"] not in megan_before["memberOf"]
    assert megan["perUserMfaState"] == "enforced"
    # methods: the attacker's authenticator and alternate mobile (dated by the audit log)
    # are gone; password, Megan's mobile and old authenticator stay
    kinds_before = {m["id"] for m in megan_before["authMethods"]}
    kinds_after = {m["id"] for m in megan["authMethods"]}
    removed = kinds_before - kinds_after
    assert len(removed) == 2
    gone = [m for m in megan_before["authMethods"] if m["id"] in removed]
    assert any(str(m.get("createdDateTime", "")).startswith(ATTACKER_METHOD_CREATED)
               for m in gone)
    assert any(m.get("phoneType") == "alternateMobile" for m in gone)
    assert "28c10230-6103-485e-b985-444c60001490" in kinds_after
    # rules: malicious disabled (kept, not deleted), benign untouched
    rules_before, rules_after = _rules(before, MEGAN), _rules(after, MEGAN)
    assert set(rules_before) == set(rules_after), "rules are disabled, never deleted"
    changed = {n for n in rules_after
               if rules_after[n].get("isEnabled") != rules_before[n].get("isEnabled")}
    assert changed, "some rule was disabled"
    for name in changed:
        assert rules_after[name]["isEnabled"] is False
    for name in set(rules_after) - changed:
        assert rules_after[name] == rules_before[name]
    benign = [n for n in rules_after if "newsletter" in n.lower() or "pradeep" in n.lower()]
    assert benign and all(rules_after[n].get("isEnabled", True) for n in benign)
    assert any(r.get("hidden") for r in rules_after.values() if r["displayName"] in changed)
    # mailbox forwarding cleared, auditing on, released from restricted senders
    box = megan["mailbox"]
    assert not box.get("forwardingSmtpAddress") and not box.get("forwardingAddress")
    assert box["auditEnabled"] is True
    assert not any(b["SenderAddress"].lower() == MEGAN for b in after["blockedSenders"])
    # other users untouched
    for u in before["users"]:
        if u["userPrincipalName"] != MEGAN:
            assert _user(after, u["userPrincipalName"]) == u
    # the journal has every step, finished
    run = await services.journal.get_run("e2e-1")
    assert run is not None and run.state == "finished", run and run.reason
    results = await services.journal.step_results("e2e-1")
    assert set(results) == set(run.steps)
    evidence = await services.journal.get_evidence("e2e-1", "evidence")
    assert evidence and evidence["user"]["id"] == MEGAN_ID
    assert len(evidence["inboxRules"]) == len([r for r in rules_before.values()
                                               if not r.get("hidden")])


async def test_the_same_request_id_never_runs_twice(services, emulator):
    body = {"user": MEGAN, "requestId": "twice", "actions": ["revoke_sessions"]}
    await run_via_queue(services, body)
    await run_via_queue(services, body)
    revokes = [e for e in writes(emulator) if e["path"].endswith("/revokeSignInSessions")]
    assert len(revokes) == 1


async def test_redelivery_resumes_without_repeating_done_steps(services, emulator):
    # Exchange is down for the first delivery: Graph steps finish, Exchange steps fail
    # transiently, the message is retried and the run finishes without repeating anything.
    emulator.add_fault(cmdlet="Set-Mailbox", status=503, count=None)
    services.exchange._retry.policy = type(services.exchange._retry.policy)(
        max_attempts=2, base_delay=0.05)
    import function_app
    from devtools.localhost import LocalHost

    await services.storage.enqueue(services.settings.remediation_queue,
                                   json.dumps({"user": MEGAN, "requestId": "resume-1"}))
    host = LocalHost(function_app.app, services.storage,
                     {"REMEDIATION_QUEUE": services.settings.remediation_queue},
                     visibility_timeout=0.3)
    assert await host.poll_once() == 1  # the contain lane: password and sessions
    await asyncio.wait(host._in_flight, timeout=30)
    for _ in range(100):  # the clean-up lane's first delivery
        if await host.poll_once():
            break
        await asyncio.sleep(0.05)
    await asyncio.wait(host._in_flight, timeout=30)
    run = await services.journal.get_run("resume-1")
    assert run.state == "running" and "will retry" in run.reason
    first = await services.journal.step_results("resume-1")
    assert first["reset_password"].status == "done"
    assert first["clear_mailbox_forwarding"].status == "failed"

    emulator.clear_faults()
    await host.run_until_idle(30)
    run = await services.journal.get_run("resume-1")
    assert run.state == "finished", run.reason
    log = writes(emulator)
    assert len([e for e in log if e["method"] == "PATCH" and "passwordProfile" in
                json.dumps(e.get("body") or {})]) == 1
    assert len([e for e in log if e["path"].endswith("/revokeSignInSessions")]) == 1
    assert len([e for e in log if e.get("cmdlet") == "Set-Mailbox"]) >= 1
    assert host.stats.by_function == {"remediation_worker": 1, "remediation_cleanup": 2}


async def test_break_glass_is_never_touched(services, emulator):
    await run_via_queue(services,
                        {"user": "breakglass@contoso.onmicrosoft.com", "requestId": "bg-1"},
                        {"user": "c9e6b2f7-1a8d-4d3c-8fa6-7e2b5a3d9c68", "requestId": "bg-2"})
    assert writes(emulator) == []
    for rid in ("bg-1", "bg-2"):
        run = await services.journal.get_run(rid)
        assert run.state == "refused" and "never touched" in run.reason


async def test_excluded_group_member_is_refused(settings, emulator):
    from tests.playbook.conftest import build_services

    svc = build_services(settings, exclusions={"users": [], "groups": [
        "6a1d9b4f-3c8e-4d52-8f66-1b2c3d4e5f60"]})
    from functions import runtime

    runtime.use_services(svc)
    try:
        await run_via_queue(svc, {"user": "breakglass@contoso.onmicrosoft.com",
                                  "requestId": "bg-g"})
        run = await svc.journal.get_run("bg-g")
        assert run.state == "refused" and "excluded group" in run.reason
        assert writes(emulator) == []
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_dry_run_writes_nothing_and_plans_everything(services, emulator):
    before = emulator.state()
    await run_via_queue(services, {"user": MEGAN, "requestId": "d1", "dryRun": True})
    assert writes(emulator) == []
    assert emulator.state() == before
    results = await services.journal.step_results("dry-d1")
    planned = {n for n, r in results.items() if r.status == "planned"}
    assert {"reset_password", "revoke_sessions", "disable_malicious_inbox_rules",
            "clear_mailbox_forwarding", "enable_mailbox_audit"} <= planned
    assert "forward" in results["disable_malicious_inbox_rules"].summary.lower()


async def test_403_on_one_step_leaves_independent_steps_done(services, emulator):
    emulator.add_fault(method="POST", path_regex=r"/revokeSignInSessions$", status=403,
                       code="Authorization_RequestDenied",
                       message="Insufficient privileges to complete the operation.",
                       count=None)
    await run_via_queue(services, {"user": MEGAN, "requestId": "f403"})
    results = await services.journal.step_results("f403")
    revoke = results["revoke_sessions"]
    assert revoke.status == "failed" and revoke.error_code == "Authorization_RequestDenied"
    assert "User.RevokeSessions.All" in revoke.summary and revoke.request_id
    for step in ("reset_password", "require_mfa", "disable_malicious_inbox_rules",
                 "clear_mailbox_forwarding", "enable_mailbox_audit"):
        assert results[step].status == "done", (step, results[step].summary)
    assert results["request_unblock"].status == "skipped"
    run = await services.journal.get_run("f403")
    assert run.state == "failed" and "revoke_sessions" in run.reason


async def test_invalid_messages_are_poisoned_at_once_with_a_reason(services, emulator):
    bad = ["not json", json.dumps({"requestId": "no-user"}), json.dumps({"user": 42}),
           json.dumps({"user": "x@y.com", "actions": ["format_disk"]}),
           json.dumps({"user": "a" * 5000}), json.dumps(["user", "x"]),
           json.dumps({"user": "x@y.com", "dryRun": "perhaps"})]
    stats = await run_via_queue(services, *bad)
    assert stats.delivered == len(bad) and stats.failed == 0
    poison = services.storage.queues.get_queue_client(
        poison_queue_name(services.settings.remediation_queue),
        message_decode_policy=TextBase64DecodePolicy())
    got = [m.content async for m in poison.receive_messages(max_messages=32)]
    assert len(got) == len(bad)
    records = await services.journal.items("invalid-messages")
    reasons = " | ".join(r["reason"] for r in records)
    assert "not JSON" in reasons and "user" in reasons and "format_disk" in reasons
    assert writes(emulator) == []


async def test_apostrophe_and_guest_upns_work(services, emulator):
    await run_via_queue(services,
                        {"user": "o'brien@contoso.com", "requestId": "ob",
                         "actions": ["revoke_sessions", "disable_malicious_inbox_rules"]},
                        {"user": "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com",
                         "requestId": "guest", "actions": ["revoke_sessions"]})
    for rid in ("ob", "guest"):
        run = await services.journal.get_run(rid)
        assert run.state == "finished", run.reason
    revokes = [e for e in writes(emulator) if e["path"].endswith("/revokeSignInSessions")]
    assert len(revokes) == 2


async def test_unknown_user_is_recorded_not_retried(services, emulator):
    stats = await run_via_queue(services, {"user": "ghost@contoso.com", "requestId": "gh"})
    assert stats.failed == 0
    run = await services.journal.get_run("gh")
    assert run.state == "failed" and "unknown user" in run.reason


async def test_generated_password_appears_only_in_the_request_that_sets_it(
        services, emulator, caplog, capsys, monkeypatch):
    from shared.playbook.steps import account

    generated: list[str] = []
    real = account.generate_password

    def observed(*a, **kw):  # the real generator, observed so the test knows the value
        generated.append(real(*a, **kw))
        return generated[-1]

    monkeypatch.setattr(account, "generate_password", observed)
    caplog.set_level(logging.DEBUG)
    await run_via_queue(services, {"user": MEGAN, "requestId": "pw"})
    assert len(generated) == 1
    password = generated[0]
    assert len(password) >= 16
    sets = [e for e in emulator.requests() if e["method"] == "PATCH"
            and "passwordProfile" in json.dumps(e.get("body") or {})]
    assert len(sets) == 1
    captured = capsys.readouterr()
    haystack = [caplog.text, captured.out, captured.err,
                json.dumps(emulator.state()), json.dumps(emulator.requests(), default=str)]
    rows = await services.journal.items("pw")
    haystack.append(json.dumps(rows, default=str))
    haystack.append(json.dumps(await services.journal.get_evidence("pw", "evidence")))
    from shared.playbook.reports import run_json_text, text_table

    run = await services.journal.get_run("pw")
    results = await services.journal.step_results("pw")
    haystack += [text_table(run, results), run_json_text(run, results)]
    for text in haystack:
        assert password not in text
    assert run.state == "finished"
