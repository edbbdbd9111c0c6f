"""MFA: require it from now on, and remove the methods an attacker may have registered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import BadRequest, InvalidTimestamp, NotFound, ServiceError
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.state import clock
from shared.tenant.graph import audit_log, auth_methods, directory
from shared.tenant.graph.audit_log import PERM_AUDIT_DIRECTORY_READ, PERM_AUDIT_READ
from shared.tenant.graph.auth_methods import (
    PASSWORD_METHOD_ID,
    PERM_METHODS_READ,
    PERM_METHODS_WRITE,
    PERM_PER_USER_MFA,
    delete_order,
    known,
    method_kind,
)
from shared.tenant.graph.directory import PERM_GROUP_MEMBER, PERM_MEMBER_READ
from shared.timestamps import parse_time


@register
class RequireMfa(Step):
    """Require MFA: the policy's Conditional Access group and/or per-user MFA enforced."""

    name = "require_mfa"
    # GroupMember.Read.All reads the membership back (verify: checkMemberGroups)
    graph_permissions = (PERM_GROUP_MEMBER, PERM_PER_USER_MFA, PERM_MEMBER_READ)
    reversible = "release removes the Conditional Access group membership the run added"
    undo_order = 40
    dry_run_description = "would add the user to the MFA Conditional Access group and/or " \
                          "enforce per-user MFA"

    async def plan(self, ctx: StepContext) -> Plan:
        mfa = ctx.policy.mfa
        actions: list[str] = []
        data: dict[str, Any] = {}
        if mfa.conditional_access_group_id:
            actions.append(f"add to Conditional Access group {mfa.conditional_access_group_id}")
            data["group"] = mfa.conditional_access_group_id
        if mfa.per_user_mfa:
            state = await ctx.per_user_mfa()
            if state != "enforced":
                actions.append(f"per-user MFA {state or 'disabled'} -> enforced")
                data["perUser"] = state or "disabled"
        if not actions:
            if not mfa.conditional_access_group_id and not mfa.per_user_mfa:
                return Plan.skipped("no MFA mechanism configured in the policy")
            return Plan.nothing_to_do("per-user MFA already enforced")
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes: list[dict[str, Any]] = []
        notes: list[str] = []
        group = plan.data.get("group")
        if group:
            added = await ctx.services.group_adder(group).submit(ctx.user.id)
            if added:
                changes.append({"what": "groupMembership", "group": group, "to": "member",
                                "undo": "remove"})
                notes.append("added to the MFA group")
            else:
                notes.append("already in the MFA group")
        if "perUser" in plan.data:
            await auth_methods.enforce_per_user_mfa(ctx.graph, ctx.user.id)
            changes.append({"what": "perUserMfaState", "from": plan.data["perUser"],
                            "to": "enforced"})
            notes.append("per-user MFA enforced")
        status = StepStatus.DONE if changes else StepStatus.NOTHING_TO_DO
        return StepResult(step=self.name, status=status, summary="; ".join(notes),
                          changes=changes)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """The group the run added the user to must list them (checkMemberGroups, which
        answers transitively:
        https://learn.microsoft.com/en-us/graph/api/directoryobject-checkmembergroups), and
        perUserMfaState must read what was set (beta authentication requirements:
        https://learn.microsoft.com/graph/api/authentication-get)."""
        differences: list[str] = []
        for c in result.changes:
            if c.get("what") == "groupMembership" and c.get("group"):
                group = str(c["group"])
                found = await directory.check_member_groups(ctx.graph, ctx.user.id, [group])
                if group not in found:
                    differences.append(f"not a member of the Conditional Access group {group}")
            elif c.get("what") == "perUserMfaState":
                state = await auth_methods.get_per_user_mfa(ctx.graph, ctx.user.id)
                if state != c.get("to"):
                    differences.append(f"perUserMfaState reads {state or 'nothing'}, not "
                                       f"{c.get('to')}")
        return Verification(not differences, differences)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Leave the group the run added, and put per-user MFA back: a false positive should
        not leave a user with an MFA prompt they never had (turn it on by hand to keep it)."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") == "groupMembership" and c.get("group"):
                group = str(c["group"])

                async def leave(group: str = group) -> str | None:
                    removed = await directory.remove_group_member(ctx.graph, group, ctx.user_id)
                    return None if removed else "was no longer a member"
                items.append(Undo(f"group:{group}", f"removed from the Conditional Access "
                                  f"group {group} the run added", leave))
            elif c.get("what") == "perUserMfaState" and c.get("from"):
                state = str(c["from"])

                async def mfa(state: str = state) -> None:
                    await auth_methods.enforce_per_user_mfa(ctx.graph, ctx.user_id, state)
                items.append(Undo("perUserMfa", f"per-user MFA restored to {state}", mfa))
        return items


