"""block_mobile_devices and wipe_mobile_devices through the real path (queue -> local host
-> Azurite + the emulator over HTTP): the phone first synced after the detection is blocked,
the user's older phone is not, a release unblocks it; a wipe never runs without approval."""

from __future__ import annotations

from typing import Any

from shared.models import RemediationRequest
from shared.playbook.context import StepContext
from shared.playbook.registry import get_step
from shared.safety.approvals import store
from shared.state import clock
from shared.tenant.graph.directory import resolve_user
from shared.timestamps import parse_time
from tests.playbook.conftest import MEGAN, build_services, run_via_queue, writes

DETECTED = "2026-11-25T03:12:44Z"
NEW_PHONE = "SEC1A9F7D03B2E6C"   # first synced 03:27 on the day of the detection
OLD_PHONE = "APPLC39XK2L1N72Q"   # Megan's own iPhone, since May
BLOCK = {"user": MEGAN, "actions": ["block_mobile_devices"], "detectedAt": DETECTED}


def _box(emulator: Any) -> dict[str, Any]:
    return emulator.tenant.find_user(MEGAN)["mailbox"]


def _wipes(emulator: Any) -> dict[str, list[dict[str, Any]]]:
    return {d["deviceId"]: list(d["wipeRequests"]) for d in _box(emulator)["mobileDevices"]}


async def test_new_phone_blocked_old_phone_kept_and_release_unblocks(services, emulator):
    await run_via_queue(services, {**BLOCK, "requestId": "dev-1"})
    result = (await services.journal.step_results("dev-1"))["block_mobile_devices"]
    assert result.status == "done", result.summary
    assert _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] == [NEW_PHONE]
    assert [c["deviceId"] for c in result.changes] == [NEW_PHONE]
    verdicts = {d["device"]["DeviceId"]: d["verdict"] for d in result.data["devices"]}
    assert verdicts == {NEW_PHONE: "new", OLD_PHONE: "older"}
    sent = [w["params"] for w in writes(emulator) if w.get("cmdlet") == "Set-CASMailbox"]
    assert sent == [{"Identity": MEGAN,
                     "ActiveSyncBlockedDeviceIDs": {"Add": [NEW_PHONE]}}]

    run = await services.journal.get_run("dev-1")
    ctx = StepContext(services=services, run=run, request=RemediationRequest(user=MEGAN),
                      user=await resolve_user(services.graph, MEGAN), dry_run=False,
                      detected_at=parse_time(DETECTED))
    check = await get_step("block_mobile_devices").verify(ctx, result)
    assert check is not None and check.verified
    with emulator.tenant.lock:
        _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] = []
    lost = await get_step("block_mobile_devices").verify(ctx, result)
    assert lost is not None and lost.differences == [
        f"device {NEW_PHONE} not on ActiveSyncBlockedDeviceIDs"]
    with emulator.tenant.lock:
        _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] = [NEW_PHONE, "KEEPTHISONE"]

    await run_via_queue(services, {"user": MEGAN, "action": "release", "runId": "dev-1",
                                   "requestId": "release-dev-1"})
    # only the id the run added comes off; an id an admin blocked since stays
    assert _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] == ["KEEPTHISONE"]


async def test_dry_run_changes_nothing(services, emulator):
    emulator.clear_log()
    await run_via_queue(services, {**BLOCK, "requestId": "dev-dry", "dryRun": True})
    result = (await services.journal.step_results("dry-dev-dry"))["block_mobile_devices"]
    assert result.status == "planned"
    assert any(NEW_PHONE in line for line in result.data["wouldDo"])
    assert not any(OLD_PHONE in line for line in result.data["wouldDo"])
    assert writes(emulator) == []
    assert _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] == []


async def test_wipe_waits_for_approval_and_wipes_only_the_new_phone_once_approved(
        services, emulator):
    rid = "dev-wipe"
    await run_via_queue(services, {"user": MEGAN, "requestId": rid, "detectedAt": DETECTED,
                                   "actions": ["block_mobile_devices",
                                               "wipe_mobile_devices"]})
    run = await services.journal.get_run(rid)
    assert run.state == "waiting_approval", run.reason
    assert "wipe_mobile_devices" in run.reason
    assert not [w for w in writes(emulator) if w.get("cmdlet") == "Clear-MobileDevice"]
    assert _wipes(emulator) == {NEW_PHONE: [], OLD_PHONE: []}
    assert _box(emulator)["cas"]["ActiveSyncBlockedDeviceIDs"] == [NEW_PHONE]  # not held

    approval = await store.get_approval(services, rid)
    assert approval is not None and "wipe_mobile_devices" in approval.steps
    await store.transition(services, approval, "approved", decided_by="soc-lead",
                           by_trust="test", when=clock.now())
    await run_via_queue(services, {"user": MEGAN, "action": "resume", "runId": rid,
                                   "requestId": f"resume-{rid}"})
    result = (await services.journal.step_results(rid))["wipe_mobile_devices"]
    assert result.status == "done", result.summary
    wipes = _wipes(emulator)
    assert [w["kind"] for w in wipes[NEW_PHONE]] == ["accountOnly"]
    assert wipes[OLD_PHONE] == []


async def test_wipe_never_runs_even_when_the_policy_does_not_hold_it(settings, emulator):
    from functions import runtime

    svc = build_services(settings, approvalRequiredSteps=[])
    runtime.use_services(svc)
    try:
        await run_via_queue(svc, {"user": MEGAN, "requestId": "dev-nowipe",
                                  "detectedAt": DETECTED, "actions": ["wipe_mobile_devices"]})
        result = (await svc.journal.step_results("dev-nowipe"))["wipe_mobile_devices"]
    finally:
        runtime.use_services(None)
        await svc.close()
    assert result.status == "skipped"
    assert "never automatic" in result.summary
    assert not [w for w in writes(emulator) if w.get("cmdlet") == "Clear-MobileDevice"]
    assert _wipes(emulator) == {NEW_PHONE: [], OLD_PHONE: []}
