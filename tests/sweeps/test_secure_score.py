"""Secure Score posture sweep against the emulator: chosen controls, trend, change since
the last sweep, history, and the 403 case."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.sweeps import run_sweep
from shared.sweeps.secure_score import HISTORY, choose_controls, posture_text

# (id, title, category, maxScore, threats, deprecated)
PROFILES = [
    ("AdminMFAV2", "Ensure multifactor authentication is enabled for all users in "
     "administrative roles", "Identity", 10, ["Account Breach", "Elevation of Privilege"], False),
    ("MFARegistrationV2", "Ensure multifactor authentication is enabled for all users",
     "Identity", 9, ["Account Breach", "Password Cracking"], False),
    ("BlockLegacyAuthentication", "Enable Conditional Access policies to block legacy "
     "authentication", "Identity", 8, ["Password Spray"], False),
    ("SigninRiskPolicy", "Turn on sign-in risk policy", "Identity", 7, [], False),
    ("UserRiskPolicy", "Turn on user risk policy", "Identity", 7, [], False),
    ("SelfServicePasswordReset", "Enable self-service password reset", "Identity", 1, [],
     False),
    ("mailboxAuditingEnabled", "Ensure mailbox auditing for all users is Enabled", "Apps", 5,
     ["Data Exfiltration"], False),
    ("RoleOverlap", "Use least privileged administrative roles", "Identity", 1,
     ["Elevation of Privilege"], False),
    ("CustomerLockBoxEnabled", "Turn on customer lockbox feature", "Data", 3,
     ["Data Exfiltration"], False),
    ("IntuneCompliancePolicy", "Create a compliance policy for devices", "Device", 5,
     ["Malware"], False),
    ("PWAgePolicyNew", "Do not expire passwords; require MFA instead", "Identity", 8,
     ["Password Cracking"], True),
]
CHOSEN = {"AdminMFAV2", "MFARegistrationV2", "BlockLegacyAuthentication", "SigninRiskPolicy",
          "UserRiskPolicy", "SelfServicePasswordReset", "mailboxAuditingEnabled"}


def profiles() -> list[dict[str, Any]]:
    return [{"id": cid, "azureTenantId": None, "title": title, "controlCategory": cat,
             "maxScore": float(mx), "implementationCost": "Low", "userImpact": "Moderate",
             "tier": "Core", "threats": threats, "remediation": f"<p>{title}.</p>",
             "remediationImpact": "", "actionType": "Config", "service": "AzureAD",
             "deprecated": deprecated, "rank": i + 1, "actionUrl": "https://example.invalid",
             "controlStateUpdates": [],
             "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}
            for i, (cid, title, cat, mx, threats, deprecated) in enumerate(PROFILES)]


def score(day: datetime, controls: dict[str, float]) -> dict[str, Any]:
    rows = [{"controlCategory": cat, "controlName": cid, "score": controls.get(cid, 0.0),
             "description": title} for cid, title, cat, *_ in PROFILES]
    return {"id": f"t_{day:%Y-%m-%d}", "azureTenantId": "t", "createdDateTime":
            day.strftime("%Y-%m-%dT%H:%M:%SZ"), "currentScore": sum(controls.values()),
            "maxScore": float(sum(p[3] for p in PROFILES)), "activeUserCount": 8,
            "licensedUserCount": 8, "enabledServices": ["HasExchange"],
            "averageComparativeScores": [{"basis": "AllTenants", "averageScore": 38.5}],
            "controlScores": rows,
            "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}


TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def history(latest: dict[str, float]) -> list[dict[str, Any]]:
    base = {"AdminMFAV2": 10.0, "SigninRiskPolicy": 7.0, "CustomerLockBoxEnabled": 3.0}
    days = [score(TODAY - timedelta(days=d), {**base, "MFARegistrationV2": 4.5 * (d < 3)})
            for d in range(1, 5)]
    return [score(TODAY, {**base, "MFARegistrationV2": 9.0, **latest}), *days]


def seed(emulator: Any, scores: list[dict[str, Any]]) -> None:
    state = emulator.state()
    state["secureScores"] = scores
    state["secureScoreControlProfiles"] = profiles()
    emulator.load_tenant(state)


def test_the_rule_chooses_from_the_profiles_fields() -> None:
    chosen = choose_controls(profiles())
    assert set(chosen) == CHOSEN
    assert "threat: Password Spray" in chosen["BlockLegacyAuthentication"]["reasons"]
    assert chosen["mailboxAuditingEnabled"]["reasons"] == ["about mailbox auditing"]


async def test_posture_report_trend_and_changes_since_the_last_sweep(emulator, make_services):
    seed(emulator, history({}))
    svc = make_services(emulator)
    first = await run_sweep(svc, "secure_score")
    data = first.data
    assert first.status == "ok" and data["available"]
    assert {c["id"] for c in data["controls"]} == CHOSEN
    state = {c["id"]: (c["score"], c["state"]) for c in data["controls"]}
    assert state["AdminMFAV2"] == (10.0, "done")
    assert state["MFARegistrationV2"] == (9.0, "done")
    assert state["BlockLegacyAuthentication"] == (0.0, "not done")
    assert data["score"] == 20.0 + 9.0
    trend = data["trend"]
    assert [d["score"] for d in trend["days"]] == [20.0, 20.0, 24.5, 24.5, 29.0]
    assert trend["direction"] == "up" and trend["change"] == 9.0
    assert data["changes"]["first"] is True
    assert {f["identity"] for f in first.found} == CHOSEN - {"AdminMFAV2", "MFARegistrationV2",
                                                             "SigninRiskPolicy"}
    rows = await svc.journal.items(HISTORY)
    assert len(rows) == 5

    # the next day: legacy authentication blocked, SSPR on
    seed(emulator, history({"BlockLegacyAuthentication": 8.0, "SelfServicePasswordReset": 1.0}))
    second = await run_sweep(svc, "secure_score")
    changes = second.data["changes"]
    assert changes["first"] is False and changes["scoreChange"] == 9.0
    assert sorted(changes["controls"]) == ["BlockLegacyAuthentication",
                                           "SelfServicePasswordReset"]
    text = posture_text(second)
    assert "Secure Score 38 of" in text and "BlockLegacyAuthentication: 0.0 -> 8.0" in text
    assert "Trend" in text and "[      done] 8/8" in text

    mails = [e for e in emulator.requests() if e["path"].endswith("/sendMail")]
    assert mails, "the posture report goes to the SOC mailbox (policy notify)"
    body = json.dumps(mails[-1]["body"])
    assert "Secure Score 38 of" in body and "BlockLegacyAuthentication: 0.0 -> 8.0" in body

    third = await run_sweep(svc, "secure_score")
    assert third.data["changes"]["lines"][0].startswith("no change since the last sweep")


async def test_default_emulator_data_and_dry_run(emulator, make_services):
    svc = make_services(emulator)
    result = await run_sweep(svc, "secure_score", dry_run=True)
    assert {c["id"] for c in result.data["controls"]} == {
        "AdminMFAV2", "MFARegistrationV2", "BlockLegacyAuthentication", "SigninRiskPolicy",
        "UserRiskPolicy", "mailboxAuditingEnabled"}
    assert len(result.data["trend"]["days"]) == 7
    assert await svc.journal.items(HISTORY) == []
    query = [e["query"] for e in emulator.requests() if e["path"].endswith("/secureScores")]
    assert query == [{"$top": "7"}]


async def test_forbidden_is_not_available_not_a_failure(emulator, make_services):
    emulator.configure(secure_score_forbidden=True)
    svc = make_services(emulator)
    result = await run_sweep(svc, "secure_score")
    assert result.status == "not-available" and result.errors == []
    assert posture_text(result).startswith("Secure Score: not available (HTTP 403")
    assert "SecurityEvents.Read.All" in posture_text(result)
