"""Preflight: can this tenant run the responder, before anything is contained?

Read-only checks against the configured tenant, with the app's own credential: the app
roles in its access tokens against the permissions the code declares, its directory role
assignments against the roles the code declares, the Exchange admin endpoint, every group
and account the policy names, the Identity Protection licence, the Secure Score and audit
settings the sweeps read, and what dry run means right now. Each check says OK, missing or
warning and how to fix it. `ok` is true only when every *enabled* feature can run; a gap
that only a disabled feature has is a warning.

The access token is decoded (its middle base64url segment, no signature check: the app only
reads what it was given) and then dropped: it is never printed, logged, stored or sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.errors import Forbidden, NotFound, ServiceError
from shared.permissions import Requirement, collect, declare
from shared.playbook.catalogue import STEP_NAMES
from shared.playbook.registry import REGISTRY as STEPS
from shared.safety import notify
from shared.services import Services
from shared.sweeps import SWEEPS
from shared.tenant import exchange as exo
from shared.tenant.credentials import EXCHANGE_SCOPE, GRAPH_SCOPE
from shared.tenant.graph import role_management
from shared.tenant.graph.client import build_path
from shared.tenant.graph.directory import (
    PERM_MEMBER_READ,
    PERM_ROLE_READ,
    PERM_USER_READ,
    resolve_user,
)
from shared.tenant.graph.identity_protection import PERM_RISKY_READ
from shared.tenant.graph.security import PERM_SECURITY_READ

log = logging.getLogger("responder.preflight")

COMPONENT = "preflight"
# Role assignments of the app's service principal: RoleManagement.Read.Directory is the least
# privileged application permission; the list supports $filter on principalId and $expand of
# roleDefinition (https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments,
# https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleassignment).
# riskyUsers: IdentityRiskyUser.Read.All, and "requires a Microsoft Entra ID P2 license"
# (https://learn.microsoft.com/en-in/graph/api/riskyuser-get?view=graph-rest-1.0).
# secureScores: SecurityEvents.Read.All, `GET /security/secureScores?$top=1` is documented
# (https://learn.microsoft.com/en-za/graph/api/security-list-securescores?view=graph-rest-1.0).
# Groups: GroupMember.Read.All, as the exclusion checks already read groups; that it is the
# least privileged permission of GET /groups/{id} was not verified in the docs.
declare(COMPONENT,
        graph=(PERM_ROLE_READ, PERM_USER_READ, PERM_MEMBER_READ, PERM_RISKY_READ,
               PERM_SECURITY_READ),
        exchange=(exo.PERM_EXCHANGE,),
        why="preflight (CLI and timer): read the app's directory role assignments, the "
            "policy's groups and accounts, Identity Protection and Secure Score availability, "
            "and the Exchange organisation config; changes nothing")

Status = Literal["ok", "missing", "warning"]
SCHEMA_VERSION = 1
POLLER_FUNCTION = "risk_poller"
P2_COMPONENTS = ("step:confirm_compromised", "alerts.poller", "alerts.user-risk-check",
                 "sweep:risky_users")
"""Features that read or write Identity Protection (riskyUsers needs Entra ID P2)."""
ROLE_TEMPLATES = {
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
}
"""Built-in role template ids: a directory roleAssignment's roleDefinitionId is the template
id for built-in roles (the documented example filters Global Administrator by it)."""
ROLE_FIX = ("assign the directory role to the app's service principal {who}: docs/deploy.md "
            "'4. Directory roles' (Entra admin center > Roles & admins > {role} > Add "
            "assignments); with PIM make it active and permanent")
PERMISSION_FIX = ("grant the application permission {perm} to the app's identity "
                  "(redeploy infra/: it grants every permission in infra/permissions.json; "
                  "tokens pick up a new grant within about an hour)")


@dataclass
class Check:
    """One line of the preflight table."""

    check: str
    """Stable name, e.g. `graph-permission:User.Read.All` (automation keys on it)."""
    area: str
    status: Status
    detail: str
    fix: str = ""
    features: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"check": self.check, "area": self.area, "status": self.status,
                "detail": self.detail, "fix": self.fix, "features": self.features}


@dataclass
class Report:
    tenant: str
    checks: list[Check] = field(default_factory=list)
    dry_run: bool = False
    enabled_features: list[str] = field(default_factory=list)
    writing_steps: dict[str, list[str]] = field(default_factory=dict)
    """Per playbook, the steps that write to the tenant once dry run is off."""

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if c.status == "missing"]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s)
                for s in ("ok", "missing", "warning")}

    def to_dict(self) -> dict[str, Any]:
        return {"schemaVersion": SCHEMA_VERSION, "tenant": self.tenant, "ok": self.ok,
                "exitCode": self.exit_code, "dryRun": self.dry_run, "summary": self.counts(),
                "enabledFeatures": self.enabled_features,
                "dryRunOff": {"writingSteps": self.writing_steps},
                "checks": [c.public() for c in self.checks]}

    def json_text(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def text(self) -> str:
        """The table people read: check | status | detail | how to fix."""
        label = {"ok": "OK", "missing": "MISSING", "warning": "warning"}
        rows = [(c.check, label[c.status], c.detail, c.fix) for c in self.checks]
        w0 = min(max([len("check"), *(len(r[0]) for r in rows)]), 60)
        lines = [f"preflight for tenant {self.tenant}", "",
                 f"{'check':<{w0}}  {'status':<8}  detail / how to fix",
                 f"{'-' * w0}  {'-' * 8}  {'-' * 40}"]
        for name, status, detail, fix in rows:
            lines.append(f"{name:<{w0}}  {status:<8}  {detail}")
            if fix and status != "OK":
                lines.append(f"{'':<{w0}}  {'':<8}  fix: {fix}")
        c = self.counts()
        lines += ["", f"{c['ok']} ok, {c['missing']} missing, {c['warning']} warning(s): "
                      + ("every enabled feature can run" if self.ok
                         else "some enabled features cannot run (see MISSING)")]
        return "\n".join(lines)


# ---------------------------------------------------------------- token claims
def token_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT-shaped access token, or None when it is not one.

    Access tokens are JWTs whose payload carries `roles` (the app permissions of a client
    credential token), `oid` (the service principal's object id) and `appid`/`azp`
    (MicrosoftDocs/entra-docs:docs/identity-platform/access-token-claims-reference.md;
    https://learn.microsoft.com/pl-pl/entra/identity-platform/access-token-claims-reference).
    The signature is not verified: the app reads its own token, it does not trust a caller.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


async def _claims(services: Services, scope: str) -> tuple[dict[str, Any] | None, str]:
    """Claims of the token the configured credential gives for `scope`; the token itself
    goes out of scope here. Returns (claims or None, an error sentence)."""
    try:
        access = await services.credential.get_token(scope)
    except Exception as exc:  # any credential failure: name its type, never its text
        return None, f"no token for {scope}: {type(exc).__name__}"
    claims = token_claims(access.token)
    del access
    if claims is None:
        return None, "the token is not a JWT (a static token?): its app roles cannot be read"
    if is_user_token(claims):
        return None, ("a user's token (delegated: `scp`, no app `roles`): the app's own "
                      "rights are checked by the deployed app's preflight timer")
    return claims, ""


def is_user_token(claims: Mapping[str, Any]) -> bool:
    """`scp` is "only included for user tokens"; app tokens carry `roles` (claims reference
    above). `idtyp` is an optional claim, used when present."""
    return claims.get("idtyp") == "user" or ("scp" in claims and "roles" not in claims)


# ---------------------------------------------------------------- features
def enabled_features(services: Services, env: Mapping[str, str]) -> list[str]:
    """The components that run with this policy and these settings."""
    policy = services.policy
    features = {f"step:{s}" for steps in policy.playbooks.values() for s in steps
                if s in STEPS}
    features |= {f"sweep:{name}" for name, cls in SWEEPS.items() if cls().enabled(services)}
    # AzureWebJobs.<function>.Disabled is the Functions host's switch for one function.
    if (env.get(f"AzureWebJobs.{POLLER_FUNCTION}.Disabled") or "").lower() not in ("true",
                                                                                  "1"):
        features |= {"alerts.poller", "alerts.user-risk-check"}
    if policy.notify.soc_mailbox and policy.notify.sender:
        features.add("notify")  # the mail channel is the one that needs a permission
    if policy.privileged.require_approval:
        features.add("approvals")
    features |= {"exclusions", "release"}
    return sorted(features)


def _needers(catalogue: Mapping[str, Requirement], kind: str, name: str) -> list[str]:
    return sorted(c for c, r in catalogue.items() if c != COMPONENT
                  and name in getattr(r, kind))


def _permission_check(area: str, perm: str, held: set[str] | None, needers: list[str],
                      enabled: set[str], why_unknown: str) -> Check:
    on = [n for n in needers if n in enabled]
    name = f"{area}:{perm}"
    if held is None:
        return Check(name, area, "warning", f"not checked: {why_unknown}",
                     "run preflight with the app's real credential", on or needers)
    if perm in held:
        return Check(name, area, "ok", "granted", "", on or needers)
    fix = PERMISSION_FIX.format(perm=perm)
    if on:
        return Check(name, area, "missing", f"not in the token's roles; needed by "
                     f"{', '.join(on)}", fix, on)
    return Check(name, area, "warning", "not granted; needed only by disabled features "
                 f"({', '.join(needers)})", fix, needers)


# ---------------------------------------------------------------- the checks
async def _token_checks(report: Report, services: Services,
                        catalogue: Mapping[str, Requirement],
                        enabled: set[str]) -> dict[str, Any] | None:
    graph_claims, why = await _claims(services, GRAPH_SCOPE)
    report.checks.append(Check(
        "token:graph", "token", "ok" if graph_claims else "warning",
        "an app token for Microsoft Graph; its roles are read below" if graph_claims else why,
        "" if graph_claims else "use the managed identity (RESPONDER_CREDENTIAL)"))
    held = {str(r) for r in graph_claims.get("roles") or []} if graph_claims else None
    required = {p for c, r in catalogue.items() if c != COMPONENT for p in r.graph}
    for perm in sorted(required):
        report.checks.append(_permission_check("graph-permission", perm, held,
                                               _needers(catalogue, "graph", perm), enabled,
                                               why))
    # Permissions requested only when the policy enables a component (RoleManagement.
    # ReadWrite.Directory for remove_admin_roles): checked only when a playbook uses it.
    for perm in sorted({p for c, r in catalogue.items() if c in enabled
                        for p in r.optional_graph} - required):
        users = [n for n in _needers(catalogue, "optional_graph", perm) if n in enabled]
        check = _permission_check("graph-permission", perm, held, users, enabled, why)
        if check.status == "missing":
            check.fix = (f"redeploy with the parameter that enables {', '.join(users)} "
                         "(enableRoleRemoval for step:remove_admin_roles), or grant "
                         f"{perm} by hand; or remove the step from the policy's playbooks")
        report.checks.append(check)
    ex_claims, ex_why = await _claims(services, EXCHANGE_SCOPE)
    ex_held = {str(r) for r in ex_claims.get("roles") or []} if ex_claims else None
    for perm in sorted({p for c, r in catalogue.items() if c != COMPONENT
                        for p in r.exchange}):
        report.checks.append(_permission_check("exchange-permission", perm, ex_held,
                                               _needers(catalogue, "exchange", perm),
                                               enabled, ex_why))
    return graph_claims


async def _role_checks(report: Report, services: Services,
                       catalogue: Mapping[str, Requirement], enabled: set[str],
                       claims: dict[str, Any] | None) -> None:
    roles = sorted({p for c, r in catalogue.items() if c != COMPONENT for p in r.roles})
    oid = str((claims or {}).get("oid") or "")
    who = f"(object id {oid})" if oid else "(the managed identity)"
    assigned: set[str] | None = None
    reason = ""
    if not oid:
        reason = "the app's service principal is unknown (no oid claim in its token)"
    else:
        try:
            # Direct assignments only: a role held through a role-assignable group is not
            # listed here (transitiveRoleAssignments is beta only), so it shows as missing.
            rows = await role_management.role_assignments(services.graph, oid)
            assigned = set()
            for row in rows:
                definition = row.get("roleDefinition") or {}
                assigned |= {str(x) for x in (definition.get("displayName"),
                                               definition.get("templateId"),
                                               row.get("roleDefinitionId")) if x}
        except Forbidden as exc:
            reason = f"cannot read role assignments (HTTP {exc.status}): grant " \
                     f"{PERM_ROLE_READ}"
        except ServiceError as exc:
            reason = f"cannot read role assignments: {type(exc).__name__} HTTP {exc.status}"
    for role in roles:
        needers = _needers(catalogue, "roles", role)
        on = [n for n in needers if n in enabled]
        name = f"directory-role:{role}"
        fix = ROLE_FIX.format(who=who, role=role)
        if assigned is None:
            report.checks.append(Check(name, "directory-roles", "warning",
                                       f"not checked: {reason}", fix, on or needers))
        elif role in assigned or ROLE_TEMPLATES.get(role, "-") in assigned:
            report.checks.append(Check(name, "directory-roles", "ok", "assigned", "",
                                       on or needers))
        elif on:
            report.checks.append(Check(name, "directory-roles", "missing",
                                       f"not assigned; needed by {', '.join(on)}", fix, on))
        else:
            report.checks.append(Check(name, "directory-roles", "warning",
                                       "not assigned; needed only by disabled features",
                                       fix, needers))


async def _exchange_checks(report: Report, services: Services,
                           catalogue: Mapping[str, Requirement], enabled: set[str]) -> None:
    needers = [c for c, r in catalogue.items() if r.exchange and c != COMPONENT]
    on = [n for n in needers if n in enabled]
    fix = ("grant Exchange.ManageAsApp and assign the Exchange Administrator directory role "
           "(docs/deploy.md steps 3 and 4)")
    try:
        config = await exo.organization_config(services.exchange.view(read_only=True))
    except Forbidden as exc:
        # The admin endpoint answers 401/403 without the permission or the role
        # (docs/deploy.md, "4. Directory roles").
        report.checks.append(Check("exchange:admin-api", "exchange",
                                   "missing" if on else "warning",
                                   f"Get-OrganizationConfig refused (HTTP {exc.status})", fix,
                                   on or needers))
        return
    except ServiceError as exc:
        report.checks.append(Check("exchange:admin-api", "exchange", "warning",
                                   f"Get-OrganizationConfig failed: {type(exc).__name__} "
                                   f"HTTP {exc.status}", "try again; check service health",
                                   on or needers))
        return
    report.checks.append(Check("exchange:admin-api", "exchange", "ok",
                               "Get-OrganizationConfig answers", "", on or needers))
    # AuditDisabled False = mailbox auditing on by default is on for the organisation
    # (https://learn.microsoft.com/en-us/microsoft-365/compliance/audit-mailboxes?view=o365-worldwide).
    disabled = config.get("AuditDisabled")
    mode = services.policy.sweeps.audit.organization
    if disabled is True:
        report.checks.append(Check(
            "exchange:audit-by-default", "audit", "warning",
            "mailbox auditing is OFF for the organisation (AuditDisabled true)",
            "Set-OrganizationConfig -AuditDisabled $false, or set the policy's "
            "sweeps.audit.organization to \"fix\"" if mode != "fix" else
            "the audit sweep turns it on (sweeps.audit.organization is \"fix\")",
            ["sweep:audit"]))
    else:
        report.checks.append(Check("exchange:audit-by-default", "audit", "ok",
                                   "mailbox auditing on by default (AuditDisabled false)", "",
                                   ["sweep:audit"]))


async def _policy_checks(report: Report, services: Services) -> None:
    policy = services.policy
    groups: list[tuple[str, str, str, bool]] = []
    if policy.mfa.conditional_access_group_id:
        groups.append(("policy:mfa.conditionalAccessGroupId",
                       policy.mfa.conditional_access_group_id, "step:require_mfa",
                       "step:require_mfa" in report.enabled_features))
    groups += [(f"policy:exclusions.groups:{g}", g, "exclusions", True)
               for g in policy.exclusions.groups]
    for name, gid, feature, on in groups:
        try:
            raw = await services.graph.request(
                "GET", build_path("/groups/{}", gid), params={"$select": "id,displayName"},
                permission=PERM_MEMBER_READ)
            report.checks.append(Check(name, "policy", "ok",
                                       f"group exists: {(raw or {}).get('displayName', gid)}",
                                       "", [feature]))
        except NotFound:
            report.checks.append(Check(name, "policy", "missing" if on else "warning",
                                       f"no group with object id {gid}",
                                       "create the group or correct the id in the policy file",
                                       [feature]))
        except ServiceError as exc:
            report.checks.append(Check(name, "policy", "warning",
                                       f"cannot read the group ({type(exc).__name__} HTTP "
                                       f"{exc.status})", f"grant {PERM_MEMBER_READ}",
                                       [feature]))
    users = [(f"policy:exclusions.users:{u}", u, "exclusions", True)
             for u in policy.exclusions.users]
    if "notify" in report.enabled_features and policy.notify.sender:
        users.append(("policy:notify.sender", policy.notify.sender, "notify", True))
    for name, who, feature, _on in users:
        try:
            user = await resolve_user(services.graph, who)
            report.checks.append(Check(name, "policy", "ok",
                                       f"account exists: {user.upn or user.id}", "",
                                       [feature]))
        except NotFound:
            report.checks.append(Check(
                name, "policy", "missing", f"no account {who!r} in the tenant: "
                + ("this break-glass entry protects nobody" if feature == "exclusions"
                   else "notifications cannot be sent from it"),
                "correct the UPN or object id in the policy file", [feature]))
        except ServiceError as exc:
            report.checks.append(Check(name, "policy", "warning",
                                       f"cannot read the account ({type(exc).__name__} HTTP "
                                       f"{exc.status})", f"grant {PERM_USER_READ}",
                                       [feature]))
    if not policy.exclusions.users and not policy.exclusions.groups:
        report.checks.append(Check("policy:exclusions", "policy", "warning",
                                   "the policy excludes NO account (no break-glass entry)",
                                   "add your break-glass accounts to exclusions.users",
                                   ["exclusions"]))


async def _licence_checks(report: Report, services: Services,
                          graph_claims: dict[str, Any] | None) -> None:
    enabled = set(report.enabled_features)
    on = [f for f in P2_COMPONENTS if f in enabled]
    try:
        await services.graph.request("GET", "/identityProtection/riskyUsers",
                                     params={"$top": "1"}, permission=PERM_RISKY_READ)
        report.checks.append(Check("licence:identity-protection", "licensing", "ok",
                                   "riskyUsers answers (Entra ID P2)", "", on))
    except Forbidden as exc:
        held = {str(r) for r in (graph_claims or {}).get("roles") or []}
        if graph_claims is not None and PERM_RISKY_READ not in held:
            report.checks.append(Check(
                "licence:identity-protection", "licensing", "warning",
                f"not checked: riskyUsers refused (HTTP {exc.status}) and the token lacks "
                f"{PERM_RISKY_READ}", PERMISSION_FIX.format(perm=PERM_RISKY_READ), on))
            return
        # The docs give no error code for an unlicensed tenant: with the permission in the
        # token, a 403 here is read as "no P2" (the conservative reading).
        report.checks.append(Check(
            "licence:identity-protection", "licensing", "missing" if on else "warning",
            "Identity Protection (Entra ID P2) not available: risk-based intake and "
            "confirm_compromised cannot run",
            "license Microsoft Entra ID P2; or remove confirm_compromised from the playbooks, "
            f"disable the risk poller (AzureWebJobs.{POLLER_FUNCTION}.Disabled=true) and "
            "use webhook/queue intake", on))
    except ServiceError as exc:
        report.checks.append(Check("licence:identity-protection", "licensing", "warning",
                                   f"riskyUsers failed: {type(exc).__name__} HTTP "
                                   f"{exc.status}", "try again", on))


async def _secure_score_check(report: Report, services: Services) -> None:
    on = "sweep:secure_score" in report.enabled_features
    try:
        page = await services.graph.request("GET", "/security/secureScores",
                                            params={"$top": "1"},
                                            permission=PERM_SECURITY_READ)
    except Forbidden as exc:
        report.checks.append(Check("secure-score", "sweeps", "missing" if on else "warning",
                                   f"secureScores refused (HTTP {exc.status})",
                                   PERMISSION_FIX.format(perm=PERM_SECURITY_READ),
                                   ["sweep:secure_score"]))
        return
    except ServiceError as exc:
        report.checks.append(Check("secure-score", "sweeps", "warning",
                                   f"secureScores failed: {type(exc).__name__} HTTP "
                                   f"{exc.status}", "try again", ["sweep:secure_score"]))
        return
    rows = (page or {}).get("value") or []
    report.checks.append(Check(
        "secure-score", "sweeps", "ok" if rows else "warning",
        "secureScores readable" if rows else "secureScores readable but empty (a new tenant "
        "gets its first score within a day)", "" if rows else "wait a day",
        ["sweep:secure_score"]))


def _dry_run_check(report: Report, services: Services) -> None:
    policy = services.policy
    writing = {name: [s for s in steps if s in STEPS and not STEPS[s].changes_nothing]
               for name, steps in sorted(policy.playbooks.items())}
    report.writing_steps = writing
    summary = "; ".join(f"{name}: {', '.join(steps) or 'nothing'}"
                        for name, steps in writing.items())
    if services.settings.dry_run:
        report.checks.append(Check(
            "dry-run", "settings", "warning",
            "RESPONDER_DRY_RUN is true: every run plans and reports and writes nothing. "
            f"Turned off, these steps write: {summary}",
            "read a dry-run report (python -m shared.cli remediate <upn> --dry-run), then set "
            "RESPONDER_DRY_RUN=false (azd env set RESPONDER_DRY_RUN false && azd provision)"))
    else:
        report.checks.append(Check(
            "dry-run", "settings", "ok",
            f"RESPONDER_DRY_RUN is false: runs write. Steps that write: {summary}"))
    if services.settings.sweeps_dry_run:
        report.checks.append(Check("sweeps-dry-run", "settings", "warning",
                                   "RESPONDER_SWEEPS_DRY_RUN is true: sweeps change nothing",
                                   "set RESPONDER_SWEEPS_DRY_RUN=false when ready"))


async def run_preflight(services: Services, env: Mapping[str, str] | None = None) -> Report:
    """Every check, read-only. Never raises for a tenant answer: each becomes a line."""
    env = os.environ if env is None else env
    catalogue = collect()
    report = Report(tenant=services.settings.tenant_id, dry_run=services.settings.dry_run,
                    enabled_features=enabled_features(services, env))
    enabled = set(report.enabled_features)
    unknown = sorted({s for steps in services.policy.playbooks.values() for s in steps}
                     - set(STEP_NAMES))
    if unknown:
        report.checks.append(Check("policy:playbooks", "policy", "missing",
                                   f"playbooks name unknown steps {unknown}",
                                   f"use step names from: {', '.join(sorted(STEPS))}"))
    claims = await _token_checks(report, services, catalogue, enabled)
    user_token = await _user_token(services)
    await _role_checks(report, services, catalogue, enabled, claims)
    await _exchange_checks(report, services, catalogue, enabled)
    await _policy_checks(report, services)
    await _licence_checks(report, services, claims)
    await _secure_score_check(report, services)
    _dry_run_check(report, services)
    if user_token:
        # A person's token (`RESPONDER_CREDENTIAL=default` on a laptop): what it may do says
        # nothing about the app's identity, so refusals are warnings, not verdicts. Tenant
        # facts (a policy group or account that does not exist) stay missing.
        for check in report.checks:
            if check.status == "missing" and check.area not in ("policy",):
                check.status = "warning"
                check.detail += " (checked with a user's token, not the app's)"
    return report


async def _user_token(services: Services) -> bool:
    try:
        access = await services.credential.get_token(GRAPH_SCOPE)
    except Exception:  # reported by the token check already
        return False
    claims = token_claims(access.token)
    del access
    return claims is not None and is_user_token(claims)


async def announce(services: Services, report: Report) -> list[notify.Delivery]:
    """Tell the SOC when something an enabled feature needs is missing (never raises)."""
    if report.ok:
        return []
    lines = [f"{c.check}: {c.detail} -> {c.fix}" for c in report.missing]
    return await notify.send(services, notify.Notification(
        event="preflight.failed",
        title=f"preflight: {len(report.missing)} missing for tenant {report.tenant}",
        lines=lines[:50], facts={"check again": "python -m shared.cli preflight"},
        data={"summary": report.counts(), "missing": [c.check for c in report.missing]}))
