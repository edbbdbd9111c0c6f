"""Graph directory routes: users, sign-in sessions, authentication methods, groups,
directory roles, domains, per-user MFA (beta)."""

from __future__ import annotations

import secrets
import string
from typing import Any

from .graph_common import Ctx, Router
from .messages import EmuResponse, GraphError
from .tenant import (
    AUTH_METHOD_TYPES,
    PASSWORD_METHOD_ID,
    PHONE_METHOD_IDS,
    SEGMENT_TO_SHORT,
    stable_id,
)
from .timefmt import iso7, utcnow

router = Router()

USER_FILTER_FIELDS = [
    "id", "userPrincipalName", "mail", "displayName", "accountEnabled", "userType",
    "onPremisesSyncEnabled", "onPremisesImmutableId", "creationType", "givenName", "surname",
    "jobTitle",
]
_USER_FIELDS = [
    "id", "businessPhones", "displayName", "givenName", "surname", "jobTitle", "mail",
    "mobilePhone", "officeLocation", "preferredLanguage", "userPrincipalName",
    "accountEnabled", "userType", "creationType", "onPremisesSyncEnabled",
    "onPremisesImmutableId", "signInSessionsValidFromDateTime", "lastPasswordChangeDateTime",
]
_WRITABLE_USER_FIELDS = {
    "accountEnabled", "passwordProfile", "displayName", "givenName", "surname", "jobTitle",
    "mobilePhone", "officeLocation", "usageLocation", "department", "passwordPolicies",
}
_ALREADY_EXISTS = (
    "One or more added object references already exist for the following modified "
    "properties: 'members'."
)


def is_external(u: dict) -> bool:
    """A B2B user: `#EXT#` in the UPN, or an invited guest. They sign in at home."""
    return "#ext#" in str(u.get("userPrincipalName", "")).lower() or (
        u.get("userType") == "Guest" and u.get("creationType") == "Invitation")


def user_view(u: dict) -> dict:
    """The Graph JSON of a user (internal bookkeeping fields left out)."""
    out = {k: u.get(k) for k in _USER_FIELDS}
    out["businessPhones"] = u.get("businessPhones") or []
    return out


def group_view(g: dict) -> dict:
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": g["id"],
        "displayName": g["displayName"],
        "description": g.get("description"),
        "mailEnabled": g.get("mailEnabled", False),
        "securityEnabled": g.get("securityEnabled", True),
        "groupTypes": g.get("groupTypes", []),
        "mail": g.get("mail"),
    }


def role_view(r: dict) -> dict:
    return {
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": r["id"],
        "displayName": r["displayName"],
        "description": r.get("description"),
        "roleTemplateId": r["roleTemplateId"],
    }


