"""Directory role management (unified RBAC) and the app's service principal.

`GET roleManagement/directory/roleAssignments` supports `$filter` on principalId /
roleDefinitionId / directoryScopeId (eq) and `$expand` of roleDefinition and principal; for
built-in roles the roleDefinitionId is the role template id
(https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments,
https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleassignment).

Assignments come from the tenant: members of each directory role (users), and the app's
service principal: the directory roles of the calling token's grant (seed
`servicePrincipal.directoryRoles`, else the roles infra/ declares).
"""

from __future__ import annotations

from typing import Any

from .authz import Authority
from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .tenant import ROLE_TEMPLATES

router = Router()
_TEMPLATE_BY_NAME = {name.lower(): tmpl for tmpl, name in ROLE_TEMPLATES.items()}


def service_principal(ctx: Ctx) -> dict[str, Any]:
    sp = Authority.service_principal(ctx.tenant)
    return {"@odata.type": "#microsoft.graph.servicePrincipal", "id": sp["id"],
            "appId": sp["appId"], "displayName": sp["displayName"],
            "servicePrincipalType": sp.get("servicePrincipalType", "ManagedIdentity"),
            "accountEnabled": True}


def definition_view(template_id: str) -> dict[str, Any]:
    return {"id": template_id, "templateId": template_id,
            "displayName": ROLE_TEMPLATES.get(template_id, template_id),
            "description": None, "isBuiltIn": True, "isEnabled": True}


def _assignments(ctx: Ctx) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for role in ctx.tenant.directory_roles.values():
        for member in role["members"]:
            rows.append({"principalId": member, "roleDefinitionId": role["roleTemplateId"]})
    sp = service_principal(ctx)
    # The caller is the app: its assignments are the directory roles the emulator grants the
    # calling token (issue_token(directory_roles=...)), else the service principal's.
    grant = ctx.req.grant
    held = (grant.directory_roles if grant is not None and not grant.everything
            else Authority(fixed_token="").app_directory_roles(ctx.tenant))
    for name in sorted(held):
        tmpl = _TEMPLATE_BY_NAME.get(str(name).lower())
        if tmpl:
            rows.append({"principalId": sp["id"], "roleDefinitionId": tmpl})
    return [{"id": f"{r['roleDefinitionId']}-{r['principalId']}", **r,
             "directoryScopeId": "/", "resourceScope": "/"} for r in rows]


