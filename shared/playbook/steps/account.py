"""Account containment: password, sessions, sign-in, and Identity Protection's verdict."""

from __future__ import annotations

import secrets
import string

from shared.errors import BadRequest, InvalidTimestamp
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.tenant.graph import directory, identity_protection
from shared.tenant.graph.directory import PERM_ENABLE, PERM_PASSWORD, PERM_REVOKE, PERM_USER_READ
from shared.tenant.graph.identity_protection import PERM_RISKY_READ, PERM_RISKY_WRITE
from shared.timestamps import parse_time

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


# Where the docs behind the account steps are:
# - external (B2B) users: revokeSignInSessions "doesn't revoke sign-in sessions for external
#   users, because external users sign in through their home tenant"
#   (https://learn.microsoft.com/graph/api/user-revokesigninsessions); their password cannot
#   be reset in the resource directory, and Identity Protection blocks such a guest instead
#   (MicrosoftDocs/entra-docs:docs/id-protection/concept-identity-protection-b2b.md).
# - synced users: whether a property can be written "is additionally determined by the
#   source of authority" (https://learn.microsoft.com/en-us/graph/api/user-update?tabs=http);
#   an app-only passwordProfile write is never written back on-premises: writeback covers
#   the admin center and the delegated-only resetPassword API
#   (https://learn.microsoft.com/lv-lv/entra/identity/authentication/concept-sspr-writeback).
#   Neither page documents the refusal's error body, or whether the next sync overwrites an
#   accepted cloud write: a synced user is reported partial whatever the cloud answers.
HOME_TENANT = ("the guest signs in at their home tenant: its administrator must reset the "
               "password and revoke the sessions there")
SYNCED_RESET_NOTE = ("reset the password in on-premises AD (twice), where this user is "
                   "mastered; an app-only cloud reset is not written back")
SYNCED_DISABLE = ("disable the account in on-premises AD, where this user is mastered, or "
                  "the next sync can enable it again")
SYNCED_ENABLE = ("on-premises-mastered user: enable the account in on-premises AD if it was "
                 "disabled there during containment")


def _later(after: object, before: object) -> bool:
    """Whether a Graph timestamp read after a change is set and later than the one read
    before it (an unreadable earlier value only requires the later one to be set)."""
    if not after:
        return False
    try:
        later = parse_time(after)
    except InvalidTimestamp:
        return False
    if not before:
        return True
    try:
        return later > parse_time(before)
    except InvalidTimestamp:
        return True


def external(ctx_user: directory.DirectoryUser) -> bool:
    """A B2B user (`#EXT#` UPN, or an invited guest): password and sessions live at home."""
    return "#ext#" in ctx_user.upn.lower() or (
        (ctx_user.user_type or "").lower() == "guest"
        and ctx_user.raw.get("creationType") == "Invitation")


