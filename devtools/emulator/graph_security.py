"""Graph secure score routes: a few days of score history and the control profiles,
seeded from the tenant file or generated deterministically from the tenant id."""

from __future__ import annotations

import copy
import random
from datetime import timedelta

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .timefmt import iso7, utcnow

router = Router()

DEFAULT_PROFILES = [
    ("AdminMFAV2", "Ensure multifactor authentication is enabled for all users in "
     "administrative roles", "Identity", 10, "Low", "Low", ["Account Breach", "Elevation of "
                                                          "Privilege"], "AzureAD"),
    ("MFARegistrationV2", "Ensure multifactor authentication is enabled for all users",
     "Identity", 9, "Moderate", "Moderate", ["Account Breach", "Password Cracking"], "AzureAD"),
    ("BlockLegacyAuthentication", "Enable Conditional Access policies to block legacy "
     "authentication", "Identity", 8, "Moderate", "Moderate", ["Password Spray",
                                                              "Account Breach"], "AzureAD"),
    ("SigninRiskPolicy", "Turn on sign-in risk policy", "Identity", 7, "Moderate",
     "Moderate", ["Account Breach"], "AzureAD"),
    ("UserRiskPolicy", "Turn on user risk policy", "Identity", 7, "Moderate", "Moderate",
     ["Account Breach", "Password Cracking"], "AzureAD"),
    ("mailboxAuditingEnabled", "Ensure mailbox auditing for all users is Enabled", "Apps", 5,
     "Low", "Low", ["Data Exfiltration"], "EXO"),
    ("CustomerLockBoxEnabled", "Turn on customer lockbox feature", "Data", 3, "Low",
     "Low", ["Data Exfiltration"], "EXO"),
    ("IntuneCompliancePolicy", "Create a compliance policy for devices", "Device", 5,
     "Moderate", "Moderate", ["Malware"], "Intune"),
]


def default_profiles() -> list[dict]:
    out = []
    for i, (cid, title, cat, mx, cost, impact, threats, service) in enumerate(DEFAULT_PROFILES):
        out.append({
            "id": cid, "azureTenantId": None, "title": title, "controlCategory": cat,
            "maxScore": float(mx), "implementationCost": cost, "userImpact": impact,
            "tier": "Core" if i < 5 else "Defense in Depth", "threats": threats,
            "remediation": f"<p>{title}.</p>", "remediationImpact": "Users are prompted.",
            "actionType": "Config", "service": service, "deprecated": False, "rank": i + 1,
            "actionUrl": "https://security.microsoft.com/securescore",
            "controlStateUpdates": [], "vendorInformation": {"provider": "SecureScore",
                                                             "vendor": "Microsoft"},
        })
    return out


def default_scores(tenant_id: str, days: int = 7) -> list[dict]:
    rng = random.Random(tenant_id)
    now = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    profiles = default_profiles()
    max_score = sum(p["maxScore"] for p in profiles)
    out = []
    for d in range(days):
        day = now - timedelta(days=d)
        controls = [{"controlCategory": p["controlCategory"], "controlName": p["id"],
                     "score": round(p["maxScore"] * rng.choice([0, 0.5, 1]), 2),
                     "description": p["title"]} for p in profiles]
        current = sum(c["score"] for c in controls)
        out.append({
            "id": f"{tenant_id}_{day.strftime('%Y-%m-%d')}", "azureTenantId": tenant_id,
            "activeUserCount": 8, "createdDateTime": iso7(day), "currentScore": current,
            "maxScore": max_score, "enabledServices": ["HasExchange", "HasAzureAD"],
            "licensedUserCount": 8,
            "averageComparativeScores": [{"basis": "AllTenants", "averageScore": 38.5}],
            "controlScores": controls,
            "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"},
        })
    return out


def _forbidden(ctx: Ctx) -> None:
    if ctx.config.get("secure_score_forbidden"):
        raise GraphError(403, "Authorization_RequestDenied",
                         "Insufficient privileges to complete the operation.")


@router.add("GET", "security/secureScores")
def list_scores(ctx: Ctx) -> EmuResponse:
    _forbidden(ctx)
    scores = ctx.tenant.secure_scores
    if scores is None:
        scores = default_scores(ctx.tenant.tenant_id)
    items = sorted(copy.deepcopy(scores), key=lambda s: s["createdDateTime"], reverse=True)
    return ctx.collection(items, "security/secureScores", page_key="secureScores",
                          filter_fields=["id", "createdDateTime", "azureTenantId"])


@router.add("GET", "security/secureScoreControlProfiles")
def list_profiles(ctx: Ctx) -> EmuResponse:
    _forbidden(ctx)
    profiles = ctx.tenant.secure_score_profiles
    if profiles is None:
        profiles = default_profiles()
    return ctx.collection(copy.deepcopy(profiles), "security/secureScoreControlProfiles",
                          page_key="secureScoreControlProfiles",
                          filter_fields=["id", "controlCategory", "service", "tier",
                                         "deprecated"])