def _created(method: dict[str, Any]) -> datetime | None:
    """The method's creation time (Graph sends up to 7 fractional digits), or None."""
    raw = method.get("createdDateTime")
    if not raw:
        return None
    try:
        return parse_time(raw)
    except InvalidTimestamp:
        return None


def describe_method(method: dict[str, Any]) -> dict[str, Any]:
    """What is recorded about a removed method (enough to recognise it, no secrets)."""
    keep = ("id", "displayName", "deviceTag", "phoneAppVersion", "model", "phoneType",
            "createdDateTime", "emailAddress")
    out = {k: method[k] for k in keep if method.get(k) is not None}
    if method.get("phoneNumber"):
        number = str(method["phoneNumber"])
        out["phoneNumber"] = "*" * max(0, len(number) - 4) + number[-4:]
    out["kind"] = method_kind(method)
    return out


AUDIT_LATENCY = timedelta(minutes=60)
"""How late a security-info event may reach the directory audit log. The docs give no
figure for directory audit latency (not found); an hour is a conservative allowance. A
method with no event is only called older than the window when the detection is older
than this; otherwise it is reported as undetermined."""


@dataclass
class _Verdict:
    method: dict[str, Any]
    verdict: str  # remove | keep | undetermined | notJudged
    reason: str
    registered: str | None = None
    audit_event: str | None = None

    def record(self) -> dict[str, Any]:
        out = {"method": describe_method(self.method), "verdict": self.verdict,
               "reason": self.reason}
        if self.registered:
            out["registered"] = self.registered
        if self.audit_event:
            out["auditEventId"] = self.audit_event
        return out


