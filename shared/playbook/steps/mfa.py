"""MFA: require it from now on, and remove the methods an attacker may have registered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidTimestamp, NotFound
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph import auth_methods, directory
from shared.tenant.graph.auth_methods import (
    PERM_METHODS_READ,
    PERM_METHODS_WRITE,
    PERM_PER_USER_MFA,
    deletable,
    method_kind,
)
from shared.tenant.graph.directory import PERM_GROUP_MEMBER
from shared.timestamps import parse_time


@register
class RequireMfa(Step):
    """Require MFA: the policy's Conditional Access group and/or per-user MFA enforced."""

    name = "require_mfa"
    graph_permissions = (PERM_GROUP_MEMBER, PERM_PER_USER_MFA)
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


@register
class RemoveSuspiciousAuthMethods(Step):
    """Remove MFA methods registered shortly before the detection or after it."""

    name = "remove_suspicious_auth_methods"
    graph_permissions = (PERM_METHODS_READ, PERM_METHODS_WRITE)
    directory_roles = ("Privileged Authentication Administrator",)
    disruptive = True
    reversible = "cannot be undone: the user re-registers methods (helpdesk issues a TAP)"
    cannot_undo = ("cannot be undone: removed authentication methods must be registered "
                   "again by the user")
    undo_order = 80
    dry_run_description = "would remove authentication methods registered within the " \
                          "policy window before the detection, or after it"

    async def plan(self, ctx: StepContext) -> Plan:
        window = timedelta(days=ctx.policy.auth_methods.window_days)
        since = ctx.detected_at - window
        suspicious, unknown = [], []
        for m in await ctx.methods():
            if not deletable(m):
                continue
            created = _created(m)
            if created is None:
                unknown.append(describe_method(m))
            elif created >= since:
                suspicious.append(m)
        note = {"notAssessed": unknown} if unknown else {}
        if not suspicious:
            return Plan.nothing_to_do(
                f"no method registered since {since.isoformat()}", **note)
        actions = [f"remove {method_kind(m)} method {m.get('displayName') or m['id']} "
                   f"(registered {m.get('createdDateTime')})" for m in suspicious]
        return Plan(actions=actions, data={"methods": suspicious, **note})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        removed: list[dict[str, Any]] = []
        for m in plan.data["methods"]:
            try:
                await auth_methods.delete_method(ctx.graph, ctx.user.id, m)
            except NotFound:
                continue  # already gone (a resumed run): the state is what we want
            removed.append({"what": "authenticationMethod", "removed": describe_method(m),
                            "undo": "not possible"})
        ctx.forget("methods")
        summary = f"removed {len(removed)} method(s) registered in the window"
        if plan.data.get("notAssessed"):
            summary += f"; {len(plan.data['notAssessed'])} without a creation time left alone"
        return StepResult(step=self.name, status=StepStatus.DONE if removed
                          else StepStatus.NOTHING_TO_DO, summary=summary, changes=removed,
                          data={"notAssessed": plan.data.get("notAssessed", [])})

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
