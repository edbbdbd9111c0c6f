"""Graph routes for app consents: delegated permission grants (oauth2PermissionGrants) and
users' app role assignments. State in apps.py.

- `GET /oauth2PermissionGrants`: $filter (eq) on clientId, consentType, principalId and
  resourceId; `GET/DELETE /oauth2PermissionGrants/{id}`; `POST /oauth2PermissionGrants`
  (201 with the grant). https://learn.microsoft.com/graph/api/oauth2permissiongrant-list,
  -get, -delete, -post. A second grant for the same client, API, consent type and user is
  refused (409); the docs give no error body for it, Graph's conflict shape is used.
- `GET /users/{id}/oauth2PermissionGrants`: the user's own grants; application permissions
  are not supported for it (authz.py refuses every app-only token).
  https://learn.microsoft.com/graph/api/user-list-oauth2permissiongrants
- `GET/POST /users/{id}/appRoleAssignments`, `DELETE /users/{id}/appRoleAssignments/{id}`:
  the list includes assignments of the groups the user is a direct member of.
  https://learn.microsoft.com/graph/api/user-list-approleassignments
"""

from __future__ import annotations

from typing import Any

from . import apps
from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError

router = Router()

GRANT_FILTER_FIELDS = ["clientId", "consentType", "principalId", "resourceId"]
ASSIGNMENT_FILTER_FIELDS = ["resourceId", "appRoleId", "principalId", "principalType"]


def _missing(key: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{key}' does not exist or one of its queried "
                      "reference-property objects are not present.")


def _grant_view(g: dict[str, Any]) -> dict[str, Any]:
    return {k: g.get(k) for k in ("id", "clientId", "consentType", "principalId",
                                  "resourceId", "scope")}


def _assignment_view(a: dict[str, Any]) -> dict[str, Any]:
    return {"id": a["id"], "deletedDateTime": a.get("deletedDateTime"),
            "appRoleId": a["appRoleId"], "createdDateTime": a.get("createdDateTime"),
            "principalDisplayName": a.get("principalDisplayName"),
            "principalId": a["principalId"], "principalType": a.get("principalType"),
            "resourceDisplayName": a.get("resourceDisplayName"), "resourceId": a["resourceId"]}


@router.add("GET", "oauth2PermissionGrants")
def list_grants(ctx: Ctx) -> EmuResponse:
    items = [_grant_view(g) for g in ctx.tenant.oauth2_grants.values()]
    return ctx.collection(items, "oauth2PermissionGrants", filter_fields=GRANT_FILTER_FIELDS)


@router.add("GET", "oauth2PermissionGrants/{gid}")
def get_grant(ctx: Ctx, gid: str) -> EmuResponse:
    grant = ctx.tenant.oauth2_grants.get(gid)
    if grant is None:
        raise _missing(gid)
    return ctx.entity("oauth2PermissionGrants", _grant_view(grant))


@router.add("DELETE", "oauth2PermissionGrants/{gid}")
def delete_grant(ctx: Ctx, gid: str) -> EmuResponse:
    if ctx.tenant.oauth2_grants.pop(gid, None) is None:
        raise _missing(gid)
    return ctx.no_content()