@register
class RemoveSuspiciousAuthMethods(Step):
    """Remove MFA methods registered shortly before the detection or after it.

    A method without a creation time (phone, email, software OATH) is dated by its
    security-info event in the directory audit log. What cannot be dated, judged or removed
    is reported with the reason, never dropped."""

    name = "remove_suspicious_auth_methods"
    graph_permissions = (PERM_METHODS_READ, PERM_METHODS_WRITE, PERM_AUDIT_READ,
                         PERM_AUDIT_DIRECTORY_READ)
    directory_roles = ("Privileged Authentication Administrator",)
    disruptive = True
    reversible = "cannot be undone: the user re-registers methods (helpdesk issues a TAP)"
    cannot_undo = ("cannot be undone: removed authentication methods must be registered "
                   "again by the user")
    undo_order = 80
    dry_run_description = "would remove authentication methods registered within the " \
                          "policy window before the detection, or after it (dated by " \
                          "createdDateTime or the directory audit log)"

    async def plan(self, ctx: StepContext) -> Plan:
        window = timedelta(days=ctx.policy.auth_methods.window_days)
        since = ctx.detected_at - window
        verdicts = await _assess(ctx, await ctx.methods(), since)
        remove = sorted((v for v in verdicts if v.verdict == "remove"),
                        key=lambda v: delete_order(v.method))
        blocked = _blocked_by_kept_alternate(remove, verdicts)
        remove = [v for v in remove if all(v is not b for b in blocked)]
        report = [v for v in verdicts if v.verdict in ("undetermined", "notJudged")]
        data = {"methods": [v.method for v in remove],
                "assessment": [v.record() for v in verdicts],
                "notRemovable": [{"method": describe_method(v.method), "reason": v.reason}
                                 for v in blocked],
                "since": since.isoformat()}
        if not remove and not report and not blocked:
            return Plan.nothing_to_do(f"no method registered since {since.isoformat()}")
        actions = [f"remove {method_kind(v.method)} method {_label(v.method)} "
                   f"(registered {v.registered})" for v in remove]
        actions += [f"leave {method_kind(v.method)} method {_label(v.method)}: cannot be "
                    f"removed ({v.reason})" for v in blocked]
        actions += [f"report {method_kind(v.method)} method {_label(v.method)} as "
                    f"{'not judged' if v.verdict == 'notJudged' else 'undetermined'} "
                    f"({v.reason})" for v in report]
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        removed: list[dict[str, Any]] = []
        not_removed: list[dict[str, Any]] = list(plan.data.get("notRemovable", []))
        alternate_left = False
        for m in plan.data["methods"]:
            if alternate_left and m.get("phoneType") == "mobile":
                not_removed.append({"method": describe_method(m), "reason": (
                    "the alternate mobile number could not be removed, and a mobile number "
                    "cannot be deleted while an alternate mobile number exists")})
                continue
            try:
                await auth_methods.delete_method(ctx.graph, ctx.user.id, m)
            except NotFound:
                continue  # already gone (a resumed run): the state is what we want
            except BadRequest as exc:
                not_removed.append({"method": describe_method(m), "reason": _refusal(m, exc)})
                alternate_left = alternate_left or m.get("phoneType") == "alternateMobile"
                continue
            removed.append({"what": "authenticationMethod", "removed": describe_method(m),
                            "undo": "not possible"})
        ctx.forget("methods")
        assessment = plan.data.get("assessment", [])
        undetermined = [a for a in assessment if a["verdict"] == "undetermined"]
        not_judged = [a for a in assessment if a["verdict"] == "notJudged"]
        data = {"since": plan.data.get("since"), "assessment": assessment,
                "notRemoved": not_removed, "undetermined": undetermined,
                "notJudged": not_judged}
        data["evidenceBlob"] = await ctx.journal.put_evidence(
            ctx.run.run_id, "auth-methods", {**data, "removed": removed})
        summary = f"removed {len(removed)} method(s) registered in the window"
        if not_removed:
            summary += f"; {len(not_removed)} could not be removed"
        if undetermined:
            summary += f"; {len(undetermined)} undetermined (registration time unknown)"
        if not_judged:
            summary += f"; {len(not_judged)} of a type not judged"
        if not_removed or undetermined:
            status = StepStatus.PARTIAL
        else:
            status = StepStatus.DONE if removed else StepStatus.NOTHING_TO_DO
        return StepResult(step=self.name, status=status, summary=summary, changes=removed,
                          data=data)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """List the user's methods again (authentication-list-methods:
        https://learn.microsoft.com/en-us/graph/api/authentication-list-methods): no removed
        method may still be listed."""
        gone = {str((c.get("removed") or {}).get("id")): c.get("removed") or {}
                for c in result.changes if c.get("what") == "authenticationMethod"}
        listed = {str(m.get("id")) for m in
                  await auth_methods.list_methods(ctx.graph, ctx.user.id)}
        differences = [f"{m.get('kind')} method '{m.get('displayName') or mid}' is still "
                       "registered" for mid, m in gone.items() if mid in listed]
        return Verification(not differences, differences)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Not undone (see `cannot_undo`); the report names each removed method so the
        helpdesk knows what the user has to register again."""
        items = await super().undo(ctx, result)
        for item in items:
            names = [f"{(c.get('removed') or {}).get('kind')} "
                     f"'{(c.get('removed') or {}).get('displayName') or '?'}'"
                     for c in item.changes or []]
            item.summary += f" (removed: {', '.join(names)})"
        return items


def _label(method: dict[str, Any]) -> str:
    shown = describe_method(method)
    return str(shown.get("displayName") or shown.get("phoneNumber") or
               shown.get("emailAddress") or method.get("id"))


async def _assess(ctx: StepContext, methods: list[dict[str, Any]],
                  since: datetime) -> list[_Verdict]:
    """Judge each method: remove (registered since `since`), keep, undetermined, notJudged."""
    out: list[_Verdict] = []
    undated: list[dict[str, Any]] = []
    for m in methods:
        if m.get("id") == PASSWORD_METHOD_ID:
            continue
        if not known(m):
            out.append(_Verdict(m, "notJudged", f"type {m.get('@odata.type')} is not one "
                                "this responder can judge or delete; check it by hand"))
            continue
        created = _created(m)
        if created is None:
            undated.append(m)
        elif created >= since:
            out.append(_Verdict(m, "remove", "created in the window",
                                registered=str(m.get("createdDateTime"))))
        else:
            out.append(_Verdict(m, "keep", "created before the window",
                                registered=str(m.get("createdDateTime"))))
    if undated:
        out += await _date_from_audit(ctx, undated, since)
    return out


async def _date_from_audit(ctx: StepContext, undated: list[dict[str, Any]],
                           since: datetime) -> list[_Verdict]:
    """Date methods without a creation time by their security-info events since `since`."""
    try:
        events = await audit_log.security_info_events(ctx.graph, ctx.user.id, since)
    except ServiceError as exc:
        if exc.retryable:
            raise
        why = f"the directory audit log could not be read ({type(exc).__name__}: {exc})"
        return [_Verdict(m, "undetermined", why) for m in undated]
    registrations = [e for e in events if audit_log.is_registration(e)]
    named = [(e, audit_log.method_of_event(e)) for e in registrations]
    unnamed = [e for e, hint in named if hint is None]
    phones = [m for m in undated if method_kind(m) == "phone"]
    fresh = ctx.detected_at > clock.now() - AUDIT_LATENCY
    out: list[_Verdict] = []
    for m in undated:
        kind = method_kind(m)
        exact = [e for e, hint in named if hint is not None and hint[0] == kind and
                 (kind != "phone" or hint[1] == m.get("phoneType"))]
        loose = [e for e, hint in named if hint == ("phone", None)] if kind == "phone" else []
        same_kind = sum(1 for x in undated if method_kind(x) == kind)
        if exact and kind != "phone" and same_kind > 1:
            out.append(_Verdict(m, "undetermined", f"{same_kind} {kind} methods without a "
                                "creation time; the audit event does not say which one"))
        elif exact or (loose and len(phones) == 1):
            last = (exact or loose)[-1]
            out.append(_Verdict(m, "remove", f"'{last.get('activityDisplayName')}' in the "
                                "directory audit log within the window",
                                registered=str(last.get("activityDateTime")),
                                audit_event=str(last.get("id"))))
        elif loose:
            out.append(_Verdict(m, "undetermined", "a phone was registered in the window "
                                "but the audit event does not say which phone"))
        elif unnamed:
            out.append(_Verdict(m, "undetermined", f"{len(unnamed)} security-info "
                                "registration event(s) in the window name no method this "
                                "responder recognises"))
        elif fresh:
            out.append(_Verdict(m, "undetermined", "no registration event in the directory "
                                "audit log yet, but the detection is recent and audit events "
                                f"can arrive late (allowance {AUDIT_LATENCY})"))
        else:
            out.append(_Verdict(m, "keep", "no registration event in the directory audit "
                                f"log since {since.isoformat()}"))
    return out


def _blocked_by_kept_alternate(remove: list[_Verdict],
                               verdicts: list[_Verdict]) -> list[_Verdict]:
    """A mobile number cannot be deleted while an alternate mobile number stays.

    https://learn.microsoft.com/graph/api/phoneauthenticationmethod-delete (the error Graph
    returns is not documented, so this is checked before asking)."""
    going = {id(v) for v in remove}
    alternate_stays = any(v.method.get("phoneType") == "alternateMobile" and id(v) not in going
                          for v in verdicts if method_kind(v.method) == "phone")
    if not alternate_stays:
        return []
    blocked = []
    for v in remove:
        if v.method.get("phoneType") == "mobile":
            v.reason = ("a mobile number cannot be deleted while the user keeps an alternate "
                        "mobile number (the documented way is to update the mobile number, "
                        "which the responder does not do)")
            blocked.append(v)
    return blocked


def _refusal(method: dict[str, Any], exc: BadRequest) -> str:
    """Why Graph refused a delete; phone refusals have documented causes but no documented
    error code, so the likely causes are named next to Graph's own answer."""
    answer = f"Graph refused the delete (HTTP {exc.status} {exc.code or ''}: {exc})".strip()
    if method_kind(method) != "phone":
        return answer
    return (f"{answer}; a phone that is the user's default MFA method cannot be deleted until "
            "the user (or an admin) changes the default method, and a mobile number cannot "
            "be deleted while an alternate mobile number exists")
