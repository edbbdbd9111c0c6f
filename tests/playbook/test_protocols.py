"""disable_mail_protocols through the real path (queue -> local host -> Azurite + the
emulator over HTTP): the listed protocols go off, the previous values are recorded first,
and a release puts back exactly those values."""

from __future__ import annotations

from typing import Any

from shared.models import RemediationRequest
from shared.playbook.context import StepContext
from shared.playbook.registry import get_step
from shared.tenant.graph.directory import resolve_user
from tests.playbook.conftest import MEGAN, build_services, run_via_queue, writes

STEP = "disable_mail_protocols"
FLAGS = ("ImapEnabled", "PopEnabled", "EwsEnabled", "ActiveSyncEnabled", "MAPIEnabled",
         "OWAEnabled")


def _cas(emulator: Any) -> dict[str, Any]:
    return emulator.tenant.find_user(MEGAN)["mailbox"]["cas"]


async def _with(settings: Any, body: dict[str, Any], **policy: Any) -> Any:
    """Run one request with a policy of its own; returns the services (closed) and run id."""
    from functions import runtime

    svc = build_services(settings, **policy)
    runtime.use_services(svc)
    try:
        await run_via_queue(svc, body)
        rid = ("dry-" if body.get("dryRun") else "") + body["requestId"]
        return (await svc.journal.step_results(rid)).get(STEP), \
            await svc.journal.get_run(rid)
    finally:
        runtime.use_services(None)
        await svc.close()


async def test_listed_protocols_off_and_release_restores_the_previous_values(
        settings, emulator):
    with emulator.tenant.lock:
        _cas(emulator)["PopEnabled"] = False  # already off before the incident
    policy = {"approvalRequiredSteps": [], "protocols": {"disable": ["imap", "pop", "owa"]}}
    result, _ = await _with(settings, {"user": MEGAN, "requestId": "proto-1",
                                       "actions": [STEP]}, **policy)
    assert result.status == "done", result.summary
    cas = _cas(emulator)
    assert {f: cas[f] for f in FLAGS} == {"ImapEnabled": False, "PopEnabled": False,
                                          "EwsEnabled": True, "ActiveSyncEnabled": True,
                                          "MAPIEnabled": True, "OWAEnabled": False}
    assert result.changes == [{"what": "casProtocols",
                               "from": {"ImapEnabled": True, "OWAEnabled": True},
                               "to": {"ImapEnabled": False, "OWAEnabled": False}}]
    assert result.data["before"]["PopEnabled"] is False

    svc = build_services(settings, **policy)
    try:
        ctx = StepContext(services=svc, run=await svc.journal.get_run("proto-1"),
                          request=RemediationRequest(user=MEGAN),
                          user=await resolve_user(svc.graph, MEGAN), dry_run=False,
                          detected_at=result.started_at)
        check = await get_step(STEP).verify(ctx, result)
        assert check is not None and check.verified
        with emulator.tenant.lock:
            _cas(emulator)["OWAEnabled"] = True
        back = await get_step(STEP).verify(ctx, result)
        assert back is not None and back.differences == ["OWAEnabled is True"]
        with emulator.tenant.lock:
            _cas(emulator)["OWAEnabled"] = False
    finally:
        await svc.close()

    await _with(settings, {"user": MEGAN, "action": "release", "runId": "proto-1",
                           "requestId": "release-proto-1"}, **policy)
    cas = _cas(emulator)
    # exactly the previous values: POP stays off, IMAP and OWA come back
    assert {f: cas[f] for f in FLAGS} == {"ImapEnabled": True, "PopEnabled": False,
                                          "EwsEnabled": True, "ActiveSyncEnabled": True,
                                          "MAPIEnabled": True, "OWAEnabled": True}


async def test_default_is_imap_and_pop_and_dry_run_changes_nothing(settings, emulator):
    emulator.clear_log()
    result, _ = await _with(settings, {"user": MEGAN, "requestId": "proto-dry",
                                       "actions": [STEP], "dryRun": True})
    assert result.status == "planned"
    assert result.data["wouldDo"] == ["turn off ImapEnabled (True -> False)",
                                      "turn off PopEnabled (True -> False)"]
    assert writes(emulator) == []
    assert all(_cas(emulator)[f] for f in FLAGS)


async def test_held_for_approval_by_default(settings, emulator):
    _, run = await _with(settings, {"user": MEGAN, "requestId": "proto-held",
                                    "actions": [STEP]})
    assert run.state == "waiting_approval", run.reason
    assert not [w for w in writes(emulator) if w.get("cmdlet") == "Set-CASMailbox"]
    assert _cas(emulator)["ImapEnabled"] is True
