"""Release after a false positive: the tenant goes back to its state before the run, except
what cannot be undone, and the report says so."""

from __future__ import annotations

import copy
import json

from shared.playbook import reports
from tests.playbook.conftest import MEGAN, MEGAN_ID, run_via_queue, writes
from tests.safety.conftest import notify_policy

NOT_RESTORED_USER_FIELDS = {
    # cannot be undone: the password (nobody knows the old one) and revoked sessions
    "passwordChangeCount", "lastPasswordChangeDateTime", "forceChangePasswordNextSignIn",
    "sessionsRevokedCount", "signInSessionsValidFromDateTime",
    # cannot be undone: removed authentication methods (compared separately)
    "authMethods",
}


def _user(state: dict, upn: str) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == upn.lower())


def _comparable(state: dict) -> dict:
    """The tenant minus what a release deliberately does not restore (checked separately)."""
    s = copy.deepcopy(state)
    # risk: dismissed (checked below), its detection history stays; restricted senders:
    # released (checked below); sent mail: the notifications
    for key in ("sentMail", "riskyUsers", "riskDetections", "blockedSenders",
                "compromisedUserReport", "directoryAudits"):
        s.pop(key, None)
    # consents given back are new objects (a new id and creation time): compare what they
    # grant, not which object carries it
    for key in ("oauth2PermissionGrants", "appRoleAssignments"):
        s[key] = sorted(json.dumps({k: v for k, v in o.items()
                                     if k not in ("id", "createdDateTime")}, sort_keys=True)
                         for o in s.get(key, []))
    megan = _user(s, MEGAN)
    for key in NOT_RESTORED_USER_FIELDS:
        megan.pop(key, None)
    # a delegation granted back is a new grant (its own time, at the end of the list)
    megan["mailbox"]["permissions"] = sorted(
        json.dumps({k: v for k, v in p.items() if k != "addedDateTime"}, sort_keys=True)
        for p in megan["mailbox"].get("permissions", []))
    megan["mailbox"].pop("auditEnabled")  # kept on: the safe state
    # cannot be undone: Outlook's client-side rules, gone once a rule changed through Exchange
    megan["mailbox"].pop("outlookClientRules", None)
    megan["mailbox"].pop("clientRulesRemoved", None)
    for rule in megan["mailbox"]["rules"]:
        rule.setdefault("isEnabled", True)
    return s


async def test_release_restores_the_tenant_except_what_cannot_be_undone(
        make_services, emulator):
    svc = make_services(**notify_policy(mail=True))
    before = emulator.state()
    await run_via_queue(svc, {"user": MEGAN, "requestId": "fp-1", "riskLevel": "high"})
    run = await svc.journal.get_run("fp-1")
    assert run.state == "finished", run.reason
    contained = emulator.state()
    assert _comparable(contained) != _comparable(before)  # the run changed things

    await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "fp-1",
                              "requestId": "release-fp-1", "requestedBy": "soc"})
    after = emulator.state()
    if _comparable(after) != _comparable(before):  # name the difference before failing
        one, two = _user(_comparable(after), MEGAN), _user(_comparable(before), MEGAN)
        print({k: (one.get(k), two.get(k)) for k in set(one) | set(two)
               if one.get(k) != two.get(k)})
        print({k for k in _comparable(after) if _comparable(after)[k] != _comparable(before)[k]})
    assert _comparable(after) == _comparable(before)

    m_before, m_after = _user(before, MEGAN), _user(after, MEGAN)
    # restored: forwarding, per-user MFA, CA group, rules (hidden one too), sign-in
    assert m_after["mailbox"]["forwardingSmtpAddress"] == "megan.bowen.mail@gmail.example"
    assert m_after["perUserMfaState"] == "disabled"
    assert "5f0c8a3e-2b7d-4c41-9e55-0a1b2c3d4e5f" not in m_after["memberOf"]
    assert all(r.get("isEnabled", True) for r in m_after["mailbox"]["rules"])
    # not restored, by design
    assert m_after["passwordChangeCount"] == m_before["passwordChangeCount"] + 1
    assert len(m_after["authMethods"]) == len(m_before["authMethods"]) - 2
    assert m_after["mailbox"]["auditEnabled"] is True
    assert m_after["mailbox"]["clientRulesRemoved"] == ["Play a sound for mail from Pradeep"]
    risky = next(r for r in after["riskyUsers"] if r["id"] == MEGAN_ID)
    assert risky["riskState"] == "dismissed"
    assert not any(b["SenderAddress"].lower() == MEGAN for b in after["blockedSenders"])

    run = await svc.journal.get_run("fp-1")
    assert run.state == "released"
    assert "reset_password" in run.reason and "remove_suspicious_auth_methods" in run.reason
    events = await svc.journal.events("fp-1")
    released = next(e for e in events if e["kind"] == "released")
    items = {i["item"]: i["status"] for i in released["data"]["items"]}
    assert items["cannotUndo:reset_password"] == "skipped"
    assert items["cannotUndo:remove_suspicious_auth_methods"] == "skipped"
    assert items["mailboxForwarding"] == "done" and items["perUserMfa"] == "done"
    assert sum(1 for k in items if k.startswith("inboxRule:")) == 3
    assert items["kept:enable_mailbox_audit"] == "skipped"

    # the report says what was undone and what cannot be
    report = await reports.load(svc, "fp-1")
    md = reports.markdown(report)
    assert "## Release" in md and "## Cannot be undone" in md
    assert "old password is unknown" in md and "SM-A546B" in md
    assert "inbox rule" in md and "re-enabled" in md
    assert "client-side rules may have been removed" in md
    data = reports.as_json(report)
    assert data["release"]["state"] == "released"
    assert {"released", "release-started"} <= {t["kind"] for t in data["timeline"]}

    # idempotent: a second release changes nothing
    emulator.clear_log()
    await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "fp-1",
                              "requestId": "release-fp-1b"})
    assert writes(emulator) == []
    assert emulator.state()["users"] == after["users"]