@router.add("POST", "oauth2PermissionGrants")
def create_grant(ctx: Ctx) -> EmuResponse:
    body = ctx.body_dict()
    for key in ("clientId", "consentType", "resourceId"):
        if not body.get(key):
            raise GraphError(400, "Request_BadRequest",
                             f"A value is required for property '{key}' of resource "
                             "'OAuth2PermissionGrant'.")
    consent_type = str(body["consentType"])
    if consent_type not in ("Principal", "AllPrincipals"):
        raise GraphError(400, "Request_BadRequest",
                         f"Invalid value specified for property 'consentType': {consent_type}")
    if consent_type == "Principal" and not ctx.tenant.find_user(str(body.get("principalId"))):
        raise GraphError(400, "Request_BadRequest",
                         "Invalid value specified for property 'principalId' of resource "
                         "'OAuth2PermissionGrant'.")
    for key in ("clientId", "resourceId"):
        if str(body[key]) not in ctx.tenant.service_principals:
            raise GraphError(400, "Request_BadRequest",
                             f"Invalid value specified for property '{key}' of resource "
                             "'OAuth2PermissionGrant'.")
    principal = body.get("principalId") if consent_type == "Principal" else None
    for g in ctx.tenant.oauth2_grants.values():
        if (g["clientId"], g["resourceId"], g["consentType"], g["principalId"]) == \
                (body["clientId"], body["resourceId"], consent_type, principal):
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                             "Permission entry already exists.")
    grant = apps.add_grant(ctx.tenant, {"clientId": body["clientId"],
                                        "consentType": consent_type, "principalId": principal,
                                        "resourceId": body["resourceId"],
                                        "scope": body.get("scope") or ""})
    body_out = {"@odata.context": ctx.context_url("oauth2PermissionGrants/$entity"),
                **_grant_view(grant)}
    return ctx.json(body_out, status=201, write=True)


@router.add("GET", "users/{uid}/oauth2PermissionGrants")
def list_user_grants(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    items = [_grant_view(g) for g in ctx.tenant.oauth2_grants.values()
             if g["principalId"] == user["id"]]
    return ctx.collection(items, f"users('{user['id']}')/oauth2PermissionGrants",
                          filter_fields=GRANT_FILTER_FIELDS)


def _user_assignments(ctx: Ctx, user: dict[str, Any]) -> list[dict[str, Any]]:
    groups = {g["id"] for g in ctx.tenant.groups_of(user["id"])}
    return [a for a in ctx.tenant.app_role_assignments.values()
            if a["principalId"] == user["id"] or a["principalId"] in groups]


@router.add("GET", "users/{uid}/appRoleAssignments")
def list_user_assignments(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    items = [_assignment_view(a) for a in _user_assignments(ctx, user)]
    return ctx.collection(items, f"users('{user['id']}')/appRoleAssignments",
                          filter_fields=ASSIGNMENT_FILTER_FIELDS)


@router.add("POST", "users/{uid}/appRoleAssignments")
def create_user_assignment(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    body = ctx.body_dict()
    if str(body.get("principalId") or "") != user["id"]:
        raise GraphError(400, "Request_BadRequest",
                         "Invalid value specified for property 'principalId' of resource "
                         "'AppRoleAssignment'.")
    resource = ctx.tenant.service_principals.get(str(body.get("resourceId") or ""))
    if resource is None:
        raise GraphError(400, "Request_BadRequest",
                         "Invalid value specified for property 'resourceId' of resource "
                         "'AppRoleAssignment'.")
    role = str(body.get("appRoleId") or apps.DEFAULT_APP_ROLE)
    known = {r.get("id") for r in resource.get("appRoles") or []} | {apps.DEFAULT_APP_ROLE}
    if role not in known:
        raise GraphError(400, "Request_BadRequest",
                         "Permission being assigned was not found on application")
    aid = apps.assignment_id(user["id"], resource["id"], role)
    if aid in ctx.tenant.app_role_assignments:
        # the docs give no body for a duplicate; the answer admins report is this 400
        raise GraphError(400, "Request_BadRequest",
                         "Permission being assigned already exists on the object")
    created = apps.add_app_role_assignment(ctx.tenant, {
        "principalId": user["id"], "resourceId": resource["id"], "appRoleId": role,
        "createdDateTime": None})
    created["createdDateTime"] = apps.iso7()
    body_out = {"@odata.context": ctx.context_url(
        f"users('{user['id']}')/appRoleAssignments/$entity"), **_assignment_view(created)}
    return ctx.json(body_out, status=201, write=True)


@router.add("DELETE", "users/{uid}/appRoleAssignments/{aid}")
def delete_user_assignment(ctx: Ctx, uid: str, aid: str) -> EmuResponse:
    user = ctx.user(uid)
    found = ctx.tenant.app_role_assignments.get(aid)
    if found is None or found["principalId"] != user["id"]:
        raise _missing(aid)
    del ctx.tenant.app_role_assignments[aid]
    return ctx.no_content()
