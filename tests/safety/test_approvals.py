"""Privileged users: disruptive steps wait for a signed, single-use, expiring approval."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from urllib.parse import urlencode

import azure.functions as func

from shared.safety import approvals
from shared.safety.approvals import tokens
from shared.safety.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from shared.state import clock
from tests.playbook.conftest import run_via_queue, writes
from tests.safety.conftest import (
    ADELE,
    ADELE_ID,
    APPROVAL_BASE,
    APPROVAL_SECRET,
    WEBHOOK_SECRET,
    app_function,
    notify_policy,
)


def _user(state: dict, upn: str) -> dict:
    return next(u for u in state["users"] if u["userPrincipalName"].lower() == upn.lower())


def _tokens(receiver) -> dict[str, str]:
    """The approve/deny tokens from the approval.needed webhook (checking its HMAC)."""
    for r in receiver.requests:
        body = json.loads(r["body"])
        if body["event"] != "approval.needed":
            continue
        assert verify_signature(WEBHOOK_SECRET, r["headers"][TIMESTAMP_HEADER], r["body"],
                                r["headers"][SIGNATURE_HEADER])
        out = {}
        for link in body["links"]:
            assert link["url"].startswith(APPROVAL_BASE + "#token=")
            out["approve" if link["label"].startswith("Approve") else "deny"] = \
                link["url"].split("#token=", 1)[1]
        return out
    raise AssertionError(f"no approval.needed notification: {receiver.events()}")


async def _post(token: str, by: str = "", principal: str | None = None) -> func.HttpResponse:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if principal:
        headers["x-ms-client-principal-name"] = principal
    req = func.HttpRequest("POST", "http://localhost/api/approvals", headers=headers,
                           body=urlencode({"token": token, "by": by}).encode())
    return await app_function("approvals")(req)


async def _get(token: str) -> func.HttpResponse:
    req = func.HttpRequest("GET", "http://localhost/api/approvals", params={"token": token},
                           body=b"")
    return await app_function("approvals")(req)


async def _start_admin_run(svc, emulator, receiver, request_id: str):
    before = emulator.state()
    stats = await run_via_queue(svc, {"user": ADELE, "requestId": request_id,
                                      "riskLevel": "high", "reason": "impossible travel"})
    assert stats.failed == 0
    return before


async def test_admin_disruptive_steps_wait_and_run_only_after_approval(
        make_services, emulator, receiver):
    svc = make_services(**notify_policy(receiver))
    before = await _start_admin_run(svc, emulator, receiver, "adm-1")
    adele_before, adele = _user(before, ADELE), _user(emulator.state(), ADELE)

    run = await svc.journal.get_run("adm-1")
    assert run.state == "waiting_approval", run.reason
    results = await svc.journal.step_results("adm-1")
    assert results["revoke_sessions"].status == "done"  # always safe: ran at once
    assert results["reset_password"].status == "waiting_approval"
    assert results["remove_suspicious_auth_methods"].status == "waiting_approval"
    assert results["request_unblock"].status == "waiting_approval"
    assert results["notify"].status == "waiting_approval"
    assert adele["sessionsRevokedCount"] == adele_before["sessionsRevokedCount"] + 1
    assert adele["passwordChangeCount"] == adele_before["passwordChangeCount"]
    approval = await approvals.get_approval(svc, "adm-1")
    assert approval.state == "pending" and "User Administrator" in approval.roles
    assert set(approval.steps) == {"reset_password", "remove_suspicious_auth_methods"}
    events = [e["kind"] for e in await svc.journal.events("adm-1")]
    assert "approval-requested" in events and "run-waiting_approval" in events

    tokens = _tokens(receiver)
    # GET (a mail scanner opening the link) shows a form and decides nothing
    page = await _get(tokens["approve"])
    assert page.status_code == 200 and "APPROVE" in page.get_body().decode()
    assert (await approvals.get_approval(svc, "adm-1")).state == "pending"

    ok = await _post(tokens["approve"], by="soc.lead@contoso.com")
    assert ok.status_code == 200, ok.get_body()
    approval = await approvals.get_approval(svc, "adm-1")
    assert approval.state == "approved" and approval.decided_by == "soc.lead@contoso.com"
    assert approval.by_trust == approvals.SELF_ASSERTED and approval.decided_at
    decided = [e for e in await svc.journal.events("adm-1") if e["kind"] == "approval-approved"]
    assert decided and decided[0]["data"]["by"] == "soc.lead@contoso.com"

    await run_via_queue(svc)  # the resume message the decision queued
    run = await svc.journal.get_run("adm-1")
    assert run.state == "finished", run.reason
    results = await svc.journal.step_results("adm-1")
    assert results["reset_password"].status == "done"
    assert results["notify"].status == "done"
    adele = _user(emulator.state(), ADELE)
    assert adele["passwordChangeCount"] == adele_before["passwordChangeCount"] + 1
    assert adele["sessionsRevokedCount"] == adele_before["sessionsRevokedCount"] + 1
    assert "run.finished" in receiver.events()

    # the same link again, and the other link, are refused: single use
    again = await _post(tokens["approve"], by="someone")
    assert again.status_code == 409
    deny = await _post(tokens["deny"], by="someone")
    assert deny.status_code == 409
    # refusals are logged and counted, never stored (tests/safety/test_approval_costs.py)
    assert not [e for e in await svc.journal.events("adm-1") if e["kind"] == "approval-refused"]
    assert (await approvals.get_approval(svc, "adm-1")).state == "approved"


async def test_deny_records_the_steps_skipped_with_who_and_why(make_services, emulator,
                                                               receiver):
    svc = make_services(**notify_policy(receiver))
    before = await _start_admin_run(svc, emulator, receiver, "adm-deny")
    svc.settings = dataclasses.replace(svc.settings, approval_trust_principal_header=True)
    resp = await _post(_tokens(receiver)["deny"], principal="ciso@contoso.com")
    assert resp.status_code == 200
    await run_via_queue(svc)
    run = await svc.journal.get_run("adm-deny")
    assert run.state == "finished", run.reason
    results = await svc.journal.step_results("adm-deny")
    for step in ("reset_password", "remove_suspicious_auth_methods"):
        assert results[step].status == "skipped"
        assert "denied by ciso@contoso.com" in results[step].summary
        assert approvals.TRUSTED in results[step].summary
    assert results["request_unblock"].status == "skipped"
    assert results["revoke_sessions"].status == "done"
    assert _user(emulator.state(), ADELE)["passwordChangeCount"] == \
        _user(before, ADELE)["passwordChangeCount"]


async def test_forged_and_malformed_tokens_are_refused_and_counted(make_services, emulator,
                                                                   receiver):
    svc = make_services(**notify_policy(receiver))
    await _start_admin_run(svc, emulator, receiver, "adm-forge")
    real = _tokens(receiver)["approve"]
    approval = await approvals.get_approval(svc, "adm-forge")
    other_secret = approvals.make_token(b"x" * 40, "adm-forge", "approve", "n" * 32,
                                        approval.expires_at)
    claims, mac = real.split(".")
    tampered_claims = tokens._b64(json.dumps(
        {"r": "adm-forge", "d": "approve", "n": "guess", "e": 4102444800}).encode())
    right_key_wrong_nonce = approvals.make_token(APPROVAL_SECRET.encode(), "adm-forge",
                                                 "approve", "guess", approval.expires_at)
    before = approvals.refusal_counts()
    for bad in (other_secret, f"{tampered_claims}.{mac}", f"{claims}.{mac[:-2]}AA",
                "garbage", "", "a.b.c", right_key_wrong_nonce):
        resp = await _post(bad, by="mallory")
        assert resp.status_code in (403, 404), (bad, resp.status_code)
    assert (await approvals.get_approval(svc, "adm-forge")).state == "pending"
    after = approvals.refusal_counts()
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grew == {"forged": 4, "malformed": 3}
    # nothing is stored for a refusal, and forged tokens never touch the run's audit trail
    assert await svc.journal.events(approvals.REFUSALS) == []
    assert not [e for e in await svc.journal.events("adm-forge")
                if e["kind"] == "approval-refused"]
    # the genuine token still works afterwards
    assert (await _post(real, by="soc")).status_code == 200


async def test_an_expired_token_is_refused_and_the_approval_escalates(
        make_services, emulator, receiver, monkeypatch):
    svc = make_services(**notify_policy(receiver))
    before = await _start_admin_run(svc, emulator, receiver, "adm-exp")
    tokens = _tokens(receiver)
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(hours=5))

    resp = await _post(tokens["approve"], by="late.admin")
    assert resp.status_code == 403 and "expired" in resp.get_body().decode()
    approval = await approvals.get_approval(svc, "adm-exp")
    assert approval.state == "expired"
    kinds = [e["kind"] for e in await svc.journal.events("adm-exp")]
    assert {"approval-expired", "approval-escalated"} <= set(kinds)
    assert "approval.escalated" in receiver.events()

    await run_via_queue(svc)  # the escalation resumes the run: nothing silently dropped
    run = await svc.journal.get_run("adm-exp")
    assert run.state == "failed" and "approval expired" in run.reason
    results = await svc.journal.step_results("adm-exp")
    assert results["reset_password"].status == "skipped"
    assert "expired" in results["reset_password"].summary
    assert _user(emulator.state(), ADELE)["passwordChangeCount"] == \
        _user(before, ADELE)["passwordChangeCount"]
    assert (await _post(tokens["deny"])).status_code == 403


async def test_the_timer_escalates_overdue_approvals_once(make_services, emulator, receiver):
    from azure.functions.timer import TimerRequest

    svc = make_services(**notify_policy(receiver))
    await _start_admin_run(svc, emulator, receiver, "adm-timer")
    await app_function("approvals_escalation")(TimerRequest())
    assert (await approvals.get_approval(svc, "adm-timer")).state == "pending"  # not yet due
    later = clock.now() + timedelta(hours=4, minutes=1)
    assert await approvals.escalate_expired(svc, now=later) == ["adm-timer"]
    assert await approvals.escalate_expired(svc, now=later) == []
    assert receiver.events().count("approval.escalated") == 1


async def test_role_lookup_and_the_break_glass_admin(make_services, emulator, receiver):
    svc = make_services(**notify_policy(receiver))
    assert await approvals.privileged_roles(svc, ADELE_ID) == ["User Administrator"]
    assert await approvals.privileged_roles(
        svc, "d4f1c7a2-6b3e-4e8d-9a51-2f7c0b8e4d13") == []
    # break-glass holds Global Administrator and is excluded: refused before any gate
    await run_via_queue(svc, {"user": "breakglass@contoso.onmicrosoft.com",
                              "requestId": "bg-adm"})
    run = await svc.journal.get_run("bg-adm")
    assert run.state == "refused"
    assert await approvals.get_approval(svc, "bg-adm") is None
    assert writes(emulator) == [] and receiver.requests == []


async def test_non_admin_runs_straight_through_and_approval_can_be_switched_off(
        make_services, emulator, receiver):
    svc = make_services(**notify_policy(receiver), privileged={"requireApproval": False})
    await run_via_queue(svc, {"user": ADELE, "requestId": "adm-off"})
    run = await svc.journal.get_run("adm-off")
    assert run.state == "finished", run.reason
    assert await approvals.get_approval(svc, "adm-off") is None


async def test_without_a_secret_the_approval_is_recorded_without_links(
        make_services, azurite, emulator, receiver):
    from tests.conftest import make_settings

    svc = make_services(settings=make_settings(azurite, emulator,
                                               RESPONDER_WEBHOOK_SECRET=WEBHOOK_SECRET),
                        **notify_policy(receiver))
    await run_via_queue(svc, {"user": ADELE, "requestId": "adm-nosecret"})
    assert (await svc.journal.get_run("adm-nosecret")).state == "waiting_approval"
    body = next(b for b in receiver.json() if b["event"] == "approval.needed")
    assert body["links"] == [] and "RESPONDER_APPROVAL_SECRET" in " ".join(body["lines"])
    resp = await _post("anything.at-all")
    assert resp.status_code == 503