def _expand(ctx: Ctx, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted = {e.strip().lower() for e in (ctx.req.query.get("$expand") or "").split(",")
              if e.strip()}
    unknown = wanted - {"roledefinition", "principal"}
    if unknown:
        raise GraphError(400, "BadRequest",
                         f"Could not find a property named '{sorted(unknown)[0]}' on type "
                         "'microsoft.graph.unifiedRoleAssignment'.")
    out = []
    for item in items:
        item = dict(item)
        if "roledefinition" in wanted:
            item["roleDefinition"] = definition_view(item["roleDefinitionId"])
        if "principal" in wanted:
            sp = service_principal(ctx)
            found = ctx.tenant.find_object(item["principalId"])
            item["principal"] = sp if item["principalId"] == sp["id"] else (
                {"@odata.type": f"#microsoft.graph.{found[0]}", "id": found[1]["id"],
                 "displayName": found[1].get("displayName")} if found
                else {"@odata.type": "#microsoft.graph.directoryObject",
                      "id": item["principalId"]})
        out.append(item)
    return out


@router.add("GET", "roleManagement/directory/roleAssignments")
def list_role_assignments(ctx: Ctx) -> EmuResponse:
    resp = ctx.collection(_assignments(ctx), "roleManagement/directory/roleAssignments",
                          filter_fields=["principalId", "roleDefinitionId",
                                         "directoryScopeId"])
    body = resp.body
    body["value"] = _expand(ctx, body["value"])
    return resp


@router.add("GET", "roleManagement/directory/roleDefinitions")
def list_role_definitions(ctx: Ctx) -> EmuResponse:
    items = [definition_view(t) for t in ROLE_TEMPLATES]
    return ctx.collection(items, "roleManagement/directory/roleDefinitions",
                          filter_fields=["id", "templateId", "displayName", "isBuiltIn"])


@router.add("GET", "roleManagement/directory/roleDefinitions/{rid}")
def get_role_definition(ctx: Ctx, rid: str) -> EmuResponse:
    if rid not in ROLE_TEMPLATES:
        raise GraphError(404, "Request_ResourceNotFound",
                         f"Resource '{rid}' does not exist or one of its queried "
                         "reference-property objects are not present.")
    return ctx.entity("roleManagement/directory/roleDefinitions", definition_view(rid))


def _all_service_principals(ctx: Ctx) -> list[dict[str, Any]]:
    """The app's own service principal and the tenant's others (apps.py)."""
    own = service_principal(ctx)
    others = [{"@odata.type": "#microsoft.graph.servicePrincipal",
               **{k: v for k, v in sp.items() if k != "appRoles"},
               "appRoles": list(sp.get("appRoles") or [])}
              for sp in getattr(ctx.tenant, "service_principals", {}).values()
              if sp["id"] != own["id"]]
    return [own, *others]


@router.add("GET", "servicePrincipals")
def list_service_principals(ctx: Ctx) -> EmuResponse:
    return ctx.collection(_all_service_principals(ctx), "servicePrincipals",
                          filter_fields=["id", "appId", "displayName"])


@router.add("GET", "servicePrincipals/{sid}")
def get_service_principal(ctx: Ctx, sid: str) -> EmuResponse:
    for sp in _all_service_principals(ctx):
        if sid.lower() == sp["id"].lower():
            return ctx.entity("servicePrincipals", sp)
    raise GraphError(404, "Request_ResourceNotFound",
                     f"Resource '{sid}' does not exist or one of its queried "
                     "reference-property objects are not present.")


# ---------------------------------------------------------------- writes and eligibility
# DELETE/POST roleAssignments: RoleManagement.ReadWrite.Directory
# (https://learn.microsoft.com/graph/api/unifiedroleassignment-delete,
# https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments). Only
# tenant-wide (directoryScopeId "/") assignments of users are modelled; the app's own
# assignments (derived from its token) cannot be removed here.
_CONFLICT = ("A conflicting object with one or more of the specified property values is "
             "present in the directory.")


def _user_role_assignment(ctx: Ctx, aid: str) -> tuple[dict[str, Any], str] | None:
    # ids are "{role template id}-{principal id}" (see _assignments)
    tmpl, principal = aid[:36], aid[37:]
    for role in ctx.tenant.directory_roles.values():
        if role["roleTemplateId"] == tmpl and principal in role["members"]:
            return role, principal
    return None


@router.add("DELETE", "roleManagement/directory/roleAssignments/{aid}")
def delete_role_assignment(ctx: Ctx, aid: str) -> EmuResponse:
    found = _user_role_assignment(ctx, aid)
    if found is None:
        raise GraphError(404, "Request_ResourceNotFound",
                         f"Resource '{aid}' does not exist or one of its queried "
                         "reference-property objects are not present.")
    role, principal = found
    role["members"].remove(principal)
    return ctx.no_content()


@router.add("POST", "roleManagement/directory/roleAssignments")
def create_role_assignment(ctx: Ctx) -> EmuResponse:
    body = ctx.body_dict()
    principal, definition = str(body.get("principalId") or ""), \
        str(body.get("roleDefinitionId") or "")
    scope = str(body.get("directoryScopeId") or "")
    if not principal or not definition or not scope:
        raise GraphError(400, "Request_BadRequest", "principalId, roleDefinitionId and "
                         "directoryScopeId are required.")
    if scope != "/":
        raise GraphError(400, "Request_BadRequest",
                         "The emulator models tenant-wide (directoryScopeId '/') "
                         "assignments only.")
    user = ctx.tenant.find_user(principal)
    if user is None or definition not in ROLE_TEMPLATES:
        raise GraphError(400, "Request_BadRequest",
                         "Invalid value specified for property 'principalId' or "
                         "'roleDefinitionId'.")
    role = ctx.tenant.role_by_template_or_id(definition)
    if user["id"] in role["members"]:
        raise GraphError(400, "Request_BadRequest", _CONFLICT)
    role["members"].append(user["id"])
    item = {"@odata.context": ctx.context_url(
        "roleManagement/directory/roleAssignments/$entity"),
        "id": f"{definition}-{user['id']}", "principalId": user["id"],
        "roleDefinitionId": definition, "directoryScopeId": "/", "resourceScope": "/"}
    return ctx.json(item, status=201, write=True)


@router.add("GET", "roleManagement/directory/roleEligibilityScheduleInstances")
def list_eligibility_instances(ctx: Ctx) -> EmuResponse:
    """Current eligible assignments (apps.py `roleEligibilities`). A tenant seeded with
    `licences.privilegedIdentityManagement: false` answers 400 AadPremiumLicenseRequired
    (the docs name the licence, not the error; this code is what Graph is reported to
    answer)."""
    if (getattr(ctx.tenant, "licences", None) or {}).get(
            "privilegedIdentityManagement", True) is False:
        raise GraphError(400, "AadPremiumLicenseRequired",
                         "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra "
                         "ID Governance license.")
    rows = [{k: v for k, v in e.items()} for e in getattr(ctx.tenant, "role_eligibilities", [])]
    resp = ctx.collection(rows, "roleManagement/directory/roleEligibilityScheduleInstances",
                          filter_fields=["principalId", "roleDefinitionId",
                                         "directoryScopeId"])
    resp.body["value"] = _expand(ctx, resp.body["value"])
    return resp
