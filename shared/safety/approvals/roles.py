"""Who is privileged: a user holding a directory role whose template the policy names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import ServiceError
from shared.permissions import declare
from shared.tenant.graph import directory
from shared.tenant.graph.directory import PERM_ROLE_READ, PERM_USER_READ

if TYPE_CHECKING:
    from shared.services import Services

declare("approvals", graph=(PERM_USER_READ, PERM_ROLE_READ),
        why="find privileged users: directory roles (with roleTemplateId) in the user's "
            "transitiveMemberOf; without RoleManagement.Read.Directory roles come back "
            "without their template and every role holder counts as privileged")


async def privileged_roles(services: Services, user_id: str) -> list[str]:
    """Names of the privileged directory roles the user holds (transitively); [] if none.

    Retryable errors propagate; a permanent error counts as privileged (fail safe).
    """
    wanted = {t.lower() for t in services.policy.privileged.role_template_ids}
    try:
        objects = await directory.member_of(services.graph, user_id)
    except ServiceError as exc:
        if exc.retryable:
            raise
        return [f"unknown (memberships could not be read: {exc.code or exc.status})"]
    found: list[str] = []
    for obj in objects:
        if not str(obj.get("@odata.type", "")).endswith("directoryRole"):
            continue
        template = str(obj.get("roleTemplateId") or "").lower()
        if not template:
            found.append(f"directory role {obj.get('id')} (template not readable)")
        elif template in wanted:
            found.append(str(obj.get("displayName") or template))
    return found
