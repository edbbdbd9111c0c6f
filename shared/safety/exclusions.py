"""Who is never touched: the policy's excluded accounts and the members of its excluded
groups (break-glass accounts). One place, used by the runner, intake and the sweeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.permissions import declare
from shared.tenant.graph import directory

if TYPE_CHECKING:
    from shared.services import Services

declare("exclusions", graph=(directory.PERM_USER_READ, directory.PERM_MEMBER_READ),
        why="resolve the user and check the policy's excluded (break-glass) groups before any "
            "run, intake or sweep acts")

LISTED = "excluded account (policy exclusions.users): never touched"


async def group_reason(services: Services, user: str) -> str | None:
    """Why `user` (object id or UPN) is excluded through a group, or None. May raise."""
    groups = list(services.policy.exclusions.groups)
    if not groups or not user:
        return None
    hits = await directory.check_member_groups(services.graph, user, groups)
    return f"member of excluded group(s) {sorted(hits)}: never touched" if hits else None


async def exclusion_reason(services: Services, *identifiers: str | None,
                           user_id: str | None = None) -> str | None:
    """Why this account is never touched, or None. Listed ids/UPNs first (no call), then
    the excluded groups (one Graph call) when the object id is known."""
    if services.policy.excluded_user(*identifiers, user_id):
        return LISTED
    return await group_reason(services, user_id) if user_id else None
