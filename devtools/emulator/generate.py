"""Synthetic big tenants for benchmarks and sweep tests: many clean mailboxes plus a
known handful of offenders, listed under the seed's `offenders` key so tests know the
right answer."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .timefmt import iso7

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
CA_GROUP_ID = "5f0c8a3e-2b7d-4c41-9e55-0a1b2c3d4e5f"
BREAKGLASS_GROUP_ID = "6a1d9b4f-3c8e-4d52-8f66-1b2c3d4e5f60"

DEFAULT_OFFENDERS = {
    "audit_disabled": 5,       # mailbox auditEnabled false
    "audit_bypass": 3,         # auditBypassEnabled true
    "forwarding": 4,           # forwardingSmtpAddress to an external address
    "forwarding_rules": 3,     # inbox rule forwarding externally on invoice/payment
    "hidden_rules": 2,         # a hidden rule only Exchange shows
    "risky_high": 10,          # riskyUsers high/atRisk, each with a recent detection
    "blocked_senders": 2,      # on the restricted senders list
    # opt-in (0 by default, so existing tenants stay the same): a guest given Full Access to
    # the mailbox an hour before `now`, and an ActiveSync phone first synced then
    "external_delegates": 0,
    "new_phones": 0,
    # opt-in: the user consented an attacker's app to their mail an hour before `now`
    # (a grant, the app role assignment and the audit events; devtools/emulator/apps.py)
    "malicious_consents": 0,
}
ATTACKER_APP = {"id": "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a",
                "appId": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
                "displayName": "Mail Sync Helper", "publisherName": "mailsync-helper.example"}


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_tenant(n_users: int, *, offenders: dict[str, int] | None = None, seed: int = 0,
                domain: str = "contoso.com", now: datetime | None = None) -> dict[str, Any]:
    """Build a seed dict with n_users mailbox users; offender counts default to a handful.

    The result has an extra `offenders` key mapping each offender kind to the UPNs that
    have it (the loader ignores it)."""
    rng = random.Random(seed)
    counts = {**DEFAULT_OFFENDERS, **(offenders or {})}
    now = now or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    tenant_id = _guid(rng)
    users: list[dict[str, Any]] = []
    breakglass_id = _guid(rng)
    users.append({
        "id": breakglass_id, "userPrincipalName": f"breakglass@{domain.split('.')[0]}"
        ".onmicrosoft.com", "displayName": "Break Glass", "directoryRoles": [GLOBAL_ADMIN],
        "memberOf": [BREAKGLASS_GROUP_ID], "mailbox": None,
        "authMethods": [{"type": "password"}, {"type": "fido2",
                                                "createdDateTime": "2025-01-10T09:00:00Z"}],
    })
    for i in range(n_users):
        uid = _guid(rng)
        upn = f"user{i:05d}@{domain}"
        users.append({
            "id": uid, "userPrincipalName": upn, "displayName": f"User {i:05d}",
            "authMethods": [
                {"type": "password"},
                {"type": "microsoftAuthenticator",
                 "createdDateTime": iso7(now - timedelta(days=200 + i % 300)),
                 "displayName": f"Phone {i}"},
            ],
            "mailbox": {"auditEnabled": True, "rules": []},
        })
    regular = users[1:]
    picked: dict[str, list[str]] = {}
    guests: list[dict[str, Any]] = []
    for kind, n in counts.items():
        sample = rng.sample(regular, min(n, len(regular))) if n else []
        picked[kind] = [u["userPrincipalName"] for u in sample]
        for u in sample:
            mb = u["mailbox"]
            if kind == "audit_disabled":
                mb["auditEnabled"] = False
            elif kind == "audit_bypass":
                mb["auditBypassEnabled"] = True
            elif kind == "forwarding":
                mb["forwardingSmtpAddress"] = f"drop{rng.randrange(10**6)}@mailbox-relay.example"
                mb["deliverToMailboxAndForward"] = False
            elif kind == "forwarding_rules":
                mb["rules"].append({
                    "displayName": "..", "sequence": 1, "isEnabled": True,
                    "conditions": {"subjectContains": ["invoice", "payment"]},
                    "actions": {"forwardTo": ["collector@mail-archive.example"],
                                "stopProcessingRules": True},
                })
            elif kind == "external_delegates":
                n_guest = len(guests)
                guest_upn = f"ext{n_guest}_mail-relay.example#EXT#@{domain.split('.')[0]}" \
                    ".onmicrosoft.com"
                guests.append({"id": _guid(rng), "userPrincipalName": guest_upn,
                               "displayName": f"External {n_guest}",
                               "mail": f"ext{n_guest}@mail-relay.example",
                               "userType": "Guest", "mailbox": None,
                               "authMethods": [{"type": "password"}]})
                mb.setdefault("permissions", []).append({
                    "user": guest_upn, "accessRights": ["FullAccess"],
                    "addedDateTime": iso7(now - timedelta(hours=1))})
            elif kind == "malicious_consents":
                u.setdefault("consents", []).append({
                    "app": ATTACKER_APP["appId"], "scope": "Mail.ReadWrite offline_access",
                    "consentedDateTime": iso7(now - timedelta(hours=1))})
            elif kind == "new_phones":
                mb.setdefault("mobileDevices", []).append({
                    "deviceId": f"NEW{rng.getrandbits(60):015X}", "deviceType": "Android",
                    "deviceModel": "SM-A546B", "firstSyncTime": iso7(now - timedelta(hours=1))})
            elif kind == "hidden_rules":
                mb["rules"].append({
                    "displayName": "", "sequence": 2, "isEnabled": True, "hidden": True,
                    "conditions": {}, "actions": {"moveToFolder": "rssfeeds",
                                                  "markAsRead": True},
                })
    risky, detections = [], []
    for j, upn in enumerate(picked.get("risky_high", [])):
        u = next(x for x in regular if x["userPrincipalName"] == upn)
        when = now - timedelta(minutes=5 * (j + 1))
        risky.append({"id": u["id"], "riskLevel": "high", "riskState": "atRisk",
                      "riskDetail": "none", "riskLastUpdatedDateTime": iso7(when)})
        detections.append({"userId": u["id"], "riskEventType": rng.choice(
            ["unfamiliarFeatures", "anonymizedIPAddress", "passwordSpray"]),
            "riskLevel": "high", "detectedDateTime": iso7(when),
            "ipAddress": f"203.0.113.{rng.randrange(1, 254)}"})
    blocked = [{"SenderAddress": upn, "Reason": "OutboundSpamLimitExceeded",
                "CreatedDatetime": iso7(now - timedelta(hours=3))}
               for upn in picked.get("blocked_senders", [])]
    return {
        "tenantId": tenant_id,
        "displayName": "Contoso (synthetic)",
        "domains": [{"id": domain, "authenticationType": "Managed"},
                    {"id": f"{domain.split('.')[0]}.onmicrosoft.com",
                     "authenticationType": "Managed"}],
        "groups": [
            {"id": CA_GROUP_ID, "displayName": "CA-Require-MFA-Compromised"},
            {"id": BREAKGLASS_GROUP_ID, "displayName": "Excluded-BreakGlass"},
        ],
        "servicePrincipals": [ATTACKER_APP] if picked.get("malicious_consents") else [],
        "users": users + guests,
        "riskyUsers": risky,
        "riskDetections": detections,
        "organization": {"auditDisabled": False},
        "blockedSenders": blocked,
        "offenders": picked,
    }
