"""Users, domains, groups and directory roles: the Graph calls of the account steps.

Each function names the least-privileged permission it needs, so a 403 says what is
missing. Users are addressed by object id once resolved; a UPN is only ever looked up
through an escaped `$filter`, never pasted into a path or a filter raw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.errors import BadRequest, NotFound
from shared.tenant.graph.client import GraphClient, build_path
from shared.tenant.graph.odata import eq

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
USER_FIELDS = (
    "id,userPrincipalName,displayName,mail,accountEnabled,userType,onPremisesSyncEnabled,"
    "onPremisesImmutableId,creationType,signInSessionsValidFromDateTime,"
    "lastPasswordChangeDateTime,createdDateTime"
)
PERM_USER_READ = "User.Read.All"
PERM_PASSWORD = "User-PasswordProfile.ReadWrite.All"  # noqa: S105 - a permission name
PERM_REVOKE = "User.RevokeSessions.All"
PERM_ENABLE = "User.EnableDisableAccount.All"
PERM_DOMAIN_READ = "Domain.Read.All"
PERM_GROUP_MEMBER = "GroupMember.ReadWrite.All"
PERM_MEMBER_READ = "GroupMember.Read.All"
PERM_ROLE_READ = "RoleManagement.Read.Directory"


@dataclass(frozen=True)
class DirectoryUser:
    """The facts about a user that decide how each step behaves."""

    id: str
    upn: str
    display_name: str
    mail: str | None
    account_enabled: bool | None
    user_type: str | None
    synced: bool
    raw: dict[str, Any]

    @property
    def domain(self) -> str:
        return self.upn.rsplit("@", 1)[-1].lower()

    @property
    def is_guest(self) -> bool:
        return (self.user_type or "").lower() == "guest" or "#ext#" in self.upn.lower()


def _user(raw: dict[str, Any]) -> DirectoryUser:
    return DirectoryUser(
        id=str(raw["id"]),
        upn=str(raw.get("userPrincipalName") or ""),
        display_name=str(raw.get("displayName") or ""),
        mail=raw.get("mail"),
        account_enabled=raw.get("accountEnabled"),
        user_type=raw.get("userType"),
        synced=bool(raw.get("onPremisesSyncEnabled")),
        raw=raw,
    )


async def resolve_user(graph: GraphClient, user: str) -> DirectoryUser:
    """Find a user by object id or UPN (mail as a fallback). Raises NotFound."""
    if GUID.match(user):
        raw = await graph.request("GET", build_path("/users/{}", user),
                                  params={"$select": USER_FIELDS}, permission=PERM_USER_READ)
        return _user(raw)
    for field in ("userPrincipalName", "mail"):
        page = await graph.request(
            "GET", "/users", params={"$filter": eq(field, user), "$select": USER_FIELDS},
            permission=PERM_USER_READ,
        )
        found = (page or {}).get("value") or []
        if len(found) == 1:
            return _user(found[0])
        if len(found) > 1:
            raise BadRequest(f"{len(found)} users match {field}; use the object id",
                             service="graph", status=400, code="AmbiguousUser")
    raise NotFound("no user with that object id, UPN or mail", service="graph", status=404,
                   code="Request_ResourceNotFound", method="GET", path="/users")


async def domains(graph: GraphClient) -> list[dict[str, Any]]:
    """Verified domains with their authentication type (Managed or Federated)."""
    return await graph.list_all("/domains", permission=PERM_DOMAIN_READ)


async def set_password(graph: GraphClient, user_id: str, password: str) -> None:
    """Set a new password that must be changed at next sign-in. The value is never kept."""
    await graph.request(
        "PATCH", build_path("/users/{}", user_id),
        body={"passwordProfile": {"password": password, "forceChangePasswordNextSignIn": True}},
        priority=True, permission=PERM_PASSWORD, role="User Administrator",
    )


async def revoke_sessions(graph: GraphClient, user_id: str) -> None:
    await graph.request("POST", build_path("/users/{}/revokeSignInSessions", user_id),
                        priority=True, permission=PERM_REVOKE)


async def set_account_enabled(graph: GraphClient, user_id: str, enabled: bool) -> None:
    await graph.request("PATCH", build_path("/users/{}", user_id),
                        body={"accountEnabled": enabled}, priority=True,
                        permission=PERM_ENABLE, role="User Administrator")


async def member_of(graph: GraphClient, user_id: str) -> list[dict[str, Any]]:
    """Groups and directory roles the user holds, transitively."""
    return await graph.list_all(build_path("/users/{}/transitiveMemberOf", user_id),
                                permission=PERM_MEMBER_READ)


async def check_member_groups(graph: GraphClient, user_id: str, group_ids: list[str]) -> set[str]:
    """Which of `group_ids` the user is a (transitive) member of."""
    if not group_ids:
        return set()
    found: set[str] = set()
    for start in range(0, len(group_ids), 20):
        part = group_ids[start:start + 20]
        body = await graph.request("POST", build_path("/users/{}/checkMemberGroups", user_id),
                                   body={"groupIds": part}, permission=PERM_MEMBER_READ)
        found.update(str(x) for x in (body or {}).get("value") or [])
    return found


async def add_group_member(graph: GraphClient, group_id: str, user_id: str) -> bool:
    """Add a member; False when already a member (Graph answers 400 'already exist')."""
    ref = f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"
    try:
        await graph.request("POST", build_path("/groups/{}/members/$ref", group_id),
                            body={"@odata.id": ref}, priority=True,
                            permission=PERM_GROUP_MEMBER)
    except BadRequest as exc:
        if "already exist" in str(exc):
            return False
        raise
    return True


async def add_group_members(graph: GraphClient, group_id: str,
                            user_ids: list[str]) -> dict[str, bool]:
    """Add up to 20 members in one PATCH (one directory write instead of 20).

    Graph refuses the whole PATCH when any of them is already a member; then each is added
    alone, which tells which ones were new. Returns user id -> added (False: was a member).
    """
    if not user_ids:
        return {}
    if len(user_ids) > 20:
        raise ValueError("at most 20 members per PATCH")
    refs = [f"https://graph.microsoft.com/v1.0/directoryObjects/{u}" for u in user_ids]
    try:
        await graph.request("PATCH", build_path("/groups/{}", group_id),
                            body={"members@odata.bind": refs}, priority=True,
                            permission=PERM_GROUP_MEMBER)
    except BadRequest as exc:
        if "already exist" not in str(exc):
            raise
        return {u: await add_group_member(graph, group_id, u) for u in user_ids}
    return dict.fromkeys(user_ids, True)


async def remove_group_member(graph: GraphClient, group_id: str, user_id: str) -> bool:
    """Remove a member; False when not a member."""
    try:
        await graph.request("DELETE", build_path("/groups/{}/members/{}/$ref", group_id, user_id),
                            permission=PERM_GROUP_MEMBER)
    except NotFound:
        return False
    return True


async def send_mail(graph: GraphClient, sender: str, message: dict[str, Any]) -> None:
    """Send a message from `sender`'s mailbox (Mail.Send)."""
    await graph.request("POST", build_path("/users/{}/sendMail", sender),
                        body={"message": message, "saveToSentItems": False},
                        permission="Mail.Send")
