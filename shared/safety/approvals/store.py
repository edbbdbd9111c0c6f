"""Approval rows: one per run, in the journal table, written only through the journal's
conditional-row API.

A decision moves the row out of `pending` with an ETag-conditional merge, so of two uses of
the same links (a second click, a concurrent double click) exactly one succeeds: that is
what makes a token single-use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.safety.approvals.tokens import DECISIONS
from shared.state import partitions

if TYPE_CHECKING:
    from shared.services import Services

PARTITION = partitions.APPROVALS
REFUSALS = partitions.APPROVAL_REFUSALS
"""Where earlier versions journaled refused links; refusals are now logged and counted
(decisions.refusal_counts), never stored. Kept so existing rows can still be read."""


@dataclass
class Approval:
    """One pending (or decided) approval: one per run."""

    run_id: str
    state: str
    user: str
    upn: str
    user_id: str
    steps: list[str]
    roles: list[str]
    created_at: datetime
    expires_at: datetime
    decided_by: str = ""
    by_trust: str = ""
    decided_at: datetime | None = None
    nonce_digests: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    tenant: str = ""
    """The tenant the run acts for, as its request named it ("" for the default tenant):
    the resume message names it, so the run resumes in that tenant."""

    @classmethod
    def from_row(cls, e: dict[str, Any], etag: str | None) -> Approval:
        return cls(
            run_id=e["runId"], state=e["state"], user=e.get("user", ""), upn=e.get("upn", ""),
            user_id=e.get("userId", ""), steps=json.loads(e.get("steps") or "[]"),
            roles=json.loads(e.get("roles") or "[]"), created_at=e["createdAt"],
            expires_at=e["expiresAt"], decided_by=e.get("decidedBy", ""),
            by_trust=e.get("byTrust", ""), decided_at=e.get("decidedAt"),
            nonce_digests={d: e.get(f"{d}Nonce", "") for d in DECISIONS},
            etag=etag, tenant=e.get("tenant", ""),
        )

    def public(self) -> dict[str, Any]:
        """What reports show (no nonce digests)."""
        return {"runId": self.run_id, "state": self.state, "steps": self.steps,
                "roles": self.roles, "createdAt": self.created_at.isoformat(),
                "expiresAt": self.expires_at.isoformat(), "decidedBy": self.decided_by,
                "byTrust": self.by_trust,
                "decidedAt": self.decided_at.isoformat() if self.decided_at else None}


async def get_approval(services: Services, run_id: str) -> Approval | None:
    """The run's approval with the ETag a later decision is conditioned on; None if none."""
    row = await services.journal.read_row(PARTITION, run_id)
    return Approval.from_row(row.values, row.etag) if row is not None else None


async def create(services: Services, run_id: str, values: dict[str, Any]) -> bool:
    """Record a new approval; False when the run has one already (a concurrent delivery)."""
    return await services.journal.create_row(PARTITION, run_id, values) is not None


async def transition(services: Services, approval: Approval, state: str, *, decided_by: str,
                     by_trust: str, when: datetime) -> Approval | None:
    """pending -> state, only if nobody changed the row since it was read (ETag)."""
    patch = {"state": state, "decidedBy": decided_by, "byTrust": by_trust, "decidedAt": when}
    written = await services.journal.write_row_if(PARTITION, approval.run_id, patch,
                                                  approval.etag, merge=True)
    if written is None:
        return None
    approval.state, approval.decided_by, approval.by_trust = state, decided_by, by_trust
    approval.decided_at = when
    return approval


async def rows(services: Services) -> list[dict[str, Any]]:
    """Every approval row (the expiry timer scans them)."""
    return await services.journal.items(PARTITION)
