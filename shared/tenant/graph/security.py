"""Microsoft Secure Score: the daily scores and the control profiles (what each control is,
which threats it counters, how much it is worth). Read-only; needs SecurityEvents.Read.All,
and a tenant without the data answers 403."""

from __future__ import annotations

from typing import Any

from shared.tenant.graph.client import GraphClient

PERM_SECURITY_READ = "SecurityEvents.Read.All"


async def secure_scores(graph: GraphClient, days: int) -> list[dict[str, Any]]:
    """The latest `days` daily scores, newest first (one page: `$top` is the day count)."""
    body = await graph.request("GET", "/security/secureScores", params={"$top": str(days)},
                               permission=PERM_SECURITY_READ)
    items = list((body or {}).get("value") or [])
    return sorted(items, key=lambda s: str(s.get("createdDateTime") or ""), reverse=True)


async def control_profiles(graph: GraphClient) -> list[dict[str, Any]]:
    """Every Secure Score control profile, all pages."""
    return await graph.list_all("/security/secureScoreControlProfiles",
                                permission=PERM_SECURITY_READ)
