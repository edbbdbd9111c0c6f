"""remove_suspicious_auth_methods through the real path (queue -> local host -> Azurite ->
emulator): methods without a creation time are dated by the directory audit log, phones
are deleted in the documented order, and what cannot be judged or removed is reported."""

from __future__ import annotations

from tests.playbook.conftest import MEGAN, MEGAN_ID, run_via_queue, writes

STEP = "remove_suspicious_auth_methods"
DETECTED = "2026-11-25T03:12:44Z"
MOBILE = "3179e48a-750b-4051-897c-87b9720928f7"
ALT_MOBILE = "b6332ec1-7057-4abe-9331-3d72feddfe41"
OFFICE = "e37fc753-ff3b-4958-9484-eaa9425c82bc"
ATTACKER_APP = "9f2b8e41-c7d3-4a65-b0e9-7d4c3a2b1e06"
PHONE = "#microsoft.graph.phoneAuthenticationMethod"


def _megan_methods(emulator) -> dict[str, dict]:
    megan = next(u for u in emulator.state()["users"] if u["id"] == MEGAN_ID)
    return {m["id"]: m for m in megan["authMethods"]}


def _phone(kind: str, number: str) -> dict:
    ids = {"mobile": MOBILE, "alternateMobile": ALT_MOBILE, "office": OFFICE}
    return {"@odata.type": PHONE, "id": ids[kind], "phoneType": kind, "phoneNumber": number,
            "smsSignInState": "notAllowedByPolicy", "createdDateTime": None}


def _set_phones(emulator, *phones: dict, default: str | None = None,
                registered: dict[str, str] | None = None) -> None:
    """Replace Megan's phones; `registered` maps a phone type to its audit event time."""
    t = emulator.tenant
    with t.lock:
        user = t.find_user(MEGAN_ID)
        user["authMethods"] = [m for m in user["authMethods"]
                               if m["@odata.type"] != PHONE] + list(phones)
        t.directory_audits.clear()
        for p in phones:
            when = (registered or {}).get(p["phoneType"])
            if when:
                t.record_security_info(user, p, "registered", when=when)
        if default:
            user["defaultMfaMethod"] = default


async def _run(services, rid: str, **extra):
    body = {"user": MEGAN, "requestId": rid, "actions": [STEP], "detectedAt": DETECTED,
            **extra}
    stats = await run_via_queue(services, body)
    assert stats.failed == 0
    results = await services.journal.step_results(
        f"dry-{rid}" if extra.get("dryRun") else rid)
    return results[STEP]


async def test_attacker_phone_dated_by_audit_event_goes_older_phone_stays(services,
                                                                         emulator):
    # the demo: Megan's own mobile (no date, no event) and the attacker's alternate mobile
    # (no createdDateTime; "User registered security info" at 03:18:07, in the window)
    before = _megan_methods(emulator)
    assert before[ALT_MOBILE]["createdDateTime"] is None
    res = await _run(services, "aud-1")
    after = _megan_methods(emulator)
    assert ALT_MOBILE not in after and ATTACKER_APP not in after
    assert MOBILE in after, "the older phone is kept"
    assert res.status == "done"
    assert [c["removed"]["id"] for c in res.changes] == [ATTACKER_APP, ALT_MOBILE]
    verdicts = {a["method"]["id"]: a for a in res.data["assessment"]}
    assert verdicts[ALT_MOBILE]["verdict"] == "remove"
    assert verdicts[ALT_MOBILE]["registered"].startswith("2026-11-25T03:18:07")
    assert verdicts[MOBILE]["verdict"] == "keep"
    assert "7700900461" not in str(res.data) and "4255550199" not in str(res.data)
    audit_reads = [e for e in emulator.requests()
                   if "/auditLogs/directoryAudits" in e["path"]]
    assert audit_reads, "the audit log was read"
    doc = await services.journal.get_evidence("aud-1", "auth-methods")
    assert doc and ALT_MOBILE in {r["removed"]["id"] for r in doc["removed"]}
    assert res.data["evidenceBlob"].endswith("aud-1/auth-methods.json")


