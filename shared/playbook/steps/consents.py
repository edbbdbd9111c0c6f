"""App consents: revoke what the user granted to apps during the risk window.

An attacker holding a session can consent an app of their own to the user's mailbox or
files; the consent outlives a password reset and a session revocation. The user's
delegated permission grants have no creation time, so each is dated by its consent event
in the directory audit log; app role assignments carry `createdDateTime`. What cannot be
dated is reported as undetermined and left alone, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidTimestamp, NotFound, ServiceError
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.state import clock
from shared.tenant.graph import consents
from shared.tenant.graph.audit_log import PERM_AUDIT_READ
from shared.tenant.graph.consents import (
    PERM_APP_ROLE_WRITE,
    PERM_DIRECTORY_READ,
    PERM_GRANTS_WRITE,
    PERM_SP_READ,
)
from shared.timestamps import parse_time

AUDIT_LATENCY = timedelta(minutes=60)
"""How late a consent event may reach the directory audit log (the docs give no figure;
the same allowance as for security-info events): without an event, a consent is called
older than the window only once the detection is older than this."""


@dataclass
class _Finding:
    kind: str  # grant | appRoleAssignment
    item: dict[str, Any]
    app: dict[str, Any]
    verdict: str = "keep"  # revoke | keep | allowed | undetermined | notUsers
    reason: str = ""
    dated: str | None = None
    audit_event: str | None = None

    def record(self) -> dict[str, Any]:
        out = {"kind": self.kind, **self.item, "app": self.app, "verdict": self.verdict,
               "reason": self.reason}
        if self.dated:
            out["dated"] = self.dated
        if self.audit_event:
            out["auditEventId"] = self.audit_event
        return out


def _time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return parse_time(str(raw))
    except InvalidTimestamp:
        return None


def _label(f: _Finding) -> str:
    app = f.app.get("displayName") or f.app.get("appId") or f.item.get("clientId") or "?"
    if f.kind == "grant":
        return f"delegated grant to {app} ({f.item.get('scope') or 'no scope'})"
    return f"app role assignment to {app}"


@register
class RevokeConsentGrants(Step):
    """Revoke app consents the user gave within the risk window (delegated grants, app roles).

    Grants are dated by their consent events in the directory audit log, app role
    assignments by createdDateTime; apps on the policy's allow-list, consents older than
    the window and what cannot be dated are reported and left alone."""

    name = "revoke_consent_grants"
    graph_permissions = (PERM_DIRECTORY_READ, PERM_AUDIT_READ, PERM_SP_READ,
                         PERM_GRANTS_WRITE, PERM_APP_ROLE_WRITE)
    reversible = "release re-creates the revoked grants (same client, API and scope) and " \
                 "app role assignments"
    undo_order = 60
    dry_run_description = "would revoke the delegated permission grants and app role " \
                          "assignments the user gave to apps within the policy window " \
                          "before the detection or after it (apps on consents." \
                          "allowedAppIds excepted)"

    async def plan(self, ctx: StepContext) -> Plan:
        policy = ctx.policy.consents
        since = ctx.detected_at - timedelta(days=policy.window_days)
        grants = await consents.user_grants(ctx.graph, ctx.user.id)
        assignments = await consents.user_app_role_assignments(ctx.graph, ctx.user.id)
        apps = await _apps(ctx, [g["clientId"] for g in grants]
                           + [a["resourceId"] for a in assignments])
        findings = [_Finding("grant", g, apps.get(str(g["clientId"]), {})) for g in grants]
        findings += [_Finding("appRoleAssignment", a, apps.get(str(a["resourceId"]), {}))
                     for a in assignments]
        await _date(ctx, findings, since)
        allowed = {a.lower() for a in policy.allowed_app_ids}
        for f in findings:
            if f.verdict == "notUsers":
                continue
            if str(f.app.get("appId") or "").lower() in allowed:
                f.verdict, f.reason = "allowed", \
                    f"app {f.app.get('appId')} is on consents.allowedAppIds ({f.reason})"
        records = [f.record() for f in findings]
        revoke = [f.record() for f in findings if f.verdict == "revoke"]
        data = {"since": since.isoformat(), "found": records, "revoke": revoke}
        if not revoke:
            why = (f"no consent given since {since.isoformat()} to an app not allow-listed"
                   if findings else "the user has given no app consent of their own")
            return Plan.nothing_to_do(why, **data)
        actions = [f"revoke {_label(f)} (consented {f.dated})" for f in findings
                   if f.verdict == "revoke"]
        actions += [f"leave {_label(f)}: {f.reason}" for f in findings
                    if f.verdict in ("undetermined", "allowed")]
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        found = list(plan.data.get("found", []))
        data: dict[str, Any] = {"since": plan.data.get("since"), "found": found}
        # What was found is stored before anything is revoked: a run that stops half-way
        # still has the evidence.
        data["evidenceBlob"] = await ctx.journal.put_evidence(ctx.run.run_id, "consents",
                                                              data)
        changes: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for item in plan.data.get("revoke", []):
            try:
                if item["kind"] == "grant":
                    await consents.delete_grant(ctx.graph, str(item["id"]))
                else:
                    await consents.delete_app_role_assignment(ctx.graph, ctx.user.id,
                                                              str(item["id"]))
            except NotFound:
                continue  # already gone (a resumed run): the state is what we want
            except ServiceError as exc:
                if exc.retryable:
                    raise
                failed.append({"id": item.get("id"), "kind": item["kind"],
                               "reason": f"{type(exc).__name__} HTTP {exc.status}: {exc}"})
                continue
            keep = ("id", "clientId", "consentType", "principalId", "resourceId", "scope",
                    "appRoleId", "dated", "app")
            changes.append({"what": "oauth2PermissionGrant" if item["kind"] == "grant"
                            else "appRoleAssignment",
                            **{k: item[k] for k in keep if item.get(k) is not None},
                            "undo": "re-create"})
        undetermined = [f for f in found if f["verdict"] == "undetermined"]
        data.update(revoked=[c["id"] for c in changes], notRevoked=failed,
                    undetermined=undetermined,
                    leftAlone=[f for f in found if f["verdict"] in ("keep", "allowed",
                                                                   "notUsers")])
        summary = f"revoked {len(changes)} consent(s) given in the window"
        if failed:
            summary += f"; {len(failed)} could not be revoked"
        if undetermined:
            summary += f"; {len(undetermined)} undetermined (consent time unknown)"
        if failed or undetermined:
            status = StepStatus.PARTIAL
        else:
            status = StepStatus.DONE if changes else StepStatus.NOTHING_TO_DO
        return StepResult(step=self.name, status=status, summary=summary, changes=changes,
                          data=data)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Read the user's grants and assignments again: the revoked ones must be gone."""
        revoked = {str(c.get("id")): c for c in result.changes}
        if not revoked:
            return None
        try:
            grants = await consents.user_grants(ctx.graph, ctx.user.id)
            assignments = await consents.user_app_role_assignments(ctx.graph, ctx.user.id)
        except ServiceError as exc:
            if exc.retryable:
                raise
            return Verification(False, note=f"could not read back: {type(exc).__name__} "
                                            f"HTTP {exc.status}")
        present = {str(x.get("id")) for x in [*grants, *assignments]}
        # A grant re-consented since has a new id but the same client and API: still there.
        pairs = {(str(g.get("clientId")), str(g.get("resourceId"))) for g in grants}
        differences = []
        for rid, change in revoked.items():
            if rid in present:
                differences.append(f"{change.get('what')} {rid} is still there")
            elif change.get("what") == "oauth2PermissionGrant" and \
                    (str(change.get("clientId")), str(change.get("resourceId"))) in pairs:
                differences.append(f"a grant to client {change.get('clientId')} for the "
                                   "same API exists again (consented again?)")
        return Verification(not differences, differences)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Give the consents back: a false positive should not cost the user their apps."""
        items: list[Undo] = []
        for c in finished_changes(result):
            label = (c.get("app") or {}).get("displayName") or c.get("clientId") or \
                c.get("resourceId")
            if c.get("what") == "oauth2PermissionGrant":
                async def grant(c: dict[str, Any] = c) -> str | None:
                    for g in await consents.user_grants(ctx.graph, ctx.user_id):
                        if (g.get("clientId"), g.get("resourceId")) == (c["clientId"],
                                                                        c["resourceId"]):
                            return "a grant for that app and API exists again"
                    await consents.create_grant(ctx.graph, {**c, "principalId": ctx.user_id})
                    return None
                items.append(Undo(f"grant:{c['id']}", f"delegated grant to {label} "
                                  f"re-created ({c.get('scope') or 'no scope'})", grant))
            elif c.get("what") == "appRoleAssignment":
                async def assignment(c: dict[str, Any] = c) -> str | None:
                    for a in await consents.user_app_role_assignments(ctx.graph, ctx.user_id):
                        if (a.get("principalId"), a.get("resourceId"), a.get("appRoleId")) \
                                == (ctx.user_id, c["resourceId"], c.get("appRoleId")):
                            return "the assignment exists again"
                    await consents.create_app_role_assignment(ctx.graph, ctx.user_id, c)
                    return None
                items.append(Undo(f"appRoleAssignment:{c['id']}",
                                  f"app role assignment to {label} re-created", assignment))
        return items


async def _apps(ctx: StepContext, sp_ids: list[str]) -> dict[str, dict[str, Any]]:
    """appId and display name of each service principal (one read each, once)."""
    out: dict[str, dict[str, Any]] = {}
    for sp_id in dict.fromkeys(str(s) for s in sp_ids if s):
        sp = await consents.service_principal(ctx.graph, sp_id)
        out[sp_id] = ({"id": sp_id, "appId": sp.get("appId"),
                       "displayName": sp.get("displayName"),
                       "publisherName": sp.get("publisherName")} if sp
                      else {"id": sp_id, "appId": None, "displayName": None,
                            "note": "service principal not found"})
    return out


async def _date(ctx: StepContext, findings: list[_Finding], since: datetime) -> None:
    """Give each finding its verdict: revoke (consented since `since`), keep (older),
    undetermined (no date), notUsers (an assignment the user holds through a group)."""
    fresh = ctx.detected_at > clock.now() - AUDIT_LATENCY
    need_audit: list[_Finding] = []
    for f in findings:
        if f.kind == "appRoleAssignment":
            if str(f.item.get("principalId") or "").lower() != ctx.user.id.lower():
                f.verdict = "notUsers"
                f.reason = (f"assigned to {f.item.get('principalType') or 'a group'} "
                            f"{f.item.get('principalDisplayName') or f.item.get('principalId')}"
                            ", not to the user: left to an administrator")
                continue
            created = _time(f.item.get("createdDateTime"))
            if created is not None:
                f.dated = str(f.item.get("createdDateTime"))
                f.verdict, f.reason = (("revoke", "created in the window") if created >= since
                                       else ("keep", "created before the window"))
                continue
        need_audit.append(f)
    if not need_audit:
        return
    try:
        events = await consents.consent_events(
            ctx.graph, since, consents.GRANT_ACTIVITIES + consents.APP_ROLE_ACTIVITIES)
    except ServiceError as exc:
        if exc.retryable:
            raise
        for f in need_audit:
            f.verdict = "undetermined"
            f.reason = (f"the directory audit log could not be read ({type(exc).__name__} "
                        f"HTTP {exc.status})")
        return
    mine = [e for e in events if consents.involves_user(e, ctx.user.id)]
    for f in need_audit:
        app_id = str(f.item.get("clientId") if f.kind == "grant" else f.item.get("resourceId"))
        wanted = (consents.GRANT_ACTIVITIES if f.kind == "grant"
                  else consents.APP_ROLE_ACTIVITIES)
        matched = [e for e in mine if e.get("activityDisplayName") in wanted
                   and consents.names_object(e, app_id)]
        if matched:
            last = matched[-1]
            f.verdict = "revoke"
            f.reason = (f"'{last.get('activityDisplayName')}' in the directory audit log "
                        "within the window")
            f.dated, f.audit_event = str(last.get("activityDateTime")), str(last.get("id"))
        elif fresh:
            f.verdict = "undetermined"
            f.reason = ("no consent event in the directory audit log yet, but the detection "
                        f"is recent and audit events can arrive late (allowance "
                        f"{AUDIT_LATENCY})")
        else:
            f.verdict = "keep"
            f.reason = f"no consent event in the directory audit log since {since.isoformat()}"
