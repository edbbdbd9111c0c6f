"""Identity Protection reads aggregated across a process's concurrent runs.

A storm of runs each reads one user's risk state and detections; here those reads wait
briefly and share one request of up to `IDS_PER_READ` ids, paced by the same gate as
confirmCompromised (one Identity Protection request per second per tenant for all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.tenant.graph import identity_protection
from shared.tenant.graph.client import GraphClient
from shared.tenant.pacing import Aggregator, IntervalGate

READ_WINDOW = 0.2
"""Seconds a risk read waits for other runs' reads to share its call."""


@dataclass
class IdentityReads:
    """The aggregated risky-user and detection readers of one process."""

    risky: Aggregator
    detections: Aggregator

    @classmethod
    def create(cls, graph: GraphClient, gate: IntervalGate) -> IdentityReads:
        """Readers over `graph` (reads only: safe in a dry run too), paced by `gate`."""

        async def risky(ids: Any) -> Any:
            return await identity_protection.risky_users_by_id(graph, list(ids))

        async def detections(ids: Any) -> Any:
            return await identity_protection.detections_by_user(graph, list(ids))

        return cls(
            Aggregator(risky, window=READ_WINDOW, max_ids=identity_protection.IDS_PER_READ,
                       gate=gate),
            Aggregator(detections, window=READ_WINDOW,
                       max_ids=identity_protection.IDS_PER_READ, gate=gate))
