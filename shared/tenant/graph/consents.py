"""App consents a user gave: delegated permission grants, app role assignments, and the
directory audit events that date them.

- Delegated permission grants: `GET /oauth2PermissionGrants?$filter=principalId eq '{id}'`.
  `principalId` and `clientId` support `$filter` (eq); `clientId` is the *object id* of the
  client service principal, not its appId. Application permission: Directory.Read.All
  (least), DelegatedPermissionGrant.ReadWrite.All higher.
  https://learn.microsoft.com/graph/api/oauth2permissiongrant-list
  https://learn.microsoft.com/graph/api/resources/oauth2permissiongrant
  `GET /users/{id}/oauth2PermissionGrants` is NOT supported with application permissions
  (https://learn.microsoft.com/graph/api/user-list-oauth2permissiongrants), so the
  tenant-wide list with a filter is used.
- Revoke: `DELETE /oauth2PermissionGrants/{id}`, 204; DelegatedPermissionGrant.ReadWrite.All
  (https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete). Existing access
  tokens stay valid for their lifetime; new ones are not issued for the grant.
- Re-create (release): `POST /oauth2PermissionGrants` with clientId, consentType,
  principalId, resourceId, scope; DelegatedPermissionGrant.ReadWrite.All
  (https://learn.microsoft.com/graph/api/oauth2permissiongrant-post).
- App role assignments of a user: `GET /users/{id}/appRoleAssignments` (Directory.Read.All
  least, AppRoleAssignment.ReadWrite.All higher). It "also returns app role assignments
  granted to groups that the user is a direct member of": only rows whose principalId is
  the user are the user's own. `createdDateTime` dates each row.
  https://learn.microsoft.com/graph/api/user-list-approleassignments
  https://learn.microsoft.com/graph/api/resources/approleassignment
  Delete: `DELETE /users/{id}/appRoleAssignments/{id}`, create: `POST
  /users/{id}/appRoleAssignments` (principalId, resourceId, appRoleId); both
  AppRoleAssignment.ReadWrite.All.
  https://learn.microsoft.com/graph/api/user-delete-approleassignments
  https://learn.microsoft.com/graph/api/user-post-approleassignments
- Service principals (the app behind a clientId/resourceId): `GET /servicePrincipals/{id}`,
  Application.Read.All.
- Consent events: Core Directory, category ApplicationManagement, activities "Consent to
  application" and "Add delegated permission grant"
  (https://learn.microsoft.com/entra/identity/enterprise-apps/app-perms-audit-logs,
  https://learn.microsoft.com/entra/identity/monitoring-health/reference-audit-activities).
  The user who consented is the event's `initiatedBy.user`; the app is a target of type
  ServicePrincipal. Which target and which `modifiedProperties` carry the client's id is not
  documented per activity, so an event is matched to a grant leniently: the client's object
  id as a target or anywhere in the modified properties. "Add app role assignment grant to
  user" is the name detection content uses for a user's app role assignment; Microsoft's
  activity table lists only its removal ("Remove app role assignment from user").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import NotFound
from shared.tenant.graph.audit_log import PERM_AUDIT_DIRECTORY_READ, PERM_AUDIT_READ
from shared.tenant.graph.client import GraphClient, build_path
from shared.tenant.graph.odata import eq, quote_literal

PERM_DIRECTORY_READ = "Directory.Read.All"
PERM_GRANTS_WRITE = "DelegatedPermissionGrant.ReadWrite.All"
PERM_APP_ROLE_WRITE = "AppRoleAssignment.ReadWrite.All"
PERM_SP_READ = "Application.Read.All"

GRANT_ACTIVITIES = ("Consent to application", "Add delegated permission grant")
"""Directory audit activities that date a user's delegated permission grant."""
APP_ROLE_ACTIVITIES = ("Add app role assignment grant to user",)
"""The activity that dates a user's app role assignment (when createdDateTime is empty)."""
GRANT_FIELDS = ("id", "clientId", "consentType", "principalId", "resourceId", "scope")
ASSIGNMENT_FIELDS = ("id", "principalId", "principalType", "principalDisplayName",
                     "resourceId", "resourceDisplayName", "appRoleId", "createdDateTime")


