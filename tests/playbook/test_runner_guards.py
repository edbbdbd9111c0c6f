"""Runner guards: one delivery at a time per run, typed transient errors, fail-closed
exclusions, and dry-run ids that never collide with real ones."""

from __future__ import annotations

import asyncio
import json

import pytest
from azure.storage.queue import TextBase64DecodePolicy

from shared.models import RemediationRequest
from shared.playbook.runner import RetryableRunError, run_id_for, run_request
from tests.playbook.conftest import MEGAN, build_services, writes


def _req(**kw) -> RemediationRequest:
    return RemediationRequest.model_validate({"user": MEGAN, **kw})


async def test_two_deliveries_of_one_request_never_act_at_once(services, emulator):
    emulator.configure(latency_ms={"default": 50})
    body = {"requestId": "twin", "actions": ["reset_password", "revoke_sessions"]}
    first, second = await asyncio.gather(run_request(services, _req(**body)),
                                         run_request(services, _req(**body)))
    outcomes = sorted([first.already_done, second.already_done])
    assert outcomes == [False, True]
    patches = [e for e in writes(emulator) if e["method"] == "PATCH"]
    assert len(patches) == 1, "the password was set once"
    queue = services.storage.queues.get_queue_client(
        services.settings.remediation_queue, message_decode_policy=TextBase64DecodePolicy())
    props = await queue.get_queue_properties()
    assert props.approximate_message_count == 1, "the deferred delivery was put back"
    third = await run_request(services, _req(**body))
    assert third.already_done and third.run.state == "finished"


async def test_a_dropped_connection_is_retryable_and_recorded(settings, emulator):
    svc = build_services(settings)
    try:
        emulator.add_fault(method="GET", path_regex=r"^/v1\.0/users$", status="drop",
                           count=None)
        with pytest.raises(RetryableRunError):
            await run_request(svc, _req(requestId="drop-1"), dequeue_count=1)
        run = await svc.journal.get_run("drop-1")
        assert run.state == "running" and "will retry" in run.reason
        with pytest.raises(RetryableRunError):
            await run_request(svc, _req(requestId="drop-1"), dequeue_count=5)
        run = await svc.journal.get_run("drop-1")
        assert run.state == "poisoned" and "maxDequeueCount" in run.reason
    finally:
        await svc.close()


async def test_unverifiable_exclusions_fail_closed(settings, emulator):
    svc = build_services(settings, exclusions={"users": [], "groups": [
        "6a1d9b4f-3c8e-4d52-8f66-1b2c3d4e5f60"]})
    try:
        emulator.add_fault(method="POST", path_regex=r"/checkMemberGroups$", status=403,
                           code="Authorization_RequestDenied", message="denied", count=None)
        out = await run_request(svc, _req(requestId="ex-403"))
        assert out.run.state == "refused" and "could not be verified" in out.run.reason
        assert writes(emulator) == []
    finally:
        await svc.close()


def test_dry_run_ids_never_collide_with_real_ones():
    real = run_id_for(_req(requestId="dry-x"), dry_run=False)
    dry = run_id_for(_req(requestId="x"), dry_run=True)
    assert real != dry and real == "run-dry-x" and dry == "dry-x"
    assert json.loads(_req(requestId="dry-x").to_message())["requestId"] == "dry-x"