def _not_found(key: str) -> GraphError:
    return GraphError(
        404, "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


# ------------------------------------------------------------------------ users
@router.add("GET", "users")
def list_users(ctx: Ctx) -> EmuResponse:
    items = [user_view(u) for u in ctx.tenant.iter_users()]
    return ctx.collection(items, "users", filter_fields=USER_FILTER_FIELDS, max_top=999)


@router.add("GET", "users/{uid}")
def get_user(ctx: Ctx, uid: str) -> EmuResponse:
    return ctx.entity("users", user_view(ctx.user(uid)))


@router.add("GET", "me")
def get_me(ctx: Ctx) -> EmuResponse:
    raise GraphError(
        400, "BadRequest", "/me request is only valid with delegated authentication flow."
    )


def _password_ok(pw: str) -> bool:
    if len(pw) < 8 or len(pw) > 256:
        return False
    classes = [
        any(c.islower() for c in pw),
        any(c.isupper() for c in pw),
        any(c.isdigit() for c in pw),
        any(not c.isalnum() for c in pw),
    ]
    return sum(classes) >= 3


@router.add("PATCH", "users/{uid}")
def patch_user(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    body = ctx.body_dict()
    body = {k: v for k, v in body.items() if not k.startswith("@odata.type")}
    if isinstance(body.get("passwordProfile"), dict):
        body["passwordProfile"] = {k: v for k, v in body["passwordProfile"].items()
                                   if not k.startswith("@odata")}
    for key in body:
        if key not in _WRITABLE_USER_FIELDS:
            raise GraphError(
                400, "Request_BadRequest",
                f"Property '{key}' does not exist as a declared property or extension property.",
            )
    if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
        raise GraphError(400, "Request_BadRequest", "Invalid value specified for property "
                         "'accountEnabled' of resource 'User'.")
    profile = body.get("passwordProfile")
    if user.get("onPremisesSyncEnabled") and ("accountEnabled" in body or (
            profile is not None and not ctx.tenant.is_federated(user))):
        # Synced (on-premises-mastered) users: "For synced users, the ability to update
        # certain properties is additionally determined by the source of authority"
        # (https://learn.microsoft.com/en-us/graph/api/user-update?tabs=http). App-only
        # passwordProfile writes are not written back on-premises either: writeback covers
        # the admin center and the delegated-only resetPassword API
        # (https://learn.microsoft.com/lv-lv/entra/identity/authentication/concept-sspr-writeback).
        # The refusal's body is not documented: this is Graph's error shape with the code and
        # the gist of what tenants report for such writes (400 Request_BadRequest).
        raise GraphError(
            400, "Request_BadRequest",
            "Unable to update the specified properties for on-premises mastered Directory "
            "Sync objects.",
        )
    if profile is not None:
        if not isinstance(profile, dict) or not isinstance(profile.get("password"), str):
            raise GraphError(400, "Request_BadRequest",
                             "Invalid value specified for property 'passwordProfile'.")
        if ctx.tenant.is_federated(user):
            domain = ctx.tenant.domain_of(user) or {"id": "?"}
            raise GraphError(
                400, "Request_BadRequest",
                f"Password cannot be set for a federated user: the domain '{domain['id']}' is "
                "federated, so the password is managed by the on-premises identity provider.",
            )
        if not _password_ok(profile["password"]):
            raise GraphError(
                400, "Request_BadRequest",
                "The specified password does not comply with password complexity "
                "requirements. Please provide a different password.",
            )
    for key, value in body.items():
        if key == "passwordProfile":
            ctx.tenant.set_password(
                user["id"], value["password"], bool(value.get("forceChangePasswordNextSignIn"))
            )
        else:
            user[key] = value
    return ctx.no_content()


@router.add("POST", "users/{uid}/revokeSignInSessions")
def revoke_sessions(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    user["sessionsRevokedCount"] = user.get("sessionsRevokedCount", 0) + 1
    user["signInSessionsValidFromDateTime"] = iso7()
    if is_external(user):
        # The call succeeds, but "this API doesn't revoke sign-in sessions for external
        # users, because external users sign in through their home tenant"
        # (https://learn.microsoft.com/graph/api/user-revokesigninsessions). The dump shows
        # how many revocations left the home tenant's sessions alive.
        user["homeSessionsNotRevokedCount"] = user.get("homeSessionsNotRevokedCount", 0) + 1
    body = {"@odata.context": ctx.context_url("Edm.Boolean"), "value": True}
    return ctx.json(body, write=True)


def _member_of(ctx: Ctx, uid: str, transitive: bool, fragment: str) -> EmuResponse:
    user = ctx.user(uid)
    items = [group_view(g) for g in ctx.tenant.groups_of(user["id"], transitive)]
    items += [role_view(r) for r in ctx.tenant.roles_of(user["id"])]
    return ctx.collection(items, "directoryObjects", page_key=fragment)


@router.add("GET", "users/{uid}/memberOf")
def member_of(ctx: Ctx, uid: str) -> EmuResponse:
    return _member_of(ctx, uid, False, "memberOf")


@router.add("GET", "users/{uid}/transitiveMemberOf")
def transitive_member_of(ctx: Ctx, uid: str) -> EmuResponse:
    return _member_of(ctx, uid, True, "transitiveMemberOf")


@router.add("POST", "users/{uid}/checkMemberGroups")
def check_member_groups(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    ids = ctx.body_dict().get("groupIds")
    if not isinstance(ids, list) or len(ids) > 20:
        raise GraphError(400, "Request_BadRequest", "groupIds must be a list of up to 20 ids.")
    mine = {g["id"] for g in ctx.tenant.groups_of(user["id"], transitive=True)}
    mine |= {r["id"] for r in ctx.tenant.roles_of(user["id"])}
    body = {
        "@odata.context": ctx.context_url("Collection(Edm.String)"),
        "value": [g for g in ids if g in mine],
    }
    return ctx.json(body)


@router.add("POST", "users/{uid}/getMemberGroups")
def get_member_groups(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    ids = [g["id"] for g in ctx.tenant.groups_of(user["id"], transitive=True)]
    return ctx.json({"@odata.context": ctx.context_url("Collection(Edm.String)"), "value": ids})


# ------------------------------------------------------------ authentication methods
def _method_view(m: dict) -> dict:
    return dict(m)


@router.add("GET", "users/{uid}/authentication/methods")
def list_methods(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    items = [_method_view(m) for m in user["authMethods"]]
    return ctx.collection(items, f"users('{user['id']}')/authentication/methods")


@router.add("GET", "users/{uid}/authentication/methods/{mid}")
def get_method(ctx: Ctx, uid: str, mid: str) -> EmuResponse:
    user = ctx.user(uid)
    for m in user["authMethods"]:
        if m["id"] == mid:
            return ctx.entity("users/authentication/methods", _method_view(m))
    raise GraphError(404, "itemNotFound", f"Authentication method '{mid}' was not found.")


def _typed(seg: str) -> str:
    short = SEGMENT_TO_SHORT.get(seg.lower())
    if short is None:
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{seg}'.")
    return short


def _of_type(user: dict, short: str) -> list[dict]:
    odata = f"#microsoft.graph.{AUTH_METHOD_TYPES[short][0]}"
    return [m for m in user["authMethods"] if m["@odata.type"] == odata]


@router.add("GET", "users/{uid}/authentication/{mtype}")
def list_typed_methods(ctx: Ctx, uid: str, mtype: str) -> EmuResponse:
    if mtype.lower() == "requirements":
        return get_requirements(ctx, uid)
    user = ctx.user(uid)
    short = _typed(mtype)
    return ctx.collection([_method_view(m) for m in _of_type(user, short)], mtype)


@router.add("GET", "users/{uid}/authentication/{mtype}/{mid}")
def get_typed_method(ctx: Ctx, uid: str, mtype: str, mid: str) -> EmuResponse:
    user = ctx.user(uid)
    short = _typed(mtype)
    for m in _of_type(user, short):
        if m["id"] == mid:
            return ctx.entity(mtype, _method_view(m))
    raise GraphError(404, "itemNotFound", f"Authentication method '{mid}' was not found.")


@router.add("DELETE", "users/{uid}/authentication/{mtype}/{mid}")
def delete_typed_method(ctx: Ctx, uid: str, mtype: str, mid: str) -> EmuResponse:
    user = ctx.user(uid)
    short = _typed(mtype)
    if short == "password" or mid == PASSWORD_METHOD_ID:
        raise GraphError(400, "badRequest", "The password authentication method cannot be "
                         "deleted.")
    for m in _of_type(user, short):
        if m["id"] == mid:
            if short == "phone":
                _check_phone_delete(user, m)
            user["authMethods"].remove(m)
            ctx.tenant.record_security_info(
                user, m, "deleted", by_admin=True,
                delay_seconds=float(ctx.config.get("audit_latency_seconds") or 0))
            return ctx.no_content()
    raise GraphError(404, "itemNotFound",
                     f"No {mtype} authentication method with id '{mid}' was found for the user.")


def _check_phone_delete(user: dict, method: dict) -> None:
    """The documented order of phone deletions.

    https://learn.microsoft.com/graph/api/phoneauthenticationmethod-delete: a user can't have
    an alternateMobile without a mobile, and the phone that is the user's default MFA method
    can't be deleted. The docs give no error code or message for either refusal; the
    emulator answers 400 badRequest with its own wording (clients must not parse it)."""
    kind = method.get("phoneType")
    if kind == "mobile" and _of_type_phone(user, "alternateMobile"):
        raise GraphError(400, "badRequest",
                         "The mobile phone method cannot be deleted while the user has an "
                         "alternate mobile phone method.")
    default = user.get("defaultMfaMethod")
    if default and default in (kind, method.get("id")):
        raise GraphError(400, "badRequest",
                         "The phone method is the user's default multifactor authentication "
                         "method and cannot be deleted.")


def _of_type_phone(user: dict, phone_type: str) -> list[dict]:
    return [m for m in _of_type(user, "phone") if m.get("phoneType") == phone_type]


@router.add("POST", "users/{uid}/authentication/phoneMethods")
def create_phone(ctx: Ctx, uid: str) -> EmuResponse:
    """Add a phone method (201); one per phoneType, with Graph's fixed id for the type.

    The new method carries no creation time: only its audit event dates it."""
    user = ctx.user(uid)
    body = ctx.body_dict()
    phone_type = body.get("phoneType")
    number = body.get("phoneNumber")
    if phone_type not in PHONE_METHOD_IDS or not isinstance(number, str) or not number:
        raise GraphError(400, "badRequest", "phoneNumber and a valid phoneType are required.")
    if _of_type_phone(user, phone_type):
        raise GraphError(400, "badRequest",
                         f"The user already has a phone method of type {phone_type}.")
    if phone_type == "alternateMobile" and not _of_type_phone(user, "mobile"):
        raise GraphError(400, "badRequest",
                         "An alternate mobile phone requires a mobile phone method.")
    method = {
        "@odata.type": "#microsoft.graph.phoneAuthenticationMethod",
        "id": PHONE_METHOD_IDS[phone_type], "phoneNumber": number, "phoneType": phone_type,
        "smsSignInState": "notAllowedByPolicy", "createdDateTime": None,
    }
    user["authMethods"].append(method)
    ctx.tenant.record_security_info(
        user, method, "registered", by_admin=True,
        delay_seconds=float(ctx.config.get("audit_latency_seconds") or 0))
    result = dict(method)
    result["@odata.context"] = ctx.context_url(
        f"users('{user['id']}')/authentication/phoneMethods/$entity")
    return ctx.json(result, status=201, write=True)


@router.add("POST", "users/{uid}/authentication/temporaryAccessPassMethods")
def create_tap(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    body = ctx.req.body if isinstance(ctx.req.body, dict) else {}
    lifetime = body.get("lifetimeInMinutes", 60)
    if not isinstance(lifetime, int) or not 10 <= lifetime <= 43200:
        raise GraphError(400, "badRequest", "lifetimeInMinutes must be between 10 and 43200.")
    if _of_type(user, "temporaryAccessPass"):
        raise GraphError(400, "badRequest",
                         "The user already has a Temporary Access Pass; delete it first.")
    now = iso7()
    method = {
        "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
        "id": stable_id(user["id"], "tap", now),
        "createdDateTime": now,
        "startDateTime": body.get("startDateTime") or now,
        "lifetimeInMinutes": lifetime,
        "isUsableOnce": bool(body.get("isUsableOnce", False)),
        "isUsable": True,
        "methodUsabilityReason": "EnabledByPolicy",
    }
    user["authMethods"].append(method)
    ctx.tenant.record_security_info(
        user, method, "registered", by_admin=True,
        delay_seconds=float(ctx.config.get("audit_latency_seconds") or 0))
    alphabet = string.ascii_letters + string.digits + "!@#$%&*"
    result = dict(method)
    result["temporaryAccessPass"] = "".join(secrets.choice(alphabet) for _ in range(8))
    result["@odata.context"] = ctx.context_url(
        f"users('{user['id']}')/authentication/temporaryAccessPassMethods/$entity"
    )
    return ctx.json(result, status=201, write=True)


# ----------------------------------------------------------- per-user MFA (beta)
@router.add("GET", "users/{uid}/authentication/requirements", versions=("beta",))
def get_requirements(ctx: Ctx, uid: str) -> EmuResponse:
    if ctx.req.version != "beta":
        raise GraphError(400, "BadRequest", "Resource not found for the segment 'requirements'.")
    user = ctx.user(uid)
    return ctx.json({
        "@odata.context": ctx.context_url(
            f"users('{user['id']}')/authentication/requirements/$entity"),
        "perUserMfaState": user.get("perUserMfaState", "disabled"),
    })


@router.add("PATCH", "users/{uid}/authentication/requirements", versions=("beta",))
def patch_requirements(ctx: Ctx, uid: str) -> EmuResponse:
    user = ctx.user(uid)
    state = ctx.body_dict().get("perUserMfaState")
    if state not in ("disabled", "enabled", "enforced"):
        raise GraphError(400, "badRequest",
                         "perUserMfaState must be one of disabled, enabled, enforced.")
    user["perUserMfaState"] = state
    return ctx.no_content()


# ------------------------------------------------------------------------ groups
def _group(ctx: Ctx, gid: str) -> dict:
    g = ctx.tenant.groups.get(gid)
    if g is None:
        raise _not_found(gid)
    return g


def _object_id_from_ref(ctx: Ctx, ref: Any) -> str:
    if not isinstance(ref, str) or not ref:
        raise GraphError(400, "Request_BadRequest", "Invalid '@odata.id' reference.")
    oid = ref.rstrip("/").rsplit("/", 1)[-1]
    if oid.lower().startswith("directoryobjects(") or "(" in oid:
        oid = oid[oid.index("(") + 1: -1].strip("'")
    found = ctx.tenant.find_object(oid)
    if found is None:
        raise _not_found(oid)
    return found[1]["id"]


@router.add("GET", "groups")
def list_groups(ctx: Ctx) -> EmuResponse:
    items = [group_view(g) for g in ctx.tenant.groups.values()]
    return ctx.collection(items, "groups", filter_fields=["id", "displayName", "mail",
                                                          "securityEnabled", "mailEnabled"])


@router.add("GET", "groups/{gid}")
def get_group(ctx: Ctx, gid: str) -> EmuResponse:
    return ctx.entity("groups", group_view(_group(ctx, gid)))


def _members(ctx: Ctx, ids: list[str]) -> list[dict]:
    out = []
    for mid in ids:
        found = ctx.tenant.find_object(mid)
        if found is None:
            continue
        kind, rec = found
        if kind == "user":
            item = {"@odata.type": "#microsoft.graph.user", **user_view(rec)}
        else:
            item = group_view(rec)
        out.append(item)
    return out


@router.add("GET", "groups/{gid}/members")
def list_members(ctx: Ctx, gid: str) -> EmuResponse:
    g = _group(ctx, gid)
    return ctx.collection(_members(ctx, g["members"]), "directoryObjects", page_key="members")


@router.add("POST", "groups/{gid}/members/$ref")
def add_member(ctx: Ctx, gid: str) -> EmuResponse:
    g = _group(ctx, gid)
    oid = _object_id_from_ref(ctx, ctx.body_dict().get("@odata.id"))
    if oid in g["members"]:
        raise GraphError(400, "Request_BadRequest", _ALREADY_EXISTS)
    g["members"].append(oid)
    return ctx.no_content()


@router.add("DELETE", "groups/{gid}/members/{oid}/$ref")
def remove_member(ctx: Ctx, gid: str, oid: str) -> EmuResponse:
    g = _group(ctx, gid)
    if oid not in g["members"]:
        raise _not_found(oid)
    g["members"].remove(oid)
    return ctx.no_content()


@router.add("PATCH", "groups/{gid}")
def patch_group(ctx: Ctx, gid: str) -> EmuResponse:
    g = _group(ctx, gid)
    body = ctx.body_dict()
    refs = body.get("members@odata.bind", [])
    if not isinstance(refs, list) or len(refs) > 20:
        raise GraphError(400, "Request_BadRequest",
                         "members@odata.bind accepts a list of at most 20 references.")
    ids = [_object_id_from_ref(ctx, r) for r in refs]
    if any(i in g["members"] for i in ids) or len(set(ids)) != len(ids):
        raise GraphError(400, "Request_BadRequest", _ALREADY_EXISTS)
    for key in body:
        if key not in ("members@odata.bind", "displayName", "description", "@odata.type"):
            raise GraphError(400, "Request_BadRequest",
                             f"Property '{key}' does not exist as a declared property.")
    g["members"].extend(ids)
    for key in ("displayName", "description"):
        if key in body:
            g[key] = body[key]
    return ctx.no_content()


# -------------------------------------------------- roles, objects, domains, org
@router.add("GET", "directoryRoles")
def list_roles(ctx: Ctx) -> EmuResponse:
    items = [role_view(r) for r in ctx.tenant.directory_roles.values()]
    return ctx.collection(items, "directoryRoles", filter_fields=["id", "roleTemplateId",
                                                                  "displayName"])


@router.add("GET", "directoryRoles/{rid}/members")
def list_role_members(ctx: Ctx, rid: str) -> EmuResponse:
    role = next((r for r in ctx.tenant.directory_roles.values()
                 if rid in (r["id"], f"roleTemplateId={r['roleTemplateId']}")), None)
    if role is None:
        raise _not_found(rid)
    return ctx.collection(_members(ctx, role["members"]), "directoryObjects")


@router.add("GET", "directoryObjects/{oid}")
def get_directory_object(ctx: Ctx, oid: str) -> EmuResponse:
    found = ctx.tenant.find_object(oid)
    if found is None:
        raise _not_found(oid)
    kind, rec = found
    item = {"@odata.type": "#microsoft.graph.user", **user_view(rec)} if kind == "user" \
        else group_view(rec)
    return ctx.entity("directoryObjects", item)


def _domain_view(d: dict) -> dict:
    return {
        "id": d["id"],
        "authenticationType": d.get("authenticationType", "Managed"),
        "isDefault": d.get("isDefault", False),
        "isInitial": d.get("isInitial", d["id"].endswith(".onmicrosoft.com")),
        "isVerified": d.get("isVerified", True),
        "isRoot": d.get("isRoot", True),
        "supportedServices": d.get("supportedServices", ["Email", "OfficeCommunicationsOnline"]),
    }


@router.add("GET", "domains")
def list_domains(ctx: Ctx) -> EmuResponse:
    items = [_domain_view(d) for d in ctx.tenant.domains]
    return ctx.collection(items, "domains", filter_fields=["id", "authenticationType",
                                                           "isDefault", "isVerified"])


@router.add("GET", "domains/{did}")
def get_domain(ctx: Ctx, did: str) -> EmuResponse:
    for d in ctx.tenant.domains:
        if d["id"].lower() == did.lower():
            return ctx.entity("domains", _domain_view(d))
    raise _not_found(did)


@router.add("GET", "organization")
def get_organization(ctx: Ctx) -> EmuResponse:
    org = {
        "id": ctx.tenant.tenant_id,
        "displayName": ctx.tenant.display_name,
        "createdDateTime": iso7(utcnow().replace(year=2019)),
        "verifiedDomains": [
            {"name": d["id"], "type": d.get("authenticationType", "Managed"),
             "isDefault": d.get("isDefault", False), "isInitial": d["id"].endswith(
                 ".onmicrosoft.com")}
            for d in ctx.tenant.domains
        ],
    }
    return ctx.collection([org], "organization")
