"""Admin roles: take the user's active directory role assignments away while contained.

A compromised administrator is a compromised tenant. Active assignments are recorded (role,
scope) and removed; eligible (PIM) assignments cannot be used without an activation, which
the password reset and MFA steps already guard, so they are reported, not changed. This
needs RoleManagement.ReadWrite.Directory, which is requested only when a playbook uses this
step (`optional_graph_permissions`; infra parameter `enableRoleRemoval`).
"""

from __future__ import annotations

from typing import Any

from shared.errors import NotFound, ServiceError
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph import role_management as rm
from shared.tenant.graph.directory import PERM_ROLE_READ


def _describe(row: dict[str, Any]) -> dict[str, Any]:
    """What is recorded of an assignment: enough to re-create it and to read it."""
    return {"id": row.get("id"), "role": rm.role_name(row),
            "roleDefinitionId": row.get("roleDefinitionId"),
            "directoryScopeId": row.get("directoryScopeId") or "/",
            "principalId": row.get("principalId")}


@register
class RemoveAdminRoles(Step):
    """Remove the user's active directory role assignments (eligible ones are reported).

    Restored on release. Needs RoleManagement.ReadWrite.Directory, granted only when the
    deployment enables role removal."""

    name = "remove_admin_roles"
    graph_permissions = (PERM_ROLE_READ,)
    optional_graph_permissions = (rm.PERM_ROLE_WRITE,)
    disruptive = True
    reversible = "release re-creates the removed role assignments (same role and scope)"
    undo_order = 30
    dry_run_description = "would remove the user's active directory role assignments " \
                          "(eligible PIM assignments are only reported)"

    async def plan(self, ctx: StepContext) -> Plan:
        rows = await rm.role_assignments(ctx.graph, ctx.user.id)
        active = [_describe(r) for r in rows
                  if str(r.get("principalId") or "").lower() == ctx.user.id.lower()]
        eligible, note = await _eligible(ctx)
        data: dict[str, Any] = {"active": active, "eligible": eligible}
        if note:
            data["eligibleNote"] = note
        if not active:
            return Plan.nothing_to_do("the user holds no active directory role assignment",
                                      **data)
        actions = [f"remove {a['role']} (scope {a['directoryScopeId']})" for a in active]
        actions += [f"report eligible {e['role']} (scope {e['directoryScopeId']}): not "
                    "changed" for e in eligible]
        return Plan(actions=actions, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        data: dict[str, Any] = {k: plan.data.get(k) for k in ("active", "eligible",
                                                              "eligibleNote")
                                if plan.data.get(k) is not None}
        # Recorded before anything is removed, so that a run stopped half-way still says
        # which roles the user held.
        data["evidenceBlob"] = await ctx.journal.put_evidence(ctx.run.run_id, "admin-roles",
                                                              data)
        changes: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for a in plan.data.get("active", []):
            try:
                await rm.delete_role_assignment(ctx.graph, str(a["id"]))
            except NotFound:
                continue  # already removed (a resumed run)
            except ServiceError as exc:
                if exc.retryable:
                    raise
                failed.append({**a, "reason": f"{type(exc).__name__} HTTP {exc.status}: "
                                              f"{exc}"})
                continue
            changes.append({"what": "directoryRoleAssignment", **a, "undo": "re-create"})
        data["notRemoved"] = failed
        summary = f"removed {len(changes)} active role assignment(s): " + \
            (", ".join(c["role"] for c in changes) or "none")
        if failed:
            summary += f"; {len(failed)} could not be removed"
        if data.get("eligible"):
            summary += f"; {len(data['eligible'])} eligible assignment(s) reported"
        status = StepStatus.PARTIAL if failed else (
            StepStatus.DONE if changes else StepStatus.NOTHING_TO_DO)
        return StepResult(step=self.name, status=status, summary=summary, changes=changes,
                          data=data)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """List the user's assignments again: none of the removed ones may be there."""
        removed = [c for c in result.changes if c.get("what") == "directoryRoleAssignment"]
        if not removed:
            return None
        try:
            rows = await rm.role_assignments(ctx.graph, ctx.user.id)
        except ServiceError as exc:
            if exc.retryable:
                raise
            return Verification(False, note=f"could not read back: {type(exc).__name__} "
                                            f"HTTP {exc.status}")
        held = {(str(r.get("roleDefinitionId")), str(r.get("directoryScopeId") or "/"))
                for r in rows}
        differences = [f"{c['role']} (scope {c['directoryScopeId']}) is still assigned"
                       for c in removed
                       if (str(c["roleDefinitionId"]), str(c["directoryScopeId"])) in held]
        return Verification(not differences, differences)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Assign the roles again: the user was an administrator before the run."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") != "directoryRoleAssignment":
                continue

            async def restore(c: dict[str, Any] = c) -> str | None:
                for row in await rm.role_assignments(ctx.graph, ctx.user_id):
                    if (row.get("roleDefinitionId"), row.get("directoryScopeId") or "/") == \
                            (c["roleDefinitionId"], c["directoryScopeId"]):
                        return "already assigned again"
                await rm.create_role_assignment(ctx.graph, ctx.user_id,
                                                str(c["roleDefinitionId"]),
                                                str(c["directoryScopeId"]))
                return None
            items.append(Undo(f"role:{c['roleDefinitionId']}:{c['directoryScopeId']}",
                              f"{c['role']} assigned again (scope {c['directoryScopeId']})",
                              restore))
        return items


async def _eligible(ctx: StepContext) -> tuple[list[dict[str, Any]], str]:
    """Eligible assignments for the evidence; a tenant without PIM (or a refused read) is a
    note, not a failure: eligibility is only reported."""
    try:
        rows = await rm.eligible_assignments(ctx.graph, ctx.user.id)
    except ServiceError as exc:
        if exc.retryable:
            raise
        return [], (f"eligible assignments could not be read ({type(exc).__name__} HTTP "
                    f"{exc.status} {exc.code or ''}); PIM may not be licensed")
    out = []
    for r in rows:
        item = _describe(r)
        item.update(startDateTime=r.get("startDateTime"), endDateTime=r.get("endDateTime"),
                    memberType=r.get("memberType"))
        out.append(item)
    return out, ""