async def user_grants(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    """The delegated permission grants the user gave for themself (consentType Principal)."""
    rows = await graph.list_all("/oauth2PermissionGrants",
                                params={"$filter": eq("principalId", user_id)},
                                permission=PERM_DIRECTORY_READ)
    return [{k: r.get(k) for k in GRANT_FIELDS} for r in rows
            if str(r.get("consentType") or "").lower() == "principal"
            and str(r.get("principalId") or "").lower() == user_id.lower()]


async def user_app_role_assignments(graph: GraphClient,
                                    user_id: str) -> list[dict[str, Any]]:
    """Every app role assignment the list returns for the user (their own and their
    groups'); callers tell them apart by principalId."""
    rows = await graph.list_all(build_path("/users/{}/appRoleAssignments", user_id),
                                permission=PERM_DIRECTORY_READ)
    return [{k: r.get(k) for k in ASSIGNMENT_FIELDS} for r in rows]


async def service_principal(graph: GraphClient, sp_id: str) -> dict[str, Any] | None:
    """appId and names of a service principal by object id; None when it no longer exists."""
    try:
        sp = await graph.request("GET", build_path("/servicePrincipals/{}", sp_id),
                                 params={"$select": "id,appId,displayName,publisherName"},
                                 permission=PERM_SP_READ)
    except NotFound:
        return None
    return dict(sp or {})


async def delete_grant(graph: GraphClient, grant_id: str) -> None:
    await graph.request("DELETE", build_path("/oauth2PermissionGrants/{}", grant_id),
                        priority=True, permission=PERM_GRANTS_WRITE)


async def create_grant(graph: GraphClient, grant: dict[str, Any]) -> dict[str, Any]:
    """Re-create a user's delegated grant (same client, resource and scope)."""
    body = {"clientId": grant["clientId"], "consentType": "Principal",
            "principalId": grant["principalId"], "resourceId": grant["resourceId"],
            "scope": grant.get("scope") or ""}
    created = await graph.request("POST", "/oauth2PermissionGrants", body=body,
                                  permission=PERM_GRANTS_WRITE)
    return dict(created or {})


async def delete_app_role_assignment(graph: GraphClient, user_id: str,
                                     assignment_id: str) -> None:
    await graph.request("DELETE", build_path("/users/{}/appRoleAssignments/{}", user_id,
                                             assignment_id),
                        priority=True, permission=PERM_APP_ROLE_WRITE)


async def create_app_role_assignment(graph: GraphClient, user_id: str,
                                     assignment: dict[str, Any]) -> dict[str, Any]:
    body = {"principalId": user_id, "resourceId": assignment["resourceId"],
            "appRoleId": assignment.get("appRoleId") or "00000000-0000-0000-0000-000000000000"}
    created = await graph.request("POST", build_path("/users/{}/appRoleAssignments", user_id),
                                  body=body, permission=PERM_APP_ROLE_WRITE)
    return dict(created or {})


def _literal(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def consent_events(graph: GraphClient, since: datetime,
                         activities: tuple[str, ...]) -> list[dict[str, Any]]:
    """Directory audit events of these activities since `since`, oldest first.

    One query per activity: `activityDisplayName` and `activityDateTime` are documented
    filterable (eq and ge), which keeps each answer to consent events only, where a filter
    on `loggedByService eq 'Core Directory'` would page through every directory change."""
    rows: list[dict[str, Any]] = []
    for name in activities:
        query = {"$filter": f"activityDateTime ge {_literal(since)} and "
                            f"activityDisplayName eq {quote_literal(name)}"}
        rows += await graph.list_all("/auditLogs/directoryAudits", params=query,
                                     permission=f"{PERM_AUDIT_READ} and "
                                                f"{PERM_AUDIT_DIRECTORY_READ}")
    ok = [r for r in rows if str(r.get("result") or "success").lower() == "success"]
    return sorted(ok, key=lambda r: str(r.get("activityDateTime") or ""))


def _ids_in(value: Any) -> str:
    return str(value or "").lower()


def involves_user(event: dict[str, Any], user_id: str) -> bool:
    """The user initiated the event (a user's own consent) or is one of its targets."""
    uid = user_id.lower()
    initiator = ((event.get("initiatedBy") or {}).get("user") or {})
    if _ids_in(initiator.get("id")) == uid:
        return True
    return any(_ids_in((t or {}).get("id")) == uid for t in event.get("targetResources") or [])


def names_object(event: dict[str, Any], object_id: str) -> bool:
    """The object (a service principal's object id) is a target of the event or appears in
    a target's modified properties."""
    oid = object_id.lower()
    for target in event.get("targetResources") or []:
        if not isinstance(target, dict):
            continue
        if _ids_in(target.get("id")) == oid:
            return True
        for prop in target.get("modifiedProperties") or []:
            if isinstance(prop, dict) and oid in _ids_in(prop.get("newValue")):
                return True
    return False