async def test_release_of_a_run_waiting_for_approval_cancels_it(make_services, emulator,
                                                                receiver):
    from shared.safety import approvals
    from tests.safety.conftest import ADELE

    svc = make_services(**notify_policy(receiver))
    await run_via_queue(svc, {"user": ADELE, "requestId": "adm-rel"})
    assert (await svc.journal.get_run("adm-rel")).state == "waiting_approval"
    await run_via_queue(svc, {"user": ADELE, "action": "release", "runId": "adm-rel"})
    assert (await approvals.get_approval(svc, "adm-rel")).state == "cancelled"
    assert (await svc.journal.get_run("adm-rel")).state == "released"
    assert "run.released" in receiver.events()


async def test_bad_release_requests_are_refused_with_a_reason(make_services, emulator):
    svc = make_services()
    stats = await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "nope"},
                                {"user": MEGAN, "action": "release"})
    assert stats.failed == 0
    reasons = " | ".join(r["reason"] for r in await svc.journal.items("invalid-messages"))
    assert "no run 'nope'" in reasons and "no runs for user" in reasons
    assert writes(emulator) == []


async def test_cli_release_dry_run_and_report_formats(make_services, azurite, emulator,
                                                      monkeypatch, capsys):
    from shared import cli

    svc = make_services()
    await run_via_queue(svc, {"user": MEGAN, "requestId": "cli-1"})
    env = {"AzureWebJobsStorage": azurite.connection_string,
           "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
           "GRAPH_BASE_URL": emulator.base_url, "EXCHANGE_BASE_URL": emulator.base_url,
           "RESPONDER_CREDENTIAL": "static-token", "RESPONDER_STATIC_TOKEN": "emulator-test-token",
           "RESPONDER_JOURNAL_TABLE": svc.settings.journal_table,
           "RESPONDER_EVIDENCE_CONTAINER": svc.settings.evidence_container,
           "RESPONDER_POLICY": "devtools/demo-policy.json"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    emulator.clear_log()
    assert await cli.main_async(["release", "cli-1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would undo" in out and "mailbox forwarding restored" in out
    assert "cannot be undone" in out
    assert writes(emulator) == []
    for fmt, marker in (("md", "## Timeline"), ("html", "<ol class=\"timeline\">"),
                        ("json", '"timeline"')):
        assert await cli.main_async(["report", "cli-1", "--format", fmt]) == 0
        assert marker in capsys.readouterr().out
    assert await cli.main_async(["release", "cli-1"]) == 0
    assert "release of cli-1" in capsys.readouterr().out
    assert json.loads(json.dumps((await svc.journal.get_run("cli-1")).state)) == "released"