@register
class ResetPassword(Step):
    """Set a random password that nobody knows and force a change at next sign-in.

    A B2B guest's password lives in their home tenant: sign-in to this tenant is blocked
    instead (policy guests.blockSignIn)."""

    name = "reset_password"
    containment = True
    # accountEnabled (blocking a guest) is written with User.Read.All beside the narrow right
    graph_permissions = (PERM_PASSWORD, PERM_ENABLE, PERM_USER_READ)
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
        if external(ctx.user):
            if not ctx.policy.guests.block_sign_in:
                return Plan.skipped("B2B guest: no password in this tenant (it lives in the "
                                    f"home tenant); {HOME_TENANT} (policy guests.blockSignIn "
                                    "is off)")
            if ctx.user.account_enabled is False:
                return Plan.nothing_to_do(f"B2B guest, sign-in already blocked; {HOME_TENANT}",
                                          guest=True)
            return Plan(actions=["B2B guest: no password here; block sign-in to this tenant "
                                 "(policy guests.blockSignIn)", HOME_TENANT],
                        data={"guest": True})
        if await ctx.federated():
            return Plan(actions=["the user's domain is federated: the cloud password cannot "
                                 "be set; reset it on-premises (twice)"],
                        data={"federated": True})
        note = [SYNCED_RESET_NOTE] if ctx.user.synced else []
        return Plan(actions=["set a random unknown password, change forced at next sign-in",
                             *note], data={"synced": ctx.user.synced})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        if plan.data.get("guest"):
            await directory.set_account_enabled(ctx.graph, ctx.user.id, False)
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="B2B guest: password not reset (it lives in the home "
                                      f"tenant); sign-in to this tenant blocked; {HOME_TENANT}",
                              changes=[{"what": "accountEnabled", "from": True, "to": False}],
                              data={"guest": True, "homeTenantAction": HOME_TENANT})
        if plan.data.get("federated"):
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="federated user: cloud password not settable; reset "
                                      "the on-premises password (twice)",
                              data={"needsOnPremisesReset": True})
        try:
            await directory.set_password(ctx.graph, ctx.user.id, generate_password())
        except BadRequest as exc:
            if ctx.user.synced:
                # The cloud refuses password writes for this on-premises-mastered user: a
                # partial result with the on-premises action, never a retry or a success.
                return StepResult(step=self.name, status=StepStatus.PARTIAL,
                                  summary="synced user: the cloud refused the password "
                                          f"({exc.code or 'HTTP 400'}); {SYNCED_RESET_NOTE}",
                                  error_code=exc.code, request_id=exc.request_id,
                                  data={"needsOnPremisesReset": True, "synced": True,
                                        "onPremisesAction": SYNCED_RESET_NOTE})
            raise
        change = {"what": "password", "to": "random (not recorded)"}
        if ctx.user.synced:
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary=f"cloud password reset; synced user: {SYNCED_RESET_NOTE}",
                              changes=[change],
                              data={"needsOnPremisesReset": True, "synced": True,
                                    "onPremisesAction": SYNCED_RESET_NOTE})
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="password reset to a random value; change forced at sign-in",
                          changes=[change])

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Read the user again: lastPasswordChangeDateTime ("the time when this user last
        changed their password or when their password was created", returned only on
        $select: https://learn.microsoft.com/en-us/graph/api/resources/user) must be later
        than when this delivery read the user; a guest's accountEnabled must read false.
        Not read back: the password (never returned) and forceChangePasswordNextSignIn
        (the passwordProfile page describes what is written, not what a read returns:
        https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile)."""
        whats = {c.get("what") for c in result.changes}
        now_user = await directory.resolve_user(ctx.graph, ctx.user.id)
        differences: list[str] = []
        notes: list[str] = []
        if "password" in whats:
            before = ctx.user.raw.get("lastPasswordChangeDateTime")
            after = now_user.raw.get("lastPasswordChangeDateTime")
            if not _later(after, before):
                differences.append(f"lastPasswordChangeDateTime is {after or 'empty'} (before "
                                   f"the run: {before or 'empty'}): the new password does "
                                   "not show")
            notes.append("the forced change at next sign-in is not read back (not "
                         "documented as readable)")
            if ctx.user.synced:
                notes.append("synced user: a later sync may replace the cloud password")
        if "accountEnabled" in whats and now_user.account_enabled is not False:
            differences.append(f"accountEnabled reads {now_user.account_enabled}, not false")
        return Verification(not differences, differences, "; ".join(notes))

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """The password stays (reported); a guest's blocked sign-in is enabled again."""
        changes = finished_changes(result)
        items: list[Undo] = []
        if any(c.get("what") == "password" for c in changes):
            items.append(Undo(f"cannotUndo:{self.name}", f"{self.name}: {self.cannot_undo}",
                              status=StepStatus.SKIPPED,
                              changes=[c for c in changes if c.get("what") == "password"]))
        if any(c.get("what") == "accountEnabled" for c in changes):
            async def enable() -> None:
                await directory.set_account_enabled(ctx.graph, ctx.user_id, True)
            items.append(Undo("guestSignIn", "guest sign-in to this tenant allowed again",
                              enable))
        return items


@register
class RevokeSessions(Step):
    """Invalidate refresh tokens and session cookies so stolen sessions stop working."""

    name = "revoke_sessions"
    containment = True
    # User.Read.All reads signInSessionsValidFromDateTime back (verify)
    graph_permissions = (PERM_REVOKE, PERM_USER_READ)
    reversible = "nothing to undo: the user signs in again"
    cannot_undo = "nothing to undo: the user signs in again"
    undo_order = 90
    dry_run_description = "would revoke all sign-in sessions"
    after = ("reset_password", "disable_account")
    """After the password changes (a revoked attacker must not sign in again with the old
    one); not after the evidence, which sessions do not alter."""

    async def plan(self, ctx: StepContext) -> Plan:
        if external(ctx.user):
            return Plan(actions=["revoke this tenant's view of the sessions (external user: "
                                 "home-tenant sessions are not ended)"], data={"guest": True})
        return Plan(actions=["revoke all refresh tokens and sessions"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        await directory.revoke_sessions(ctx.graph, ctx.user.id)
        if plan.data.get("guest"):
            # Graph answers success, yet an external user's sessions are not revoked.
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="external (B2B) user: Graph accepted the revocation but "
                                      f"does not end their sessions; {HOME_TENANT}",
                              changes=[{"what": "signInSessionsValidFrom", "to": "now"}],
                              data={"guest": True, "homeTenantAction": HOME_TENANT})
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary="all sign-in sessions revoked",
                          changes=[{"what": "sessions", "to": "revoked"}])

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """signInSessionsValidFromDateTime ("any refresh tokens or sessions tokens issued
        before this time are invalid"; revokeSignInSessions resets it to now:
        https://learn.microsoft.com/en-us/graph/api/resources/user,
        https://learn.microsoft.com/graph/api/user-revokesigninsessions) must be later than
        when this delivery read the user. The property moving does not prove every token is
        refused yet: the page allows "a small delay of a few minutes"."""
        now_user = await directory.resolve_user(ctx.graph, ctx.user.id)
        before = ctx.user.raw.get("signInSessionsValidFromDateTime")
        after = now_user.raw.get("signInSessionsValidFromDateTime")
        notes = ["tokens can keep working for a few minutes after the revocation (documented "
                 "delay)"]
        if result.data.get("guest"):
            notes.append(f"external user: {HOME_TENANT}")
        if _later(after, before):
            return Verification(True, note="; ".join(notes))
        return Verification(False, [f"signInSessionsValidFromDateTime is {after or 'empty'} "
                                    f"(before the run: {before or 'empty'}): the revocation "
                                    "does not show"], "; ".join(notes))


@register
class DisableAccount(Step):
    """Block sign-in entirely (off in the default policy: it stops the user working)."""

    name = "disable_account"
    containment = True
    # user-update lists accountEnabled under User.EnableDisableAccount.All + User.Read.All
    graph_permissions = (PERM_ENABLE, PERM_USER_READ)
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
        if ctx.user.synced:
            return Plan(actions=["block sign-in", SYNCED_DISABLE], data={"synced": True})
        return Plan(actions=["block sign-in"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        synced = bool(plan.data.get("synced"))
        try:
            await directory.set_account_enabled(ctx.graph, ctx.user.id, False)
        except BadRequest as exc:
            if not synced:
                raise
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary="synced user: the cloud refused to block sign-in "
                                      f"({exc.code or 'HTTP 400'}); {SYNCED_DISABLE}",
                              error_code=exc.code, request_id=exc.request_id,
                              data={"synced": True, "onPremisesAction": SYNCED_DISABLE})
        change = {"what": "accountEnabled", "from": True, "to": False}
        if synced:
            return StepResult(step=self.name, status=StepStatus.PARTIAL,
                              summary=f"sign-in blocked in the cloud; synced user: "
                                      f"{SYNCED_DISABLE}", changes=[change],
                              data={"synced": True, "onPremisesAction": SYNCED_DISABLE})
        return StepResult(step=self.name, status=StepStatus.DONE, summary="sign-in blocked",
                          changes=[change])

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") == "accountEnabled":
                async def enable() -> None:
                    await directory.set_account_enabled(ctx.graph, ctx.user_id, True)
                items.append(Undo("account", "account re-enabled (sign-in allowed)", enable))
        if result is not None and result.data.get("synced"):
            # The cloud cannot be trusted to re-enable an on-premises-mastered account (it
            # may refuse, or sync may undo it): the release reports the on-premises action.
            items.append(Undo("account:onPremises", SYNCED_ENABLE, status=StepStatus.PARTIAL))
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

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """riskState must read confirmedCompromised (riskyUser:
        https://learn.microsoft.com/en-us/graph/api/resources/riskyuser); the read goes
        through the same paced reader as the plan (1 request per second per tenant). The
        resource has `isProcessing` ("whether a user's risky state is being processed by
        the backend") and documents no delay: a state that has not moved yet while
        isProcessing is true is reported with that note, as a difference."""
        ctx.forget("risky_user")
        risky = await ctx.risky_user() or {}
        state = risky.get("riskState")
        if state == "confirmedCompromised":
            return Verification(True)
        note = ("Identity Protection is still processing this user (isProcessing true): the "
                "state can lag the confirmation; read it again later"
                if risky.get("isProcessing") else "")
        return Verification(False, [f"riskState reads {state or 'nothing (no riskyUser)'}, "
                                    "not confirmedCompromised"], note)

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
