"""The storm's world: a tenant where every flagged user looks compromised, Graph-like limits
and latency for the emulator, the policy, and the alert payloads that start it all.

Every number here is printed with the results and restated in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.emulator import make_tenant
from devtools.emulator.generate import DEFAULT_OFFENDERS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TOKEN = "bench-emulator-token"  # noqa: S105 - the loopback emulator's fixed test token

GRAPH_LATENCY_MS = 30
"""Per Graph call ("tens of milliseconds")."""
EXCHANGE_LATENCY_MS = 250
"""Per Exchange admin REST call ("a few hundred milliseconds")."""
IDENTITY_PROTECTION_RPS = 1.0
"""Documented: 1 request per second per tenant, 429 without Retry-After."""
DIRECTORY_WRITE_CAPACITY = 3000
DIRECTORY_WRITE_REFILL = 3000 / 150
"""Documented: 3,000 writes per 2.5 minutes per app and tenant -> a bucket of 3,000 that
refills at 20 per second (not scaled down)."""
MAILBOX_CONCURRENCY = 4
"""Documented Outlook MailboxConcurrency: 4 concurrent requests per mailbox."""
EXCHANGE_RPS = 40.0
EXCHANGE_BURST = 40.0
"""ASSUMPTION: Microsoft documents no rate for the Exchange admin REST endpoint (InvokeCommand);
we assume a tenant-wide token bucket of 40 requests per second, burst 40."""
CONFIRM_IDS_PER_CALL = 60
"""User ids per confirmCompromised call (the runner's aggregator; the emulator accepts 100)."""


def emulator_config(*, faults: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "latency_ms": {"default": GRAPH_LATENCY_MS, "exchange": EXCHANGE_LATENCY_MS},
        "throttle": {
            "identity_protection": {"rps": IDENTITY_PROTECTION_RPS},
            "directory_write": {"capacity": DIRECTORY_WRITE_CAPACITY,
                                "refill_per_sec": DIRECTORY_WRITE_REFILL},
            "mailbox": {"concurrency": MAILBOX_CONCURRENCY},
            "exchange": {"rps": EXCHANGE_RPS, "burst": EXCHANGE_BURST},
        },
        **({"faults": faults} if faults else {}),
    }


def storm_policy() -> dict[str, Any]:
    """The demo policy (devtools/demo-policy.json): full containment for high risk, the CA
    group and per-user MFA, automatic unblock, a SOC mailbox summary; break-glass excluded."""
    return json.loads((ROOT / "devtools" / "demo-policy.json").read_text(encoding="utf-8"))


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def storm_tenant(n: int, *, seed: int = 7, detected_at: datetime) -> dict[str, Any]:
    """`make_tenant(n)` with every user an offender: a malicious forwarding rule, mailbox
    forwarding, auditing off, risky (high, at risk), plus an MFA method the attacker
    registered a minute after the detection."""
    offenders = dict.fromkeys(DEFAULT_OFFENDERS, 0)
    offenders.update(forwarding=n, forwarding_rules=n, audit_disabled=n, risky_high=n)
    tenant = make_tenant(n, offenders=offenders, seed=seed,
                         now=detected_at + timedelta(minutes=5))
    attacker_at = iso(detected_at + timedelta(minutes=1))
    for user in tenant["users"]:
        if user["userPrincipalName"].startswith("user"):
            user["authMethods"].append({"type": "microsoftAuthenticator",
                                        "displayName": "Pixel 7 (attacker)",
                                        "createdDateTime": attacker_at})
    for upn, name in (("responder@contoso.com", "Responder"), ("soc@contoso.com", "SOC")):
        tenant["users"].append({"id": str(uuid.uuid5(uuid.NAMESPACE_URL, upn)),
                                "userPrincipalName": upn, "displayName": name,
                                "mailbox": {"auditEnabled": True, "rules": []}})
    return tenant


def storm_users(tenant: dict[str, Any]) -> list[dict[str, Any]]:
    return [u for u in tenant["users"] if u["userPrincipalName"].startswith("user")]


def detections(users: list[dict[str, Any]], detected_at: datetime) -> list[dict[str, Any]]:
    """One high-risk riskDetection per user, as Graph (or a Sentinel playbook) sends them."""
    return [{
        "id": uuid.uuid5(uuid.NAMESPACE_URL, f"storm/{u['id']}").hex,
        "userId": u["id"], "userPrincipalName": u["userPrincipalName"],
        "userDisplayName": u["displayName"], "riskLevel": "high", "riskState": "atRisk",
        "riskEventType": "passwordSpray", "riskDetail": "none", "source": "IdentityProtection",
        "detectionTimingType": "realtime", "activity": "signin",
        "ipAddress": "203.0.113.77", "detectedDateTime": iso(detected_at),
    } for u in users]


def storm_env(storage: str, base_url: str, tag: str) -> dict[str, str]:
    """App settings for one benchmark phase: fresh queue, table and container names."""
    return {
        "AzureWebJobsStorage": storage,
        "RESPONDER_TENANT_ID": "contoso.onmicrosoft.com",
        "GRAPH_BASE_URL": base_url,
        "EXCHANGE_BASE_URL": base_url,
        "RESPONDER_CREDENTIAL": "static-token",
        "RESPONDER_STATIC_TOKEN": TOKEN,
        "REMEDIATION_QUEUE": f"bench-{tag}",
        "RESPONDER_JOURNAL_TABLE": f"bench{tag.replace('-', '')}",
        "RESPONDER_EVIDENCE_CONTAINER": f"bench-{tag}",
    }


def storm_limit_seconds(n: int) -> float:
    """How long a storm may run before what is unfinished counts as not finished: 900 s, or
    1.8 s per request when that is more (N = 1000 on 2 shared cores needs over 900 s)."""
    return max(900.0, 1.8 * n)
