"""After containment: release from the restricted-senders list, and tell the SOC."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import BadRequest, NotFound
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.undo import ReleaseContext, Undo
from shared.state import partitions
from shared.state.clock import now
from shared.tenant import exchange as exo
from shared.timestamps import parse_time

if TYPE_CHECKING:
    from shared.state.journal import Journal

CONTAINMENT = ("reset_password", "revoke_sessions", "disable_malicious_inbox_rules",
               "clear_mailbox_forwarding", "remove_suspicious_auth_methods")
PENDING_UNBLOCKS = partitions.PENDING_UNBLOCKS
"""One row per address: a pending request for an administrator, or the record of the
automatic release (state `released`, then `reblocked` or `refused`)."""

# Releases from the restricted-senders list are limited: "There's a limit to the number of
# times you can unblock an account"; past it only Microsoft support can unblock, and a
# release can take up to 24 hours to apply
# (https://learn.microsoft.com./en-us/defender-office-365/outbound-spam-restore-restricted-users).
# The number and its period are not documented. So the responder releases an account
# automatically at most once per breach: an account blocked again after that release is
# still compromised (a new signal for intake, and an escalation), never released again
# automatically; every further release is an administrator's decision.
PENDING, RELEASED, REBLOCKED, REFUSED = "pending", "released", "reblocked", "refused"
RELEASE_APPLIES_WITHIN = timedelta(hours=24)
LIMIT_NOTE = ("releases are limited per account and past the limit only Microsoft support "
              "can unblock")
AGAIN_NOTE = ("blocked again after an automatic release: not released again (an "
              f"administrator decides; {LIMIT_NOTE})")


def _created(row: dict[str, Any] | None) -> str:
    return str((row or {}).get("CreatedDatetime") or (row or {}).get("blockCreated") or "")


def _same_time(a: str, b: str) -> bool:
    try:
        return parse_time(a) == parse_time(b)
    except (ValueError, TypeError):
        return a == b


def classify(record: dict[str, Any] | None, row: dict[str, Any]) -> str:
    """What a current block means given the address's release record.

    `first`: never released automatically (a release is allowed once); `applying`: the block
    the responder released, still listed while the release applies; `again`: a new block
    after a release; `known`: a re-block already handled; `refused`: Exchange refused a
    release (only Microsoft support can unblock).
    """
    state = (record or {}).get("state")
    if state not in (RELEASED, REBLOCKED, REFUSED):
        return "first"
    if state == REFUSED:
        return "refused"
    assert record is not None
    seen, current = str(record.get("blockCreated") or ""), _created(row)
    if seen and current:
        same = _same_time(seen, current)
    else:  # no timestamps to compare: the documented wait decides
        stamp = record.get("reblockedAt") or record.get("releasedAt")
        same = isinstance(stamp, datetime) and now() - stamp < RELEASE_APPLIES_WITHIN
    if same:
        return "applying" if state == RELEASED else "known"
    return "again"


async def release_record(journal: Journal, address: str) -> dict[str, Any] | None:
    return await journal.get_item(PENDING_UNBLOCKS, address.lower())


async def record_release(journal: Journal, address: str, *, run_id: str, user_id: str,
                         block: dict[str, Any], by: str) -> None:
    await journal.put_item(PENDING_UNBLOCKS, address.lower(), state=RELEASED, runId=run_id,
                           userId=user_id, releasedAt=now(), releasedBy=by[:200],
                           blockCreated=_created(block))


async def record_reblock(journal: Journal, address: str, *, run_id: str | None, user_id: str,
                         block: dict[str, Any], request_id: str | None = None) -> None:
    await journal.put_item(PENDING_UNBLOCKS, address.lower(), state=REBLOCKED, userId=user_id,
                           reblockedAt=now(), blockCreated=_created(block),
                           reblockRunId=run_id or "", reblockRequestId=request_id or "")


async def record_refusal(journal: Journal, address: str, *, user_id: str, why: str) -> None:
    await journal.put_item(PENDING_UNBLOCKS, address.lower(), state=REFUSED, userId=user_id,
                           refusedAt=now(), why=why[:1000])


def hold_reason(kind: str, record: dict[str, Any] | None) -> str:
    if kind == "applying":
        at = (record or {}).get("releasedAt")
        return (f"release already requested{f' at {at:%Y-%m-%d %H:%M} UTC' if at else ''}; "
                "it can take up to 24 hours to apply: not released twice")
    if kind == "refused":
        return ("Exchange refused an earlier release: only Microsoft support can unblock "
                f"({(record or {}).get('why') or 'limit reached'})")
    return AGAIN_NOTE


def refusal_note(exc: BadRequest) -> str:
    return (f"Exchange refused the release ({exc.code or 'HTTP 400'}): the per-account limit "
            "may be reached; only Microsoft support can unblock")


@register
class RequestUnblock(Step):
    """Release the user from the restricted-senders list once the account is contained.

    At most once per breach: an account blocked again after a release is left to an
    administrator."""

    name = "request_unblock"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = ("Exchange Administrator",)
    reversible = "nothing to undo"
    undo_order = 60
    dry_run_description = "would release the user from restricted senders (or file a " \
                          "pending request) once containment succeeded"
    after = ("collect_evidence", *CONTAINMENT, "confirm_compromised", "require_mfa",
             "enable_mailbox_audit", "revoke_consent_grants", "remove_mailbox_delegates",
             "block_mobile_devices")
    """The release is asked for once the other ways back in are closed too (ordering)."""
    requires_success = CONTAINMENT

    async def plan(self, ctx: StepContext) -> Plan:
        rows = await ctx.blocked()
        if not rows:
            return Plan.nothing_to_do("not on the restricted-senders list")
        blocks = {str(r.get("SenderAddress")).lower(): r for r in rows}
        first: list[str] = []
        held: dict[str, str] = {}
        kinds: dict[str, str] = {}
        for address in sorted(blocks):
            record = await release_record(ctx.journal, address)
            kinds[address] = kind = classify(record, blocks[address])
            if kind == "first":
                first.append(address)
            else:
                held[address] = hold_reason(kind, record)
        again = [a for a, k in kinds.items() if k == "again"]
        if all(k == "applying" for k in kinds.values()):
            return Plan.nothing_to_do("; ".join(f"{a}: {w}" for a, w in held.items()))
        automatic = ctx.policy.unblock.automatic
        verb = "release {} from restricted senders" if automatic \
            else "file a pending unblock request for {}"
        return Plan(actions=[verb.format(a) for a in first]
                    + [f"leave {a} blocked: {w}" for a, w in held.items()],
                    data={"addresses": first, "automatic": automatic, "held": held,
                          "again": again,
                          "created": {a: _created(blocks[a]) for a in blocks}})

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        held: dict[str, str] = dict(plan.data.get("held") or {})
        blocks = {a: {"CreatedDatetime": c} for a, c in (plan.data.get("created") or {}).items()}
        for address in plan.data.get("again") or []:
            await record_reblock(ctx.journal, address, run_id=ctx.run.run_id,
                                 user_id=ctx.user.id, block=blocks.get(address, {}))
        if held:
            await ctx.journal.event(ctx.run.run_id, "unblock-withheld",
                                    "not released from restricted senders: "
                                    + "; ".join(f"{a}: {w}" for a, w in held.items()),
                                    {"held": held})
        changes: list[dict[str, Any]] = []
        if plan.data["automatic"]:
            for address in plan.data["addresses"]:
                try:
                    await exo.remove_blocked_sender(ctx.exchange, address)
                except BadRequest as exc:
                    held[address] = refusal_note(exc)
                    await record_refusal(ctx.journal, address, user_id=ctx.user.id,
                                         why=held[address])
                    continue
                except NotFound:
                    continue  # gone meanwhile
                await record_release(ctx.journal, address, run_id=ctx.run.run_id,
                                     user_id=ctx.user.id, block=blocks.get(address, {}),
                                     by=f"run {ctx.run.run_id}")
                changes.append({"what": "restrictedSender", "address": address,
                                "from": "blocked", "to": "released"})
            ctx.forget("blocked")
            lines = ["released from restricted senders (may take up to an hour to apply)"
                     ] if changes else []
            lines += [f"{a} left blocked: {w}" for a, w in held.items()]
            return StepResult(step=self.name,
                              status=StepStatus.PARTIAL if held else StepStatus.DONE,
                              summary="; ".join(lines) or "nothing released",
                              changes=changes, data={"held": held} if held else {})
        for address in plan.data["addresses"]:
            await ctx.journal.put_item(PENDING_UNBLOCKS, address, runId=ctx.run.run_id,
                                       userId=ctx.user.id, requestedAt=now(), state=PENDING)
        if plan.data["addresses"]:
            await ctx.journal.event(ctx.run.run_id, "unblock-requested",
                                    "release from restricted senders awaits an administrator",
                                    {"addresses": plan.data["addresses"]})
        lines = (["pending unblock request filed for an administrator (automatic release is "
                  "off in the policy)"] if plan.data["addresses"] else [])
        lines += [f"{a} left blocked: {w}" for a, w in held.items()]
        return StepResult(step=self.name, status=StepStatus.PARTIAL, summary="; ".join(lines),
                          data={"pending": plan.data["addresses"], "held": held})

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        """Get-BlockedSenderAddress for each released address: it must no longer be listed.
        Microsoft says a release "can take up to 24 hours" to apply
        (https://learn.microsoft.com./en-us/defender-office-365/outbound-spam-restore-restricted-users),
        so an address still listed is a difference with that note, not a failed step."""
        differences: list[str] = []
        for c in result.changes:
            if c.get("what") != "restrictedSender":
                continue
            address = str(c.get("address") or "").lower()
            rows = await exo.blocked_senders(ctx.exchange, address)
            if any(str(r.get("SenderAddress", "")).lower() == address for r in rows):
                differences.append(f"{address} is still on the restricted-senders list")
        note = ("a release can take up to 24 hours to apply (documented): read it again "
                "later" if differences else "")
        return Verification(not differences, differences, note)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Every release finishes what this step does, whether or not the run got to it:
        a falsely accused user must be able to send mail again, and no pending request
        for them may linger. A person asked for this release, so it is not limited to once;
        the release is recorded, so a later block counts as a block after a release."""
        run, evidence = ctx.run, ctx.evidence

        async def unblock() -> str | None:
            released: list[str] = []
            for address in dict.fromkeys(a.lower() for a in (run.upn, (evidence or {}).get(
                    "user", {}).get("mail")) if a):
                rows = await exo.blocked_senders(ctx.exchange, address)
                block = next((r for r in rows
                              if str(r.get("SenderAddress", "")).lower() == address), None)
                if block is not None:
                    await exo.remove_blocked_sender(ctx.exchange, address)
                    released.append(address)
                    await record_release(ctx.journal, address, run_id=run.run_id,
                                         user_id=str(run.user_id), block=block,
                                         by=f"release of {run.run_id}")
                    continue
                record = await release_record(ctx.journal, address)
                if record is not None and record.get("state") == PENDING:
                    await ctx.journal.delete_item(PENDING_UNBLOCKS, address)
            return None if released else "not on the restricted-senders list"
        return [Undo("restrictedSenders", "released from the restricted-senders list",
                     unblock)]


def summary_lines(ctx: StepContext) -> list[str]:
    lines = [f"Run {ctx.run.run_id} for {ctx.user.upn} ({ctx.user.id})",
             f"Reason: {ctx.request.reason or 'n/a'}; source: {ctx.request.source or 'n/a'}"]
    for name in ctx.planned_steps:
        r = ctx.results.get(name)
        if r is not None and name != "notify":
            lines.append(f"- {name}: {r.status.value} - {r.summary}")
    return lines


@register
class Notify(Step):
    """Send the run's summary to the SOC mailbox, Teams and a signed webhook (as configured)."""

    name = "notify"
    graph_permissions = ("Mail.Send",)
    reversible = "nothing to undo"
    changes_nothing = True
    dry_run_description = "would send the run summary to the configured channels"
    after = tuple(n for n in (
        "collect_evidence", "revoke_sessions", "reset_password", "disable_account",
        "confirm_compromised", "require_mfa", "remove_suspicious_auth_methods",
        "disable_malicious_inbox_rules", "clear_mailbox_forwarding", "enable_mailbox_audit",
        "revoke_consent_grants", "remove_mailbox_delegates", "block_mobile_devices",
        "wipe_mobile_devices", "remove_admin_roles", "disable_mail_protocols",
        "request_unblock"))

    async def plan(self, ctx: StepContext) -> Plan:
        from shared.safety import notify

        if not notify.configured(ctx.services):
            return Plan.skipped("no notification channel configured (policy notify: "
                                "socMailbox+sender, teamsWebhookUrl, webhookUrl)")
        return Plan(actions=["send the run summary to the configured channels"])

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        # Fan-out through shared.safety.notify: a failed channel is journaled and reported as
        # partial, never as a failed step (a notification must not fail the run).
        from shared.safety import notify

        # Each delivery's audit event is written with this step's record (one transaction).
        note = notify.run_note(ctx.run, ctx.results)
        deliveries = await notify.send(ctx.services, note, journal=False)
        ok = all(d.ok for d in deliveries)
        return StepResult(step=self.name, status=StepStatus.DONE if ok else StepStatus.PARTIAL,
                          summary=notify.summary(deliveries),
                          data={"deliveries": [{"channel": d.channel, "ok": d.ok,
                                                "detail": d.detail} for d in deliveries]},
                          events=[notify.outcome_event(note, d) for d in deliveries])
