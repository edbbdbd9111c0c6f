"""Directory role assignments (unified RBAC): who holds which Entra role, and removing or
restoring one.

- Active assignments: `GET /roleManagement/directory/roleAssignments?$filter=principalId eq
  '{id}'&$expand=roleDefinition`; RoleManagement.Read.Directory is the least privileged
  application permission. For built-in roles the roleDefinitionId is the role template id.
  Direct assignments only: a role held through a role-assignable group is the group's
  assignment.
  https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments
  https://learn.microsoft.com/graph/api/resources/unifiedroleassignment
- Remove: `DELETE /roleManagement/directory/roleAssignments/{id}`, 204; application
  permission RoleManagement.ReadWrite.Directory (no smaller one is listed).
  https://learn.microsoft.com/graph/api/unifiedroleassignment-delete
- Restore: `POST /roleManagement/directory/roleAssignments` with principalId,
  roleDefinitionId and directoryScopeId; RoleManagement.ReadWrite.Directory.
  https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments
- Eligible (PIM) assignments: `GET /roleManagement/directory/roleEligibilityScheduleInstances`
  ("the instances of role eligibilities": what the principal may activate now, where
  roleEligibilitySchedules are the schedules behind them). Least privileged:
  RoleEligibilitySchedule.Read.Directory; RoleManagement.Read.Directory is listed as higher
  and is what the responder already holds, so no further permission is asked for.
  https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityscheduleinstances
  https://learn.microsoft.com/graph/api/resources/unifiedroleeligibilityscheduleinstance
"""

from __future__ import annotations

from typing import Any

from shared.tenant.graph.client import GraphClient, build_path
from shared.tenant.graph.directory import PERM_ROLE_READ
from shared.tenant.graph.odata import eq

PERM_ROLE_WRITE = "RoleManagement.ReadWrite.Directory"
ASSIGNMENTS = "/roleManagement/directory/roleAssignments"
ELIGIBILITY_INSTANCES = "/roleManagement/directory/roleEligibilityScheduleInstances"


async def role_assignments(graph: GraphClient, principal_id: str) -> list[dict[str, Any]]:
    """The principal's active directory role assignments, each with its roleDefinition."""
    return await graph.list_all(ASSIGNMENTS,
                                params={"$filter": eq("principalId", principal_id),
                                        "$expand": "roleDefinition"},
                                permission=PERM_ROLE_READ)


async def eligible_assignments(graph: GraphClient, principal_id: str) -> list[dict[str, Any]]:
    """The principal's eligible (PIM) role assignments, current instances."""
    return await graph.list_all(ELIGIBILITY_INSTANCES,
                                params={"$filter": eq("principalId", principal_id),
                                        "$expand": "roleDefinition"},
                                permission=PERM_ROLE_READ)


async def delete_role_assignment(graph: GraphClient, assignment_id: str) -> None:
    await graph.request("DELETE", build_path(ASSIGNMENTS + "/{}", assignment_id),
                        priority=True, permission=PERM_ROLE_WRITE)


async def create_role_assignment(graph: GraphClient, principal_id: str,
                                 role_definition_id: str,
                                 directory_scope_id: str = "/") -> dict[str, Any]:
    body = {"@odata.type": "#microsoft.graph.unifiedRoleAssignment",
            "principalId": principal_id, "roleDefinitionId": role_definition_id,
            "directoryScopeId": directory_scope_id or "/"}
    created = await graph.request("POST", ASSIGNMENTS, body=body, permission=PERM_ROLE_WRITE)
    return dict(created or {})


def role_name(row: dict[str, Any]) -> str:
    """The role's display name from an expanded roleDefinition, else its definition id."""
    definition = row.get("roleDefinition") or {}
    return str(definition.get("displayName") or row.get("roleDefinitionId") or "?")
