"""Authorization as Entra does it for app-only tokens: the permission table, the tokens, and
the directory-role checks.

A token is JWT-shaped (base64url header.payload.signature, with a fixed placeholder
signature: nothing is signed). Its payload carries what an Entra app-only access token
carries: `aud`, `tid`, `oid` / `appid` of the app's service principal, and `roles` (the
application permissions granted to the app). Directory roles are not in an app-only token:
they are role assignments of the service principal in the directory, so the emulator looks
them up per token (`issue_token(directory_roles=...)`) or uses the service principal's.

`RULES` is the one table: (method, path pattern) -> any-of permission sets, least privileged
first, each row with the Microsoft page it comes from. A request passes when the token holds
every permission of at least one set (the higher-privileged permissions the pages list are
the later sets). Where a page could not be found the row says `unverified` and accepts the
permission the code declares plus the broad Directory.* permissions, the conservative
reading.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .messages import EmuRequest, EmuResponse, exchange_error_response, graph_error_response

GRAPH_AUDIENCE = "https://graph.microsoft.com"
EXCHANGE_AUDIENCE = "https://outlook.office365.com"
AUDIENCES = {"graph": GRAPH_AUDIENCE, "exchange": EXCHANGE_AUDIENCE}
PLACEHOLDER_SIGNATURE = "emulator-unsigned"
"""Not a signature: the emulator signs nothing and checks only that this marker is there."""
PERMISSIONS_FILE = Path(__file__).resolve().parents[2] / "infra" / "permissions.json"
DEFAULT_SP = {
    "id": "5b0f1c3e-6a0d-4e5b-9a7c-2f1d8e3b4a61",
    "appId": "0c7d4a2b-9e1f-4b6a-8d3c-5e2f1a0b9c84",
    "displayName": "compromised-account-responder",
}

# Directory roles by display name (templates in tenant.ROLE_TEMPLATES).
GA = "Global Administrator"
PAA = "Privileged Authentication Administrator"
USER_ADMIN = "User Administrator"
HELPDESK = "Helpdesk Administrator"
AUTH_ADMIN = "Authentication Administrator"
EXCHANGE_ADMIN = "Exchange Administrator"

DIR_READ = "Directory.Read.All"
DIR_WRITE = "Directory.ReadWrite.All"


# ---------------------------------------------------------------------------- grants
@dataclass(frozen=True)
class Issued:
    """What the emulator remembers of a token it issued for a hosted tenant."""

    tenant: str  # tenant id, lower case
    generation: int  # the tenant's consent generation at issue time
    strict_audience: bool = False


@dataclass(frozen=True)
class Grant:
    """What one token may do: its app roles and the app's directory roles."""

    roles: frozenset[str]
    directory_roles: frozenset[str]
    audience: str = GRAPH_AUDIENCE
    everything: bool = False
    """Only when infra/permissions.json is missing: the fixed token then allows every call."""

    def holds(self, permissions: Iterable[str]) -> bool:
        return self.everything or all(p in self.roles for p in permissions)

    def has_role(self, names: Iterable[str]) -> bool:
        return self.everything or any(n in self.directory_roles for n in names)


