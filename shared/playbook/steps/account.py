"""Account containment: password, sessions, sign-in, and Identity Protection's verdict."""

from __future__ import annotations

import secrets
import string

from shared.errors import BadRequest
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph import directory, identity_protection
from shared.tenant.graph.directory import PERM_ENABLE, PERM_PASSWORD, PERM_REVOKE
from shared.tenant.graph.identity_protection import PERM_RISKY_READ, PERM_RISKY_WRITE

_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-.:;<=>?@[]^_{|}~"


def generate_password(length: int = 32) -> str:
    """A random password nobody learns: it exists only in the request that sets it.

    The user regains access through SSPR or a Temporary Access Pass from the helpdesk.
    """
    while True:
        value = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (any(c.islower() for c in value) and any(c.isupper() for c in value)
                and any(c.isdigit() for c in value) and any(not c.isalnum() for c in value)):
            return value


@register
class ResetPassword(Step):
    """Set a random password that nobody knows and force a change at next sign-in."""

    name = "reset_password"
    graph_permissions = (PERM_PASSWORD,)
    directory_roles = ("User Administrator", "Privileged Authentication Administrator")
    disruptive = True
    reversible = "cannot be undone: the user sets a new password through SSPR or a TAP"
    cannot_undo = ("cannot be undone: the old password is unknown (by design); the user sets "
                   "a new one through SSPR or a Temporary Access Pass")
    undo_order = 70
    dry_run_description = "would set a random unknown password (force change at sign-in)"
    after = ()
    """Containment does not wait for the evidence: the user object (the only evidence a
    password change alters) is read when the user is resolved, before any step runs."""

    async def plan(self, ctx: StepContext) -> Plan:
        if await ctx.federated():
            return Plan(actions=["the user's domain is federated: the cloud password cannot "
                                 "be set; reset it on-premises (twice)"],
                        data={"federated": True})
        note = []
        if ctx.user.synced:
            note.append("synced user: also reset the on-premises password (twice), or the "
                        "next sync may restore the old one")
        return Plan(actions=["set a random unknown password, change forced at next sign-in",
                             *note], data={"synced": ctx.user.synced})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        if plan.data.get("federated"):
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="federated user: cloud password not settable; reset "
                                      "the on-premises password (twice)",
                              data={"needsOnPremisesReset": True})
        try:
            await directory.set_password(ctx.graph, ctx.user.id, generate_password())
        except BadRequest as exc:
            # Synced users without password writeback are refused by the cloud: report it
            # as the partial result it is, never as a success.
            if ctx.user.synced:
                return StepResult(step=self.name, status=StepStatus.PARTIAL,
                                  summary="cloud refused the password for this synced user; "
                                          "reset it on-premises (twice)",
                                  error_code=exc.code, request_id=exc.request_id,
                                  data={"needsOnPremisesReset": True})
            raise
        change = {"what": "password", "to": "random (not recorded)"}
        if ctx.user.synced:
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="cloud password reset; synced user: reset the "
                                      "on-premises password too", changes=[change],
                              data={"needsOnPremisesReset": True})
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="password reset to a random value; change forced at sign-in",
                          changes=[change])


@register
class RevokeSessions(Step):
    """Invalidate refresh tokens and session cookies so stolen sessions stop working."""

    name = "revoke_sessions"
    graph_permissions = (PERM_REVOKE,)
    reversible = "nothing to undo: the user signs in again"
    cannot_undo = "nothing to undo: the user signs in again"
    undo_order = 90
    dry_run_description = "would revoke all sign-in sessions"
    after = ("reset_password", "disable_account")
    """After the password changes (a revoked attacker must not sign in again with the old
    one); not after the evidence, which sessions do not alter."""

    async def plan(self, ctx: StepContext) -> Plan:
        return Plan(actions=["revoke all refresh tokens and sessions"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await directory.revoke_sessions(ctx.graph, ctx.user.id)
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="all sign-in sessions revoked",
                          changes=[{"what": "sessions", "to": "revoked"}])


@register
class DisableAccount(Step):
    """Block sign-in entirely (off in the default policy: it stops the user working)."""

    name = "disable_account"
    graph_permissions = (PERM_ENABLE,)
    directory_roles = ("User Administrator",)
    disruptive = True
    reversible = "release re-enables the account"
    undo_order = 10
    """First in a release: the user can sign in again while the rest is restored."""
    dry_run_description = "would block sign-in (accountEnabled false)"
    after = ()

    async def plan(self, ctx: StepContext) -> Plan:
        if ctx.user.account_enabled is False:
            return Plan.nothing_to_do("sign-in already blocked")
        return Plan(actions=["block sign-in"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await directory.set_account_enabled(ctx.graph, ctx.user.id, False)
        return StepResult(step=self.name, status=StepStatus.DONE, summary="sign-in blocked",
                          changes=[{"what": "accountEnabled", "from": True, "to": False}])

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") == "accountEnabled":
                async def enable() -> None:
                    await directory.set_account_enabled(ctx.graph, ctx.user_id, True)
                items.append(Undo("account", "account re-enabled (sign-in allowed)", enable))
        return items


@register
class ConfirmCompromised(Step):
    """Tell Identity Protection the user is compromised (raises risk, feeds CA policies)."""

    name = "confirm_compromised"
    graph_permissions = (PERM_RISKY_READ, PERM_RISKY_WRITE)
    reversible = "release dismisses the user's risk"
    undo_order = 50
    dry_run_description = "would confirm the user compromised in Identity Protection"

    async def plan(self, ctx: StepContext) -> Plan:
        risky = await ctx.risky_user()
        if risky and risky.get("riskState") == "confirmedCompromised":
            return Plan.nothing_to_do("already confirmed compromised")
        before = (risky or {}).get("riskState", "none")
        return Plan(actions=["confirm compromised (aggregated with other runs)"],
                    data={"from": before})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await ctx.services.confirm.confirm(ctx.user.id)
        ctx.forget("risky_user")
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="confirmed compromised in Identity Protection",
                          changes=[{"what": "riskState", "from": plan.data.get("from"),
                                    "to": "confirmedCompromised"}])

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Every release dismisses the user's risk, whether this run confirmed it or
        Identity Protection raised it alone: a false positive leaves no risk behind."""
        confirmed = bool(finished_changes(result))

        async def dismiss() -> str | None:
            risky = await identity_protection.get_risky_user(ctx.graph, ctx.user_id)
            if not risky or risky.get("riskState") not in ("atRisk", "confirmedCompromised"):
                return "no risk to dismiss"
            await identity_protection.dismiss(ctx.graph, [ctx.user_id])
            return None
        return [Undo("risk", "user risk dismissed in Identity Protection"
                     + (" (the run had confirmed it compromised)" if confirmed else ""),
                     dismiss)]
