"""Inbox rules judged on what Exchange shows: queue message -> local host -> the
disable_malicious_inbox_rules step -> emulator (Graph messageRules + Exchange Get-InboxRule).

Colleagues (EX: recipients) and Exchange's own hidden rules stay enabled; rules Graph shows
read-only and empty are judged and disabled through Exchange; every change through Exchange
is made non-interactively and says that Outlook's client-side rules may be gone.
"""

from __future__ import annotations

import copy
from typing import Any

from shared.playbook import reports
from tests.playbook.conftest import MEGAN, MEGAN_ID, build_services, run_via_queue

COLLEAGUE_RULE = "Project Falcon to Adele"
CLIENT_RULE = "Play a sound for mail from Pradeep"
READ_ONLY_EVIL = {  # a predicate Graph cannot express: Graph shows this rule empty
    "id": "AQAAAJ5dZqU=", "displayName": "Quarterly", "sequence": 7,
    "exchangeOnly": {"ReceivedAfterDate": "2026-11-25T00:00:00"},
    "actions": {"forwardTo": ["drop@evil.example"], "markAsRead": True}}
READ_ONLY_COLLEAGUE = {
    "id": "AQAAAJ5dZqY=", "displayName": "Board pack to Pradeep", "sequence": 8,
    "exchangeOnly": {"ReceivedAfterDate": "2026-01-01T00:00:00"},
    "actions": {"forwardTo": ["pradeep@contoso.com"]}}


def _mailbox(state: dict, upn: str = MEGAN) -> dict[str, Any]:
    return next(u for u in state["users"]
                if u["userPrincipalName"].lower() == upn.lower())["mailbox"]


def _rules(state: dict) -> dict[str, dict]:
    return {r["displayName"]: r for r in _mailbox(state)["rules"]}


def _with_read_only_rules(emulator) -> None:
    seed = copy.deepcopy(emulator.state())
    _mailbox(seed)["rules"] += [READ_ONLY_EVIL, READ_ONLY_COLLEAGUE]
    emulator.load_tenant(seed)


def _exchange_writes(emulator) -> list[dict]:
    return [e for e in emulator.requests() if e.get("api") == "exchange" and e.get("write")]


async def test_colleagues_and_system_rules_stay_malicious_rules_go(services, emulator):
    await run_via_queue(services, {"user": MEGAN, "requestId": "rules-1",
                                   "actions": ["disable_malicious_inbox_rules"]})
    result = (await services.journal.step_results("rules-1"))["disable_malicious_inbox_rules"]
    assert result.status == "done", result.summary
    rules = _rules(emulator.state())
    # the demo's three malicious rules (forward out, hide to RSS Feeds, hidden redirect)
    assert [n for n in ("..", ".", "") if rules[n]["isEnabled"]] == []
    # forwarding to a colleague (Exchange shows an EX: recipient) and the junk e-mail rule
    assert rules[COLLEAGUE_RULE]["isEnabled"] is True
    assert rules["Junk E-mail Rule"]["isEnabled"] is True
    assert rules["Newsletters"]["isEnabled"] and rules["Flag mail from Pradeep"]["isEnabled"]
    assert {c["name"] for c in result.changes} == {"..", ".", ""}
    # the hidden rule went through Exchange, non-interactively, and the record says what
    # that costs
    (hidden,) = [c for c in result.changes if c["via"] == "exchange"]
    assert hidden["name"] == "" and "client-side rules" in hidden["clientRules"]
    (call,) = [e for e in _exchange_writes(emulator) if e["cmdlet"] == "Disable-InboxRule"]
    assert call["params"]["Force"] is True
    assert _mailbox(emulator.state())["clientRulesRemoved"] == [CLIENT_RULE]
    assert "client-side rules may have been removed" in result.summary
    md = reports.markdown(await reports.load(services, "rules-1"))
    assert "client-side rules may have been removed" in md


async def test_read_only_rules_are_judged_on_exchange_and_changed_there(settings, emulator):
    _with_read_only_rules(emulator)
    svc = build_services(settings)
    from functions import runtime

    runtime.use_services(svc)
    try:
        emulator.clear_log()
        await run_via_queue(svc, {"user": MEGAN, "requestId": "rules-ro",
                                  "actions": ["disable_malicious_inbox_rules"]})
        results = await svc.journal.step_results("rules-ro")
        result = results["disable_malicious_inbox_rules"]
        assert result.status == "done", result.summary
        rules = _rules(emulator.state())
        assert rules["Quarterly"]["isEnabled"] is False, "read-only rule forwarding out"
        assert rules["Board pack to Pradeep"]["isEnabled"] is True, "read-only, to a colleague"
        quarterly = next(c for c in result.changes if c["name"] == "Quarterly")
        assert quarterly["via"] == "exchange" and quarterly["graphId"] == READ_ONLY_EVIL["id"]
        assert any("ForwardTo outside" in r for r in quarterly["reasons"])
        # never a Graph PATCH on a read-only rule (Graph refuses it)
        patched = [e["path"] for e in emulator.requests()
                   if e.get("method") == "PATCH" and "messageRules" in str(e.get("path"))]
        assert not any(READ_ONLY_EVIL["id"] in p for p in patched)
        assert all(e["params"].get("Force") is True for e in _exchange_writes(emulator))

        # release: re-enabled through Exchange too, and it says so
        await run_via_queue(svc, {"user": MEGAN, "action": "release", "runId": "rules-ro",
                                  "requestId": "release-rules-ro"})
        rules = _rules(emulator.state())
        assert rules["Quarterly"]["isEnabled"] is True and rules[""]["isEnabled"] is True
        enables = [e for e in _exchange_writes(emulator) if e["cmdlet"] == "Enable-InboxRule"]
        assert len(enables) == 2 and all(e["params"]["Force"] is True for e in enables)
        events = await svc.journal.events("rules-ro")
        released = next(e for e in events if e["kind"] == "released")
        texts = " ".join(str(i) for i in released["data"]["items"])
        assert "client-side rules may have been removed" in texts
        md = reports.markdown(await reports.load(svc, "rules-ro"))
        assert md.count("client-side rules may have been removed") >= 2
        assert MEGAN_ID  # the run acted on the demo's compromised user
    finally:
        runtime.use_services(None)
        await svc.close()
