"""Client access to the mailbox: phones that synced in the risk window (blocked, or wiped
only after an approval) and the client protocols turned off until release."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.errors import InvalidTimestamp
from shared.models import StepResult, StepStatus
from shared.playbook.context import Plan, StepContext
from shared.playbook.registry import Step, Verification, register
from shared.playbook.steps.mailbox import EXCHANGE_ROLE
from shared.playbook.undo import ReleaseContext, Undo, finished_changes
from shared.safety.approvals import store as approvals
from shared.tenant import exchange as exo
from shared.tenant import exchange_permissions as perms
from shared.tenant.exchange_permissions import PROTOCOL_PARAMETERS
from shared.timestamps import parse_time

BLOCKED = "ActiveSyncBlockedDeviceIDs"
DEVICE_KEYS = ("Identity", "DeviceId", "DeviceType", "DeviceModel", "DeviceOS",
               "FriendlyName", "DeviceUserAgent", "ClientType", "FirstSyncTime",
               "DeviceAccessState", "DeviceAccessStateReason")


def _first_sync(device: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(str(device.get("FirstSyncTime") or ""))
    except InvalidTimestamp:
        return None


def describe_device(device: dict[str, Any]) -> dict[str, Any]:
    """What is recorded about a device (enough to recognise it)."""
    return {k: device[k] for k in DEVICE_KEYS if device.get(k) is not None}


async def _new_devices(ctx: StepContext) -> tuple[datetime, list[dict[str, Any]]]:
    """Every partnership of the mailbox with its verdict: `new` (first synced in the window),
    `older`, or `undated`."""
    since = ctx.detected_at - timedelta(days=ctx.policy.mobile_devices.window_days)
    found = []
    for d in await perms.mobile_devices(ctx.exchange, ctx.mailbox_id):
        first = _first_sync(d)
        verdict = "undated" if first is None else "new" if first >= since else "older"
        found.append({"device": describe_device(d), "verdict": verdict})
    return since, found


def _label(device: dict[str, Any]) -> str:
    model = device.get("FriendlyName") or device.get("DeviceModel") or device.get("DeviceType")
    return f"{model} ({device.get('DeviceId')}, first synced {device.get('FirstSyncTime')})"


@register
class BlockMobileDevices(Step):
    """Block the ActiveSync partnerships first synced in the risk window.

    The device ids go on the mailbox's ActiveSyncBlockedDeviceIDs (Set-CASMailbox
    @{Add=...}): the phone can no longer sync this mailbox, and the user's older phones are
    untouched. Outlook mobile and REST clients are not ActiveSync partnerships: they are
    reported, not blocked (revoking sessions and disable_mail_protocols cover them)."""

    name = "block_mobile_devices"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release removes the device ids this run added to the blocked list"
    undo_order = 36
    dry_run_description = ("would block the ActiveSync devices first synced in the policy "
                           "window (older devices untouched)")

    async def plan(self, ctx: StepContext) -> Plan:
        if await ctx.mailbox() is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        since, found = await _new_devices(ctx)
        if not any(f["verdict"] in ("new", "undated") for f in found):
            # nothing to judge: no need for the mailbox's block list (one Exchange call
            # fewer per run; Exchange is what bounds a storm)
            return Plan(nothing=f"no new ActiveSync device since {since.isoformat()}",
                        data={"since": since.isoformat(), "devices": found, "block": [],
                              "blockedBefore": []})
        cas = await perms.cas_mailbox(ctx.exchange, ctx.mailbox_id) or {}
        blocked = {str(x).lower() for x in exo._names(cas.get(BLOCKED))}
        block, report = [], []
        for f in found:
            d = f["device"]
            if f["verdict"] == "undated":
                report.append(f"report {_label(d)}: no first sync time, not judged")
            elif f["verdict"] != "new":
                continue
            elif str(d.get("ClientType", "EAS")).upper() != "EAS":
                report.append(f"report {_label(d)}: a {d.get('ClientType')} client, not an "
                              "ActiveSync partnership (not blockable by device id)")
            elif str(d.get("DeviceId", "")).lower() in blocked:
                continue
            else:
                block.append(d)
        data = {"since": since.isoformat(), "devices": found, "block": block,
                "blockedBefore": sorted(blocked)}
        if not block and not report:
            return Plan(nothing=f"no new ActiveSync device since {since.isoformat()}",
                        data=data)
        return Plan(actions=[f"block {_label(d)}" for d in block] + report, data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        ids = [str(d["DeviceId"]) for d in plan.data["block"]]
        if ids:
            await perms.change_blocked_devices(ctx.exchange, ctx.mailbox_id, add=ids)
        changes = [{"what": "activeSyncBlockedDevice", "deviceId": str(d["DeviceId"]),
                    "device": d, "from": "allowed", "to": "blocked"}
                   for d in plan.data["block"]]
        reported = len(plan.actions) - len(ids)
        summary = f"blocked {len(ids)} device(s)"
        if reported:
            summary += f"; {reported} device(s) reported, not blocked"
        data = {k: plan.data[k] for k in ("since", "devices", "blockedBefore")}
        status = StepStatus.DONE if ids else StepStatus.PARTIAL
        return StepResult(step=self.name, status=status, summary=summary, changes=changes,
                          data=data)

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        ids = [str(c["deviceId"]) for c in result.changes
               if c.get("what") == "activeSyncBlockedDevice"]
        if not ids:
            return None
        cas = await perms.cas_mailbox(ctx.exchange, ctx.mailbox_id) or {}
        blocked = {str(x).lower() for x in exo._names(cas.get(BLOCKED))}
        missing = [f"device {i} not on {BLOCKED}" for i in ids if i.lower() not in blocked]
        return Verification(verified=not missing, differences=missing)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Take the device ids the run added off the blocked list (the others stay)."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") != "activeSyncBlockedDevice":
                continue
            device_id = str(c["deviceId"])

            async def unblock(device_id: str = device_id) -> None:
                await perms.change_blocked_devices(ctx.exchange, ctx.mailbox,
                                                   remove=[device_id])
            items.append(Undo(f"device:{device_id}", f"device {device_id} unblocked",
                              unblock))
        return items


@register
class WipeMobileDevices(Step):
    """Remotely wipe the ActiveSync devices first synced in the risk window (approval only).

    Never automatic: the step acts only when the run holds an approval that names it (the
    policy's `approvalRequiredSteps` lists it by default); without one it is skipped.
    Keep it out of default playbooks. Clear-MobileDevice wipes at the device's next sync;
    `mobileDevices.wipeAccountOnly` (default) removes only the mailbox data."""

    name = "wipe_mobile_devices"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    disruptive = True
    reversible = "cannot be undone: a wiped device's data is gone"
    cannot_undo = ("cannot be undone: a wiped device loses its mailbox data (or everything, "
                   "without wipeAccountOnly) and must be set up again")
    undo_order = 85
    after = ("collect_evidence", "block_mobile_devices")
    dry_run_description = ("would request a remote wipe of the ActiveSync devices first "
                           "synced in the policy window, only after an approval")

    async def plan(self, ctx: StepContext) -> Plan:
        if not ctx.dry_run:
            approval = await approvals.get_approval(ctx.services, ctx.run.run_id)
            if approval is None or approval.state != "approved" \
                    or self.name not in approval.steps:
                return Plan.skipped("never automatic: a remote wipe needs an approval that "
                                    "names wipe_mobile_devices (policy approvalRequiredSteps)")
        if await ctx.mailbox() is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        since, found = await _new_devices(ctx)
        wipe = [f["device"] for f in found if f["verdict"] == "new"
                and str(f["device"].get("ClientType", "EAS")).upper() == "EAS"]
        account_only = ctx.policy.mobile_devices.wipe_account_only
        data = {"since": since.isoformat(), "devices": found, "wipe": wipe,
                "accountOnly": account_only}
        if not wipe:
            return Plan(nothing=f"no new ActiveSync device since {since.isoformat()}",
                        data=data)
        what = "mailbox data on" if account_only else "everything on"
        suffix = " (after an approval)" if ctx.dry_run else ""
        return Plan(actions=[f"wipe {what} {_label(d)}{suffix}" for d in wipe], data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        changes = []
        for d in plan.data["wipe"]:
            await perms.wipe_mobile_device(ctx.exchange, str(d["Identity"]),
                                           account_only=plan.data["accountOnly"])
            changes.append({"what": "mobileDeviceWipe", "deviceId": d.get("DeviceId"),
                            "device": d, "accountOnly": plan.data["accountOnly"],
                            "to": "wipe requested"})
        data = {k: plan.data[k] for k in ("since", "devices", "accountOnly")}
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary=f"remote wipe requested for {len(changes)} device(s)",
                          changes=changes, data=data)


@register
class DisableMailProtocols(Step):
    """Turn off the client protocols the policy lists (default IMAP and POP) until release.

    IMAP and POP sign in with a password alone and keep syncing after a password reset
    for clients that cached a token; the previous value of every flag is recorded first
    (Get-CASMailbox) and a release sets exactly those values back."""

    name = "disable_mail_protocols"
    exchange_permissions = (exo.PERM_EXCHANGE,)
    directory_roles = EXCHANGE_ROLE
    reversible = "release restores each protocol flag to its recorded previous value"
    undo_order = 37
    dry_run_description = ("would turn off the mail protocols the policy lists "
                           "(protocols.disable, default imap and pop)")

    async def plan(self, ctx: StepContext) -> Plan:
        wanted = [PROTOCOL_PARAMETERS[p] for p in ctx.policy.protocols.disable]
        if not wanted:
            return Plan.skipped("no protocol listed in the policy (protocols.disable)")
        cas = await perms.cas_mailbox(ctx.exchange, ctx.mailbox_id)
        if cas is None:
            return Plan.skipped("the user has no Exchange Online mailbox")
        before = {flag: cas.get(flag) for flag in PROTOCOL_PARAMETERS.values()}
        change = [flag for flag in wanted if cas.get(flag) is not False]
        data = {"before": before, "change": change}
        if not change:
            return Plan(nothing=f"{', '.join(wanted)} already off", data=data)
        return Plan(actions=[f"turn off {flag} ({before[flag]} -> False)" for flag in change],
                    data=data)

    async def apply(self, ctx: StepContext, plan: Plan) -> StepResult:
        change = list(plan.data["change"])
        await perms.set_cas_mailbox(ctx.exchange, ctx.mailbox_id,
                                    **{flag: False for flag in change})
        before = {flag: plan.data["before"][flag] for flag in change}
        return StepResult(step=self.name, status=StepStatus.DONE,
                          summary=f"turned off {', '.join(change)}",
                          changes=[{"what": "casProtocols", "from": before,
                                    "to": {flag: False for flag in change}}],
                          data={"before": plan.data["before"]})

    async def verify(self, ctx: StepContext, result: StepResult) -> Verification | None:
        flags = [f for c in result.changes if c.get("what") == "casProtocols"
                 for f in (c.get("to") or {})]
        if not flags:
            return None
        cas = await perms.cas_mailbox(ctx.exchange, ctx.mailbox_id) or {}
        still = [f"{flag} is {cas.get(flag)}" for flag in flags if cas.get(flag) is not False]
        return Verification(verified=not still, differences=still)

    async def undo(self, ctx: ReleaseContext, result: StepResult | None) -> list[Undo]:
        """Set each flag the run turned off back to its recorded value."""
        items: list[Undo] = []
        for c in finished_changes(result):
            if c.get("what") != "casProtocols" or not c.get("from"):
                continue
            values = {str(k): bool(v) for k, v in dict(c["from"]).items() if v is not None}

            async def restore(values: dict[str, bool] = values) -> None:
                await perms.set_cas_mailbox(ctx.exchange, ctx.mailbox, **values)
            shown = ", ".join(f"{k} {v}" for k, v in values.items())
            items.append(Undo("casProtocols", f"mail protocols restored: {shown}", restore))
        return items
