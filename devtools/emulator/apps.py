"""Apps in the emulated tenant: service principals, delegated permission grants (consents),
app role assignments of users, and eligible (PIM) directory role assignments.

Seed keys (all optional; `dump()` writes them back):

- `servicePrincipals`: [{id, appId, displayName, publisherName?, appRoles?}]. Microsoft
  Graph's own service principal is always there.
- `oauth2PermissionGrants`: [{id?, clientId, consentType, principalId, resourceId, scope}].
- `appRoleAssignments`: [{id?, principalId, principalType?, resourceId, appRoleId?,
  createdDateTime?}].
- `roleEligibilities`: [{principalId, roleDefinitionId (template id or role name),
  directoryScopeId?, startDateTime?, endDateTime?}].
- per user, `consents`: [{app (a service principal id or appId), scope, resource?,
  consentedDateTime, appRole? (default true), auditPending?}]: what a user's own consent
  leaves behind: a Principal grant, the user's assignment to the app (default role) and
  the directory audit events "Consent to application", "Add delegated permission grant"
  and "Add app role assignment grant to user" (Core Directory) at that time.

The audit events' shapes follow what Microsoft documents (activity names and categories:
https://learn.microsoft.com/entra/identity/enterprise-apps/app-perms-audit-logs); which
modified properties each carries is not documented, so the emulator puts the client's
object id in `ServicePrincipal.ObjectID` and `TargetId.ServicePrincipalNames` carries the
appId, as audit exports seen in detection content show.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from .tenant import ROLE_TEMPLATES, Tenant, stable_id
from .timefmt import iso7, parse_dt

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
DEFAULT_APP_ROLE = "00000000-0000-0000-0000-000000000000"
"""The default app role: the principal is assigned to the app without a specific role."""
_TEMPLATE_BY_NAME = {name.lower(): tmpl for tmpl, name in ROLE_TEMPLATES.items()}


def grant_id(client_id: str, principal_id: str | None, resource_id: str) -> str:
    """Grant ids are opaque base64url strings in Graph; derived here so seeds stay stable."""
    raw = hashlib.sha256(f"{client_id}/{principal_id}/{resource_id}".encode()).hexdigest()
    return "G" + raw[:43]


def assignment_id(principal_id: str, resource_id: str, app_role_id: str) -> str:
    raw = hashlib.sha256(f"{principal_id}/{resource_id}/{app_role_id}".encode()).hexdigest()
    return "A" + raw[:43]


def _graph_sp() -> dict[str, Any]:
    return {"id": stable_id("sp", GRAPH_APP_ID), "appId": GRAPH_APP_ID,
            "displayName": "Microsoft Graph", "publisherName": "Microsoft Services"}


def load(tenant: Tenant, seed: dict[str, Any]) -> None:
    """Fill the app state from a seed (after users are loaded: `consents` name users)."""
    tenant.service_principals = {}
    tenant.oauth2_grants = {}
    tenant.app_role_assignments = {}
    tenant.role_eligibilities = []
    for sp in [_graph_sp(), *(seed.get("servicePrincipals") or [])]:
        add_service_principal(tenant, sp)
    for g in seed.get("oauth2PermissionGrants") or []:
        add_grant(tenant, g)
    for a in seed.get("appRoleAssignments") or []:
        add_app_role_assignment(tenant, a)
    for e in seed.get("roleEligibilities") or []:
        add_eligibility(tenant, e)
    for user in tenant.users.values():
        for consent in user.pop("consents", None) or []:
            record_consent(tenant, user, consent)


def dump(tenant: Tenant) -> dict[str, Any]:
    graph_sp = _graph_sp()["id"]
    return {
        "servicePrincipals": [copy.deepcopy(sp) for sp in tenant.service_principals.values()
                              if sp["id"] != graph_sp],
        "oauth2PermissionGrants": copy.deepcopy(list(tenant.oauth2_grants.values())),
        "appRoleAssignments": copy.deepcopy(list(tenant.app_role_assignments.values())),
        "roleEligibilities": copy.deepcopy(tenant.role_eligibilities),
    }


def add_service_principal(tenant: Tenant, sp: dict[str, Any]) -> dict[str, Any]:
    sp = dict(sp)
    if not sp.get("appId"):
        raise ValueError(f"service principal without appId: {sp!r}")
    sp.setdefault("id", stable_id("sp", sp["appId"]))
    sp.setdefault("displayName", sp["appId"])
    sp.setdefault("publisherName", None)
    sp.setdefault("servicePrincipalType", "Application")
    sp.setdefault("accountEnabled", True)
    sp.setdefault("appRoles", [])
    tenant.service_principals[sp["id"]] = sp
    return sp


def find_service_principal(tenant: Tenant, key: str) -> dict[str, Any] | None:
    """By object id or appId."""
    low = str(key).lower()
    for sp in tenant.service_principals.values():
        if low in (sp["id"].lower(), sp["appId"].lower()):
            return sp
    return None


def add_grant(tenant: Tenant, g: dict[str, Any]) -> dict[str, Any]:
    g = {k: g.get(k) for k in ("id", "clientId", "consentType", "principalId", "resourceId",
                               "scope")}
    g["consentType"] = g["consentType"] or ("Principal" if g["principalId"] else "AllPrincipals")
    if g["consentType"] == "AllPrincipals":
        g["principalId"] = None
    g["resourceId"] = g["resourceId"] or _graph_sp()["id"]
    g["scope"] = g["scope"] or ""
    g["id"] = g["id"] or grant_id(g["clientId"], g["principalId"], g["resourceId"])
    tenant.oauth2_grants[g["id"]] = g
    return g


def add_app_role_assignment(tenant: Tenant, a: dict[str, Any]) -> dict[str, Any]:
    a = dict(a)
    principal = tenant.find_object(a["principalId"])
    kind, rec = principal if principal else ("servicePrincipal", {})
    resource = tenant.service_principals.get(a["resourceId"], {})
    a.setdefault("appRoleId", DEFAULT_APP_ROLE)
    a.setdefault("principalType", {"user": "User", "group": "Group"}.get(kind,
                                                                         "ServicePrincipal"))
    a.setdefault("principalDisplayName", rec.get("displayName"))
    a.setdefault("resourceDisplayName", resource.get("displayName"))
    a.setdefault("createdDateTime", iso7())
    a["createdDateTime"] = iso7(parse_dt(a["createdDateTime"])) if a["createdDateTime"] \
        else None
    a.setdefault("deletedDateTime", None)
    a.setdefault("id", assignment_id(a["principalId"], a["resourceId"], a["appRoleId"]))
    tenant.app_role_assignments[a["id"]] = a
    return a


def add_eligibility(tenant: Tenant, e: dict[str, Any]) -> dict[str, Any]:
    e = dict(e)
    role = str(e["roleDefinitionId"])
    e["roleDefinitionId"] = _TEMPLATE_BY_NAME.get(role.lower(), role)
    e.setdefault("directoryScopeId", "/")
    e.setdefault("appScopeId", None)
    e.setdefault("memberType", "Direct")
    e.setdefault("startDateTime", iso7())
    e.setdefault("endDateTime", None)
    e.setdefault("id", stable_id("eligibility", e["principalId"], e["roleDefinitionId"],
                                 e["directoryScopeId"]))
    e.setdefault("roleEligibilityScheduleId", stable_id("schedule", e["id"]))
    tenant.role_eligibilities.append(e)
    return e


def _prop(name: str, new: Any, old: Any = None) -> dict[str, Any]:
    return {"displayName": name, "oldValue": old, "newValue": new}


def record_consent(tenant: Tenant, user: dict[str, Any], consent: dict[str, Any]) -> None:
    """A user's own consent to an app: grant, default app role assignment, audit events."""
    client = find_service_principal(tenant, str(consent["app"]))
    if client is None:
        raise ValueError(f"consent of {user['userPrincipalName']}: unknown app "
                         f"{consent['app']!r} (add it to servicePrincipals)")
    resource = find_service_principal(tenant, str(consent.get("resource") or GRAPH_APP_ID))
    if resource is None:
        raise ValueError(f"consent: unknown resource {consent.get('resource')!r}")
    when = iso7(parse_dt(str(consent["consentedDateTime"])))
    scope = str(consent.get("scope") or "User.Read")
    grant = add_grant(tenant, {"clientId": client["id"], "consentType": "Principal",
                               "principalId": user["id"], "resourceId": resource["id"],
                               "scope": scope})
    pending = bool(consent.get("auditPending"))
    initiator = {"user": {"id": user["id"], "displayName": user.get("displayName"),
                          "userPrincipalName": user["userPrincipalName"],
                          "ipAddress": consent.get("ipAddress") or "198.51.100.23"},
                 "app": None}
    user_target = {"id": user["id"], "displayName": user.get("displayName"), "type": "User",
                   "userPrincipalName": user["userPrincipalName"], "groupType": None,
                   "modifiedProperties": []}
    events = [{
        "activityDisplayName": "Consent to application", "category": "ApplicationManagement",
        "operationType": "Assign", "targetResources": [{
            "id": client["id"], "displayName": client["displayName"],
            "type": "ServicePrincipal", "userPrincipalName": None, "groupType": None,
            "modifiedProperties": [
                _prop("ConsentContext.IsAdminConsent", '"False"'),
                _prop("ConsentContext.IsAppOnly", '"False"'),
                _prop("ConsentContext.OnBehalfOfAll", '"False"'),
                _prop("ConsentAction.Permissions",
                      f'"[[Id: {grant["id"]}, ClientId: {client["id"]}, PrincipalId: '
                      f'{user["id"]}, ResourceId: {resource["id"]}, ConsentType: Principal, '
                      f'Scope: {scope}]]"'),
                _prop("TargetId.ServicePrincipalNames", f'"{client["appId"]}"'),
            ]}],
        "additionalDetails": [{"key": "AppId", "value": client["appId"]}],
    }, {
        "activityDisplayName": "Add delegated permission grant",
        "category": "ApplicationManagement", "operationType": "Assign",
        "targetResources": [{
            "id": resource["id"], "displayName": resource["displayName"],
            "type": "ServicePrincipal", "userPrincipalName": None, "groupType": None,
            "modifiedProperties": [
                _prop("DelegatedPermissionGrant.Scope", f'"{scope}"'),
                _prop("DelegatedPermissionGrant.ConsentType", '"Principal"'),
                _prop("ServicePrincipal.ObjectID", f'"{client["id"]}"'),
            ]}],
        "additionalDetails": [],
    }]
    if consent.get("appRole", True):
        assignment = add_app_role_assignment(tenant, {
            "principalId": user["id"], "resourceId": client["id"],
            "appRoleId": DEFAULT_APP_ROLE, "createdDateTime": when})
        events.append({
            "activityDisplayName": "Add app role assignment grant to user",
            "category": "UserManagement", "operationType": "Assign",
            "targetResources": [{
                "id": client["id"], "displayName": client["displayName"],
                "type": "ServicePrincipal", "userPrincipalName": None, "groupType": None,
                "modifiedProperties": [
                    _prop("AppRole.Id", f'"{DEFAULT_APP_ROLE}"'),
                    _prop("AppRoleAssignment.CreatedDateTime", f'"{when}"'),
                    _prop("User.ObjectID", f'"{user["id"]}"'),
                    _prop("User.UPN", f'"{user["userPrincipalName"]}"'),
                    _prop("AppRoleAssignment.Id", f'"{assignment["id"]}"'),
                ]}, user_target],
            "additionalDetails": [],
        })
    for ev in events:
        tenant.add_audit_event({**ev, "activityDateTime": when, "loggedByService":
                                "Core Directory", "initiatedBy": initiator,
                                "result": "success", "resultReason": ""},
                               visible_after=float("inf") if pending else None)
