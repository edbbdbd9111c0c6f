"""Single steps run through the real runner against the emulator: effect, idempotence and
what is recorded."""

from __future__ import annotations

from shared.models import RemediationRequest
from shared.playbook.runner import run_request
from tests.playbook.conftest import MEGAN, MEGAN_ID, build_services, writes

ATTACKER_APP = "9f2b8e41-c7d3-4a65-b0e9-7d4c3a2b1e06"
OLD_APP = "0e5c7d3a-9b21-4f48-8a6e-3c1d2b4a5f70"
MOBILE = "3179e48a-750b-4051-897c-87b9720928f7"
ALT_MOBILE = "b6332ec1-7057-4abe-9331-3d72feddfe41"


def _megan(emulator) -> dict:
    return next(u for u in emulator.state()["users"] if u["id"] == MEGAN_ID)


async def _run(services, rid: str, actions: list[str], **extra) -> object:
    req = RemediationRequest.model_validate({"user": MEGAN, "requestId": rid,
                                             "actions": actions, **extra})
    return await run_request(services, req)


async def test_collect_evidence_snapshots_before_any_change(services, emulator):
    out = await _run(services, "ev", ["collect_evidence"])
    assert out.run.state == "finished"
    doc = await services.journal.get_evidence("ev", "evidence")
    assert doc["user"]["userPrincipalName"] == MEGAN
    assert doc["riskyUser"]["riskState"] == "atRisk"
    assert {m["id"] for m in doc["authenticationMethods"]} >= {ATTACKER_APP, OLD_APP}
    assert "smtp:" in str(doc["mailbox"]["ForwardingSmtpAddress"]).lower() or \
        doc["mailbox"]["ForwardingSmtpAddress"]
    assert any(r.get("Name") == "" for r in doc["exchangeInboxRules"]), "hidden rule seen"
    assert doc["restrictedSender"] and doc["unavailable"] == {}
    assert writes(emulator) == []
    assert out.run.evidence_blob.endswith("ev/evidence.json")


async def test_evidence_records_what_it_could_not_read(services, emulator):
    emulator.add_fault(cmdlet="Get-Mailbox", status=403, code="Forbidden",
                       message="is not allowed to call Get-Mailbox", count=None)
    out = await _run(services, "ev403", ["collect_evidence"])
    assert out.results["collect_evidence"].status == "done"
    doc = await services.journal.get_evidence("ev403", "evidence")
    assert "mailbox" in doc["unavailable"] and "Exchange Administrator" in \
        doc["unavailable"]["mailbox"]


async def test_disable_account_is_idempotent(services, emulator):
    first = await _run(services, "dis-1", ["disable_account"])
    assert first.results["disable_account"].status == "done"
    assert _megan(emulator)["accountEnabled"] is False
    second = await _run(services, "dis-2", ["disable_account"])
    assert second.results["disable_account"].status == "nothing_to_do"
    patches = [e for e in writes(emulator) if e["method"] == "PATCH"]
    assert len(patches) == 1


async def test_methods_removed_by_window_measured_from_the_detection(services, emulator):
    # detection long ago: the attacker's method (after it) goes, the old one (before the
    # window) stays; the phones (no creation time) are dated by the audit log: the
    # attacker's alternate mobile goes, Megan's own mobile (no event in the window) stays
    out = await _run(services, "m1", ["remove_suspicious_auth_methods"],
                     detectedAt="2026-11-25T03:12:44Z")
    res = out.results["remove_suspicious_auth_methods"]
    assert res.status == "done"
    ids = {m["id"] for m in _megan(emulator)["authMethods"]}
    assert ATTACKER_APP not in ids and OLD_APP in ids
    assert ALT_MOBILE not in ids and MOBILE in ids
    assert [c["removed"]["id"] for c in res.changes] == [ATTACKER_APP, ALT_MOBILE]
    kept = next(a for a in res.data["assessment"] if a["method"]["id"] == MOBILE)
    assert kept["verdict"] == "keep" and kept["method"]["kind"] == "phone"
    assert "4255550199" not in str(res.data), "phone numbers are masked"
    again = await _run(services, "m2", ["remove_suspicious_auth_methods"],
                       detectedAt="2026-11-25T03:12:44Z")
    assert again.results["remove_suspicious_auth_methods"].status == "nothing_to_do"


async def test_wide_window_takes_the_older_method_too(settings, emulator):
    svc = build_services(settings, authMethods={"windowDays": 365})
    try:
        out = await _run(svc, "m3", ["remove_suspicious_auth_methods"],
                         detectedAt="2026-11-25T03:12:44Z")
        assert len(out.results["remove_suspicious_auth_methods"].changes) == 3
        ids = {m["id"] for m in _megan(emulator)["authMethods"]}
        assert "28c10230-6103-485e-b985-444c60001490" in ids, "never the password"
    finally:
        await svc.close()


async def test_notify_mails_the_soc_and_is_skipped_when_not_configured(settings, emulator):
    svc = build_services(settings)
    try:
        out = await _run(svc, "n1", ["revoke_sessions", "notify"])
        assert out.results["notify"].status == "done"
        mail = emulator.state()["sentMail"]
        assert len(mail) == 1
        text = str(mail[0])
        assert "soc@contoso.com" in text and "revoke_sessions" in text
    finally:
        await svc.close()
    svc = build_services(settings, notify={})
    try:
        out = await _run(svc, "n2", ["notify"])
        assert out.results["notify"].status == "skipped"
        assert "no notification channel" in out.results["notify"].summary
    finally:
        await svc.close()


async def test_federated_user_password_is_partial_never_a_false_success(services, emulator):
    req = RemediationRequest.model_validate({"user": "lee@fed.contoso.com", "requestId": "fed",
                                             "actions": ["reset_password", "revoke_sessions"]})
    out = await run_request(services, req)
    res = out.results["reset_password"]
    assert res.status == "partial" and "on-premises" in res.summary
    assert out.results["revoke_sessions"].status == "done"
    assert not [e for e in writes(emulator) if e["method"] == "PATCH"]


async def test_synced_user_reset_reports_the_on_premises_follow_up(services, emulator):
    req = RemediationRequest.model_validate({"user": "diego@contoso.com", "requestId": "sync",
                                             "actions": ["reset_password"]})
    out = await run_request(services, req)
    res = out.results["reset_password"]
    assert res.status == "partial" and "on-premises" in res.summary


async def test_confirm_compromised_aggregates_concurrent_runs(services, emulator):
    import asyncio

    users = ["megan@contoso.com", "o'brien@contoso.com", "diego@contoso.com",
             "pradeep@contoso.com"]
    reqs = [RemediationRequest.model_validate({"user": u, "requestId": f"cc-{i}",
                                               "actions": ["confirm_compromised"]})
            for i, u in enumerate(users)]
    outs = await asyncio.gather(*(run_request(services, r) for r in reqs))
    assert all(o.results["confirm_compromised"].status == "done" for o in outs)
    posts = [e for e in emulator.requests() if e["path"].endswith("/confirmCompromised")]
    assert len(posts) == 1
    assert len(posts[0]["body"]["userIds"]) == 4