async def test_alternate_mobile_goes_before_the_mobile(services, emulator):
    _set_phones(emulator, _phone("office", "+1 4255550100"),
                _phone("mobile", "+44 7700900111"), _phone("alternateMobile", "+44 7700900222"),
                registered={"mobile": "2026-11-25T03:16:00Z",
                            "alternateMobile": "2026-11-25T03:17:00Z"})
    res = await _run(services, "aud-2")
    after = _megan_methods(emulator)
    assert MOBILE not in after and ALT_MOBILE not in after and OFFICE in after
    deletes = [e["path"] for e in writes(emulator) if e["method"] == "DELETE"
               and "/phoneMethods/" in e["path"]]
    assert [p.rsplit("/", 1)[-1] for p in deletes] == [ALT_MOBILE, MOBILE]
    assert res.status == "done" and not res.data["notRemoved"]


async def test_default_method_phone_is_reported_with_the_reason(services, emulator):
    _set_phones(emulator, _phone("mobile", "+44 7700900111"),
                _phone("alternateMobile", "+44 7700900222"), default="alternateMobile",
                registered={"mobile": "2026-11-25T03:16:00Z",
                            "alternateMobile": "2026-11-25T03:17:00Z"})
    res = await _run(services, "aud-3")
    after = _megan_methods(emulator)
    assert ALT_MOBILE in after and MOBILE in after, "Graph refused; nothing else attempted"
    assert res.status == "partial"
    reasons = {n["method"]["id"]: n["reason"] for n in res.data["notRemoved"]}
    assert "default MFA method" in reasons[ALT_MOBILE]
    assert "alternate mobile" in reasons[MOBILE]
    deletes = [e for e in writes(emulator) if e["method"] == "DELETE"
               and "/phoneMethods/" in e["path"]]
    assert len(deletes) == 0
    refused = [e for e in emulator.requests() if e["method"] == "DELETE"
               and e["path"].endswith(ALT_MOBILE)]
    assert len(refused) == 1 and not any(e["path"].endswith(MOBILE) for e in
                                         emulator.requests() if e["method"] == "DELETE")
    doc = await services.journal.get_evidence("aud-3", "auth-methods")
    assert {n["method"]["id"] for n in doc["notRemoved"]} == {ALT_MOBILE, MOBILE}


async def test_unknown_type_is_reported_not_judged(services, emulator):
    with emulator.tenant.lock:
        emulator.tenant.find_user(MEGAN_ID)["authMethods"].append({
            "@odata.type": "#microsoft.graph.qrCodePinAuthenticationMethod",
            "id": "5b1c2d3e-0000-4000-8000-00000000c0de", "createdDateTime": None})
    res = await _run(services, "aud-4")
    assert "5b1c2d3e-0000-4000-8000-00000000c0de" in _megan_methods(emulator)
    judged = {a["method"]["id"]: a for a in res.data["notJudged"]}
    assert "qrCodePin" in judged["5b1c2d3e-0000-4000-8000-00000000c0de"]["reason"]
    assert "not judged" in res.summary
    doc = await services.journal.get_evidence("aud-4", "auth-methods")
    assert any(a["method"]["kind"] == "qrCodePin" for a in doc["notJudged"])
    evidence = await services.journal.get_evidence("aud-4", "evidence")
    assert any(m["id"] == "5b1c2d3e-0000-4000-8000-00000000c0de"
               for m in evidence["authenticationMethods"])


async def test_registration_not_yet_in_the_audit_log_is_undetermined(services, emulator):
    # a fresh detection; the attacker's phone event has not reached the audit log yet
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    with emulator.tenant.lock:
        user = emulator.tenant.find_user(MEGAN_ID)
        phone = next(m for m in user["authMethods"] if m["id"] == ALT_MOBILE)
        emulator.tenant.directory_audits.clear()
        emulator.tenant.record_security_info(user, phone, "registered", pending=True,
                                             when=(now - timedelta(minutes=2)).isoformat())
    res = await _run(services, "aud-5",
                     detectedAt=(now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    after = _megan_methods(emulator)
    assert ALT_MOBILE in after and MOBILE in after, "nothing guessed"
    undetermined = {a["method"]["id"]: a["reason"] for a in res.data["undetermined"]}
    assert set(undetermined) == {ALT_MOBILE, MOBILE}
    assert "arrive late" in undetermined[ALT_MOBILE]
    assert res.status == "partial"


async def test_dry_run_changes_nothing(services, emulator):
    before = _megan_methods(emulator)
    res = await _run(services, "aud-6", dryRun=True)
    assert res.status == "planned"
    assert any("remove phone method" in line and "0461" in line
               for line in res.data["wouldDo"])
    assert _megan_methods(emulator) == before
    assert writes(emulator) == []