def app_grant_from_file(path: Path = PERMISSIONS_FILE) -> tuple[frozenset[str], frozenset[str]]:
    """The app's full grant: every permission and directory role the code declares (the
    generated infra/permissions.json), read at emulator start."""
    data = json.loads(path.read_text(encoding="utf-8"))
    roles = frozenset([*data.get("graphApplicationPermissions", []),
                       *data.get("exchangeApplicationPermissions", [])])
    return roles, frozenset(data.get("directoryRoles", []))


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(part: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def make_jwt(payload: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": "emulator"}
    return f"{_b64(header)}.{_b64(payload)}.{PLACEHOLDER_SIGNATURE}"


def read_jwt(token: str) -> dict[str, Any] | None:
    """The payload of a JWT-shaped token with the placeholder signature, else None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[2] != PLACEHOLDER_SIGNATURE:
        return None
    return _unb64(parts[1])


class Authority:
    """Tokens and grants of one emulator: the fixed token, issued tokens, the service
    principal of the app (from the seed, `servicePrincipal`)."""

    def __init__(self, fixed_token: str, grant: tuple[Iterable[str], Iterable[str]] | None = None):
        self.fixed_token = fixed_token
        self._explicit = grant
        self._directory_roles: dict[str, frozenset[str]] = {}  # jti -> directory roles
        self._issued: dict[str, Issued] = {}  # jti -> the tenant consent it was issued under
        self.consented: set[str] = set()
        """Permissions granted to the app after start (an admin consenting to a new one)."""

    def app_grant(self) -> tuple[frozenset[str], frozenset[str]] | None:
        if self._explicit is not None:
            return frozenset(self._explicit[0]), frozenset(self._explicit[1])
        if PERMISSIONS_FILE.exists():
            return app_grant_from_file()
        return None

    @staticmethod
    def service_principal(tenant: Any) -> dict[str, Any]:
        sp = dict(DEFAULT_SP)
        sp.update(getattr(tenant, "service_principal", None) or {})
        return sp

    def app_directory_roles(self, tenant: Any) -> frozenset[str]:
        sp = getattr(tenant, "service_principal", None) or {}
        if "directoryRoles" in sp:
            return frozenset(sp["directoryRoles"])
        full = self.app_grant()
        return full[1] if full else frozenset()

    def issue(self, tenant: Any, roles: Iterable[str], *,
              directory_roles: Iterable[str] | None = None, audience: str = "graph",
              generation: int | None = None, app_id: str | None = None,
              lifetime: int | None = None, strict_audience: bool = False) -> str:
        """A JWT-shaped app-only token for `tenant`. `generation` ties it to that tenant's
        consent (see tenancy.Hosted); `lifetime` adds iat/nbf/exp; `strict_audience` makes
        Graph and Exchange refuse it when it is for the other resource (tokens from the
        token endpoint, which names one resource per token)."""
        sp = self.service_principal(tenant)
        jti = uuid.uuid4().hex
        payload: dict[str, Any] = {
            "aud": AUDIENCES.get(audience, audience),
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "tid": tenant.tenant_id,
            "oid": sp["id"],
            "sub": sp["id"],
            "appid": app_id or sp["appId"],
            "idtyp": "app",
            "roles": sorted(set(roles)),
            "jti": jti,
        }
        if lifetime is not None:
            now = int(time.time())
            payload.update(iat=now, nbf=now, exp=now + int(lifetime))
        if directory_roles is not None:
            self._directory_roles[jti] = frozenset(directory_roles)
        if generation is not None:
            self._issued[jti] = Issued(tenant.tenant_id.lower(), generation, strict_audience)
        return make_jwt(payload)

    def issued(self, payload: dict[str, Any]) -> Issued | None:
        """How this emulator issued the token, or None for a token it did not record (a
        test's hand-made JWT, or one from `issue` without a generation)."""
        return self._issued.get(str(payload.get("jti") or ""))

    def grant_for(self, token: str, tenant: Any,
                  permissions: frozenset[str] | None = None) -> Grant | None:
        """The grant a bearer token carries, or None when the emulator does not accept it.
        `permissions` narrows the fixed token to what its tenant consented to."""
        if token == self.fixed_token:
            full = self.app_grant()
            if full is None and permissions is None:
                return Grant(frozenset(), frozenset(), everything=True)
            roles = permissions if permissions is not None else (
                full[0] if full else frozenset())
            return Grant(roles | self.consented, self.app_directory_roles(tenant))
        payload = read_jwt(token)
        if payload is None or payload.get("tid") != tenant.tenant_id:
            return None
        roles = payload.get("roles") or []
        jti = str(payload.get("jti") or "")
        dir_roles = self._directory_roles.get(jti)
        if dir_roles is None:
            dir_roles = self.app_directory_roles(tenant)
        return Grant(frozenset(str(r) for r in roles), dir_roles,
                     audience=str(payload.get("aud") or GRAPH_AUDIENCE))


# ---------------------------------------------------------------------------- the table
Options = tuple[frozenset[str], ...]


def anyof(*options: str) -> Options:
    """`anyof("A + B", "C")`: (A and B) or C. The first option is the least privileged."""
    return tuple(frozenset(p.strip() for p in o.split("+")) for o in options)


@dataclass(frozen=True)
class Rule:
    method: str
    path: str  # after the version, Graph router syntax; "InvokeCommand" for Exchange
    needs: Options
    doc: str
    api: str = "graph"
    denial: str = "directory"  # which 403 body: directory | mail | identity
    versions: tuple[str, ...] = ("v1.0", "beta")
    role_check: str | None = None  # "user-write" | "exchange"
    limited: tuple[tuple[str, Options], ...] = ()
    """(@odata.type, any-of sets): members of that type come back with limited information
    (only `@odata.type` and `id`) unless the token holds one of the sets."""
    parts: tuple[str, ...] = field(default=(), compare=False)

    def matches(self, method: str, version: str, segs: list[str]) -> dict[str, str] | None:
        parts = self.parts or tuple(self.path.split("/"))
        if method.upper() != self.method or len(parts) != len(segs):
            return None
        if version not in self.versions:
            return None
        params: dict[str, str] = {}
        for part, seg in zip(parts, segs, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = seg
            elif part.lower() != seg.lower():
                return None
        return params


U_READ = anyof("User.Read.All", "User.ReadWrite.All", DIR_READ, DIR_WRITE)
METHODS_READ = anyof("UserAuthenticationMethod.Read.All",
                     "UserAuthenticationMethod.ReadWrite.All")
METHODS_WRITE = anyof("UserAuthenticationMethod.ReadWrite.All")
RISKY_READ = anyof("IdentityRiskyUser.Read.All", "IdentityRiskyUser.ReadWrite.All")
RISKY_WRITE = anyof("IdentityRiskyUser.ReadWrite.All")
MEMBER_READ = anyof("User.Read.All", DIR_READ, DIR_WRITE, "Group.Read.All",
                    "GroupMember.Read.All")
GROUP_MEMBER_WRITE = anyof("GroupMember.ReadWrite.All", "Group.ReadWrite.All", DIR_WRITE)
MAIL_SETTINGS_READ = anyof("MailboxSettings.Read", "MailboxSettings.ReadWrite")
MAIL_SETTINGS_WRITE = anyof("MailboxSettings.ReadWrite")
FOLDERS_READ = anyof("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")

# "When an application queries a relationship that returns a directoryObject type
# collection, if it doesn't have permission to read a certain resource type, members of that
# type are returned but with limited information" (only @odata.type and id):
# https://learn.microsoft.com/pl-pl/graph/api/group-list-memberof
# Directory roles are read with RoleManagement.Read.Directory (or Directory.Read.All).
ROLE_INFO = (("#microsoft.graph.directoryRole",
              anyof("RoleManagement.Read.Directory", DIR_READ,
                    "RoleManagement.ReadWrite.Directory")),)

USER_GET = "https://learn.microsoft.com/en-us/graph/api/user-update?view=graph-rest-1.0"
# user-get / user-list pages were not found by the search tool; the user-update page and the
# transitiveMemberOf page (below) list User.Read.All as least and Directory.* as higher.
TRANSITIVE = "https://learn.microsoft.com/en-us/graph/api/user-list-transitivememberof"
RISKY_GET = "https://learn.microsoft.com/en-in/graph/api/riskyuser-get?view=graph-rest-1.0"
CONFIRM = "https://learn.microsoft.com/en-us/graph/api/riskyuser-confirmcompromised"
DISMISS = "https://learn.microsoft.com/en-in/graph/api/riskyuser-dismiss?view=graph-rest-1.0"
FOLDERS = "https://learn.microsoft.com/en-us/graph/api/user-list-mailfolders"
RULES_DOC = ("unverified: no Microsoft page found; third-party copies of messagerule-update "
             "list MailboxSettings.ReadWrite (application)")
METHODS_DOC = ("https://learn.microsoft.com/graph/api/microsoftauthenticatorauthenticationmethod"
               "-delete?view=graph-rest-1.0")
MFA_GET = "https://learn.microsoft.com/graph/api/authentication-get"
MFA_UPDATE = "https://learn.microsoft.com/graph/api/authentication-update"
AUDITS = "https://learn.microsoft.com/tr-tr/graph/api/directoryaudit-list"
GROUP_POST = "https://learn.Microsoft.com/en-us/graph/api/group-post-members"
EXO_AUTH = "https://learn.microsoft.com/en-us/exchange/reference/admin-api-authentication"

ROLE_MGMT_READ = anyof("RoleManagement.Read.Directory", "RoleManagement.Read.All", DIR_READ,
                       "RoleManagement.ReadWrite.Directory", DIR_WRITE)
ROLE_ASSIGNMENTS = "https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments"
ROLE_MGMT_WRITE = anyof("RoleManagement.ReadWrite.Directory")
GRANTS_READ = anyof(DIR_READ, "DelegatedPermissionGrant.ReadWrite.All", DIR_WRITE)
GRANTS_WRITE = anyof("DelegatedPermissionGrant.ReadWrite.All", DIR_WRITE)

AUDIT_QUERY = anyof("AuditLogsQuery-Exchange.Read.All", "AuditLogsQuery.Read.All")
AUDIT_QUERY_DOC = "https://learn.microsoft.com/graph/api/security-auditcoreroot-post-auditlogqueries"

EXCHANGE_RECIPIENT_ADMIN = "Exchange Recipient Administrator"
MAIL_RECIPIENTS_CMDLETS = frozenset({
    "get-mailboxpermission", "add-mailboxpermission", "remove-mailboxpermission",
    "get-recipientpermission", "add-recipientpermission", "remove-recipientpermission",
    "get-recipient", "get-mobiledevice", "clear-mobiledevice", "get-casmailbox",
    "set-casmailbox",
})
"""Cmdlets of the Exchange management role "Mail Recipients" (recipient-level delegation,
devices and CAS settings). The cmdlet pages send readers to Get-ManagementRoleEntry
("Find the permissions required to run any Exchange cmdlet",
https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions) rather than
naming the role: the grouping is the emulator's reading. The role belongs to the
Organization Management and Recipient Management role groups, which the Entra roles
Exchange Administrator and Exchange Recipient Administrator map to."""


def exchange_roles(cmdlet: str | None) -> list[str]:
    """The Entra roles whose Exchange role groups hold this cmdlet."""
    if (cmdlet or "").lower() in MAIL_RECIPIENTS_CMDLETS:
        return [EXCHANGE_ADMIN, EXCHANGE_RECIPIENT_ADMIN, GA]
    return [EXCHANGE_ADMIN, GA]


RULES: tuple[Rule, ...] = (
    Rule("GET", "users", U_READ, USER_GET),
    Rule("GET", "users/{uid}", U_READ, USER_GET),
    Rule("GET", "me", anyof("User.Read.All"), "unverified (delegated only: /me has no "
         "signed-in user in app-only access)"),
    # PATCH users/{uid}: what is needed depends on the properties (patch_user_needs).
    Rule("PATCH", "users/{uid}", (), USER_GET, role_check="user-write"),
    Rule("POST", "users/{uid}/revokeSignInSessions",
         anyof("User.RevokeSessions.All", "User.ReadWrite.All", DIR_WRITE),
         "https://learn.microsoft.com/graph/api/user-revokesigninsessions (research)"),
    Rule("GET", "users/{uid}/memberOf", MEMBER_READ, TRANSITIVE, limited=ROLE_INFO),
    Rule("GET", "users/{uid}/transitiveMemberOf", MEMBER_READ, TRANSITIVE, limited=ROLE_INFO),
    Rule("POST", "users/{uid}/checkMemberGroups", MEMBER_READ,
         "unverified: read like transitiveMemberOf"),
    Rule("POST", "users/{uid}/getMemberGroups", MEMBER_READ,
         "unverified: read like transitiveMemberOf"),
    Rule("GET", "users/{uid}/authentication/methods", METHODS_READ, METHODS_DOC),
    Rule("GET", "users/{uid}/authentication/methods/{mid}", METHODS_READ, METHODS_DOC),
    Rule("GET", "users/{uid}/authentication/{mtype}", METHODS_READ, METHODS_DOC),
    Rule("GET", "users/{uid}/authentication/{mtype}/{mid}", METHODS_READ, METHODS_DOC),
    # The method-specific UserAuthMethod-*.ReadWrite.All are listed as higher privileged.
    Rule("DELETE", "users/{uid}/authentication/{mtype}/{mid}",
         anyof("UserAuthenticationMethod.ReadWrite.All", "UserAuthMethod-Phone.ReadWrite.All",
               "UserAuthMethod-MicrosoftAuthApp.ReadWrite.All"), METHODS_DOC),
    Rule("POST", "users/{uid}/authentication/phoneMethods", METHODS_WRITE, METHODS_DOC),
    Rule("POST", "users/{uid}/authentication/temporaryAccessPassMethods", METHODS_WRITE,
         METHODS_DOC),
    Rule("GET", "users/{uid}/authentication/requirements",
         anyof("Policy.Read.All", "Policy.ReadWrite.AuthenticationMethod"), MFA_GET,
         versions=("beta",)),
    Rule("PATCH", "users/{uid}/authentication/requirements",
         anyof("Policy.ReadWrite.AuthenticationMethod"), MFA_UPDATE, versions=("beta",)),
    Rule("GET", "groups", anyof("GroupMember.Read.All", "Group.Read.All", DIR_READ),
         "unverified"),
    Rule("GET", "groups/{gid}", anyof("GroupMember.Read.All", "Group.Read.All", DIR_READ),
         "unverified"),
    Rule("GET", "groups/{gid}/members", anyof("GroupMember.Read.All", "Group.Read.All",
                                              DIR_READ), "unverified"),
    Rule("POST", "groups/{gid}/members/$ref", GROUP_MEMBER_WRITE, GROUP_POST),
    Rule("DELETE", "groups/{gid}/members/{oid}/$ref", GROUP_MEMBER_WRITE, GROUP_POST),
    Rule("PATCH", "groups/{gid}", GROUP_MEMBER_WRITE, GROUP_POST),
    Rule("GET", "directoryRoles", anyof("RoleManagement.Read.Directory", DIR_READ),
         "unverified"),
    Rule("GET", "directoryRoles/{rid}/members", anyof("RoleManagement.Read.Directory",
                                                      DIR_READ), "unverified"),
    Rule("GET", "directoryObjects/{oid}", anyof(DIR_READ, "User.Read.All"), "unverified"),
    Rule("GET", "domains", anyof("Domain.Read.All", DIR_READ), "unverified"),
    Rule("GET", "domains/{did}", anyof("Domain.Read.All", DIR_READ), "unverified"),
    Rule("GET", "organization", anyof("Organization.Read.All", DIR_READ), "unverified"),
    # The directoryAudit list needs both permissions (no smaller pair is listed).
    Rule("GET", "auditLogs/directoryAudits", anyof("AuditLog.Read.All + Directory.Read.All"),
         AUDITS),
    Rule("GET", "auditLogs/directoryAudits/{aid}",
         anyof("AuditLog.Read.All + Directory.Read.All"), AUDITS),
    Rule("GET", "identityProtection/riskyUsers", RISKY_READ, RISKY_GET, denial="identity"),
    Rule("GET", "identityProtection/riskyUsers/{rid}", RISKY_READ, RISKY_GET,
         denial="identity"),
    Rule("GET", "identityProtection/riskyUsers/{rid}/history", RISKY_READ, RISKY_GET,
         denial="identity"),
    Rule("POST", "identityProtection/riskyUsers/confirmCompromised", RISKY_WRITE, CONFIRM,
         denial="identity"),
    Rule("POST", "identityProtection/riskyUsers/dismiss", RISKY_WRITE, DISMISS,
         denial="identity"),
    Rule("GET", "identityProtection/riskDetections", anyof("IdentityRiskEvent.Read.All"),
         "research section 11 (riskdetection-list)", denial="identity"),
    Rule("GET", "identityProtection/riskDetections/{did}", anyof("IdentityRiskEvent.Read.All"),
         "research section 11 (riskdetection-list)", denial="identity"),
    Rule("GET", "users/{uid}/mailFolders", FOLDERS_READ, FOLDERS, denial="mail"),
    Rule("GET", "users/{uid}/mailFolders/{fid}", FOLDERS_READ, FOLDERS, denial="mail"),
    Rule("GET", "users/{uid}/mailFolders/{fid}/childFolders", FOLDERS_READ, FOLDERS,
         denial="mail"),
    Rule("GET", "users/{uid}/mailFolders/{fid}/messageRules", MAIL_SETTINGS_READ, RULES_DOC,
         denial="mail"),
    Rule("GET", "users/{uid}/mailFolders/{fid}/messageRules/{rid}", MAIL_SETTINGS_READ,
         RULES_DOC, denial="mail"),
    Rule("PATCH", "users/{uid}/mailFolders/{fid}/messageRules/{rid}", MAIL_SETTINGS_WRITE,
         RULES_DOC, denial="mail"),
    Rule("DELETE", "users/{uid}/mailFolders/{fid}/messageRules/{rid}", MAIL_SETTINGS_WRITE,
         RULES_DOC, denial="mail"),
    Rule("POST", "users/{uid}/mailFolders/{fid}/messageRules", MAIL_SETTINGS_WRITE,
         RULES_DOC, denial="mail"),
    Rule("POST", "users/{uid}/sendMail", anyof("Mail.Send"), "unverified", denial="mail"),
    Rule("GET", "security/secureScores", anyof("SecurityEvents.Read.All",
                                               "SecurityEvents.ReadWrite.All"), "unverified"),
    Rule("GET", "security/secureScoreControlProfiles",
         anyof("SecurityEvents.Read.All", "SecurityEvents.ReadWrite.All"), "unverified"),
    # Role management (graph_rbac): RoleManagement.Read.Directory is the least privileged
    # (https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments).
    Rule("GET", "roleManagement/directory/roleAssignments", ROLE_MGMT_READ, ROLE_ASSIGNMENTS),
    Rule("GET", "roleManagement/directory/roleDefinitions", ROLE_MGMT_READ,
         "unverified: read like roleAssignments"),
    Rule("GET", "roleManagement/directory/roleDefinitions/{rid}", ROLE_MGMT_READ,
         "unverified: read like roleAssignments"),
    # Role writes and eligibility (graph_rbac): only RoleManagement.ReadWrite.Directory
    # writes; the eligibility instances' least privileged read is
    # RoleEligibilitySchedule.Read.Directory, RoleManagement.* listed as higher.
    Rule("DELETE", "roleManagement/directory/roleAssignments/{aid}", ROLE_MGMT_WRITE,
         "https://learn.microsoft.com/graph/api/unifiedroleassignment-delete"),
    Rule("POST", "roleManagement/directory/roleAssignments", ROLE_MGMT_WRITE,
         "https://learn.microsoft.com/graph/api/rbacapplication-post-roleassignments"),
    Rule("GET", "roleManagement/directory/roleEligibilityScheduleInstances",
         anyof("RoleEligibilitySchedule.Read.Directory",
               "RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.Read.All",
               "RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory"),
         "https://learn.microsoft.com/graph/api/rbacapplication-list-roleeligibilityschedule"
         "instances"),
    # Consents (graph_consents). Reading grants: Directory.Read.All is the least privileged
    # application permission; the per-user list is not supported app-only (no option).
    Rule("GET", "oauth2PermissionGrants", GRANTS_READ,
         "https://learn.microsoft.com/graph/api/oauth2permissiongrant-list"),
    Rule("GET", "oauth2PermissionGrants/{gid}", GRANTS_READ,
         "https://learn.microsoft.com/graph/api/oauth2permissiongrant-get"),
    Rule("DELETE", "oauth2PermissionGrants/{gid}", GRANTS_WRITE,
         "https://learn.microsoft.com/graph/api/oauth2permissiongrant-delete"),
    Rule("POST", "oauth2PermissionGrants", GRANTS_WRITE,
         "https://learn.microsoft.com/graph/api/oauth2permissiongrant-post"),
    Rule("GET", "users/{uid}/oauth2PermissionGrants", anyof(),
         "https://learn.microsoft.com/graph/api/user-list-oauth2permissiongrants "
         "(application: not supported)"),
    Rule("GET", "users/{uid}/appRoleAssignments",
         anyof(DIR_READ, "AppRoleAssignment.ReadWrite.All"),
         "https://learn.microsoft.com/graph/api/user-list-approleassignments"),
    Rule("POST", "users/{uid}/appRoleAssignments", anyof("AppRoleAssignment.ReadWrite.All"),
         "https://learn.microsoft.com/graph/api/user-post-approleassignments"),
    Rule("DELETE", "users/{uid}/appRoleAssignments/{aid}",
         anyof("AppRoleAssignment.ReadWrite.All"),
         "https://learn.microsoft.com/graph/api/user-delete-approleassignments"),
    Rule("GET", "servicePrincipals", anyof("Application.Read.All", DIR_READ), "unverified"),
    Rule("GET", "servicePrincipals/{sid}", anyof("Application.Read.All", DIR_READ),
         "unverified"),
    # Purview audit log query API: the Exchange-scoped permission is the least privileged
    # for Exchange records, AuditLogsQuery.Read.All covers every service.
    Rule("POST", "security/auditLog/queries", AUDIT_QUERY, AUDIT_QUERY_DOC),
    Rule("GET", "security/auditLog/queries/{qid}", AUDIT_QUERY, AUDIT_QUERY_DOC),
    Rule("GET", "security/auditLog/queries/{qid}/records", AUDIT_QUERY, AUDIT_QUERY_DOC),
    # Every cmdlet: one application permission and an Entra role holding the cmdlets. The
    # Admin API page names Exchange.ManageAsAppV2 for its own endpoints; the endpoint the
    # V3 module uses (the one the responder calls) takes Exchange.ManageAsApp.
    Rule("POST", "InvokeCommand", anyof("Exchange.ManageAsApp"), EXO_AUTH, api="exchange",
         role_check="exchange"),
)


def find_rule(req: EmuRequest) -> tuple[Rule, dict[str, str]] | None:
    """The most specific matching row (most literal segments: `authentication/requirements`
    before `authentication/{mtype}`)."""
    if req.api == "exchange":
        return next(r for r in RULES if r.api == "exchange"), {}
    best: tuple[int, Rule, dict[str, str]] | None = None
    for rule in RULES:
        if rule.api != "graph":
            continue
        params = rule.matches(req.method, req.version, req.segments)
        if params is not None and (best is None or len(req.segments) - len(params) > best[0]):
            best = (len(req.segments) - len(params), rule, params)
    return (best[1], best[2]) if best else None


def patch_user_needs(body: Any) -> list[Options]:
    """PATCH /users/{id}: each kind of property needs its own permission (all must hold).

    From the user-update page: passwordProfile -> User-PasswordProfile.ReadWrite.All;
    accountEnabled -> User.EnableDisableAccount.All together with User.Read.All; other
    properties -> User.ReadWrite.All (User.ReadUpdate.All is not modelled: the code does
    not patch other properties). User.ReadWrite.All and Directory.ReadWrite.All are higher.
    """
    # https://learn.microsoft.com/en-us/graph/api/user-update?view=graph-rest-1.0 (research)
    keys = set(body) if isinstance(body, dict) else set()
    groups: list[Options] = []
    if "passwordProfile" in keys:
        groups.append(anyof("User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All",
                            DIR_WRITE))
    if "accountEnabled" in keys:
        groups.append(anyof("User.EnableDisableAccount.All + User.Read.All",
                            "User.ReadWrite.All", DIR_WRITE))
    if keys - {"passwordProfile", "accountEnabled"} or not groups:
        groups.append(anyof("User.ReadWrite.All", DIR_WRITE))
    return groups


def roles_for_user_write(target_roles: list[str], password: bool) -> tuple[str, ...]:
    """Directory roles that may reset the password of / enable / disable this target.

    App-only password and accountEnabled writes also need a directory role of sufficient
    rank ("Who can reset passwords" / "Who can perform sensitive actions"): a user without
    an admin role can be handled by User Administrator (passwords also by Helpdesk and
    Authentication Administrator); a target holding any admin role is modelled
    conservatively as needing Privileged Authentication Administrator (the tables let User
    Administrator reset a few limited admins; that finer rank is not modelled).
    """
    # https://learn.microsoft.com/en-us/graph/api/user-update?view=graph-rest-1.0 (research)
    if target_roles:
        return (PAA, GA)
    if password:
        return (USER_ADMIN, HELPDESK, AUTH_ADMIN, PAA, GA)
    return (USER_ADMIN, PAA, GA)


# ---------------------------------------------------------------------------- decisions
@dataclass
class Decision:
    allowed: bool
    rule: str | None = None
    needs: list[list[list[str]]] = field(default_factory=list)  # all-of groups of any-of sets
    roles: list[str] = field(default_factory=list)
    missing: str = ""  # "permission" | "role" | "licence" | ""
    limited: list[list[list[str]]] = field(default_factory=list)  # sets that enrich the answer

    def public(self) -> dict[str, Any]:
        return {"rule": self.rule, "needs": self.needs, "roles": self.roles,
                "allowed": self.allowed, "missing": self.missing or None,
                "limited": self.limited}


def decide(req: EmuRequest, grant: Grant, tenant: Any) -> Decision:
    """Does this grant allow this request? Routes not in the table are allowed (and say so
    in the log: `rule` None); tests/emulator checks that every route has a row."""
    found = find_rule(req)
    if found is None:
        return Decision(True)
    rule, params = found
    groups = patch_user_needs(req.body) if rule.role_check == "user-write" else [rule.needs]
    dec = Decision(True, rule=f"{rule.method} {rule.path}",
                   needs=[[sorted(o) for o in g] for g in groups],
                   limited=[[sorted(o) for o in opts] for _, opts in rule.limited])
    for group in groups:
        if not any(grant.holds(option) for option in group):
            dec.allowed, dec.missing = False, "permission"
            return dec
    if rule.role_check == "user-write" and isinstance(req.body, dict) and (
            "passwordProfile" in req.body or "accountEnabled" in req.body):
        user = tenant.find_user(params.get("uid", ""))
        target_roles = [r["displayName"] for r in tenant.roles_of(user["id"])] if user else []
        dec.roles = list(roles_for_user_write(target_roles, "passwordProfile" in req.body))
    elif rule.role_check == "exchange":
        # App-only access to Exchange needs an Entra role holding the cmdlets; Exchange
        # Administrator (or Global Administrator) holds those the responder runs.
        dec.roles = exchange_roles(req.cmdlet)
    if dec.roles and not grant.has_role(dec.roles):
        dec.allowed, dec.missing = False, "role"
    if rule.denial == "identity" and not licensed(tenant, "identityProtection"):
        dec.allowed, dec.missing = False, "licence"
    return dec


def licensed(tenant: Any, feature: str) -> bool:
    return bool((getattr(tenant, "licences", None) or {}).get(feature, True))


def denial(req: EmuRequest, dec: Decision) -> EmuResponse:
    """The error Graph or Exchange answers for a refused call."""
    found = find_rule(req)
    kind = found[0].denial if found else "directory"
    if req.api == "exchange":
        # The reference notes: a missing role answers 401 "... is not allowed to call
        # <cmdlet>"; the docs give no body for a token without Exchange.ManageAsApp, so the
        # same shape is used (the responder maps both to a permanent Forbidden).
        cmdlet = req.cmdlet or "the cmdlet"
        return exchange_error_response(
            401, "UnAuthorized",
            f"The application is not allowed to call {cmdlet}.",
            exc_type="Microsoft.Exchange.Management.RestApiClient.UnAuthorizedException")
    if dec.missing == "licence":
        # The riskyUsers pages say the API needs Entra ID P2 but give no error body; the code
        # Graph uses for premium-gated reports is used here (the docs are silent).
        # https://learn.microsoft.com/en-in/graph/api/riskyuser-get?view=graph-rest-1.0
        return graph_error_response(
            403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "The tenant has no licence for Microsoft Entra ID Protection (Entra ID P2).", req)
    if kind == "mail":
        # Outlook-backed calls answer 403 ErrorAccessDenied (Microsoft Q&A, mailFolders):
        # https://learn.microsoft.com/answers/questions/1025656/error-access-denied-while-using-usersltuseridgtmai.html
        return graph_error_response(403, "ErrorAccessDenied",
                                    "Access is denied. Check credentials and try again.", req)
    # Directory and Identity Protection: Authorization_RequestDenied. The body for Identity
    # Protection is not documented; the directory shape is used.
    return graph_error_response(403, "Authorization_RequestDenied",
                                "Insufficient privileges to complete the operation.", req)



def limit(req: EmuRequest, grant: Grant, resp: EmuResponse) -> EmuResponse:
    """Trim members the grant may not read to `@odata.type` and `id` (limited information)."""
    found = find_rule(req)
    if found is None or not found[0].limited or resp.status >= 400:
        return resp
    body = resp.body
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        return resp
    hidden = {t for t, options in found[0].limited if not any(grant.holds(o) for o in options)}
    if hidden:
        body["value"] = [{"@odata.type": v["@odata.type"], "id": v.get("id")}
                         if isinstance(v, dict) and v.get("@odata.type") in hidden else v
                         for v in body["value"]]
    return resp
