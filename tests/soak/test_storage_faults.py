"""Storage faults through the fault proxy (devtools/faultproxy.py) in front of Azurite: the
error shapes the storage SDKs must recognise, and the lease and runner paths where a fault
after the write (the answer lost, the SDK retrying) must not lose a run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from devtools.faultproxy import FaultProxy
from shared.state.journal import Journal
from shared.state.lease import Lease
from shared.state.storage import create_storage
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(120)


class _NoEmulator:
    base_url = "http://127.0.0.1:9"


@pytest.fixture
def proxy(azurite: Any) -> Iterator[FaultProxy]:
    with FaultProxy.for_azurite(azurite, seed=3) as running:
        yield running


def _journal(proxy: FaultProxy) -> Journal:
    settings = make_settings(None, _NoEmulator(), AzureWebJobsStorage=proxy.connection_string)
    return Journal(create_storage(settings), settings.journal_table, settings.evidence_container)


async def test_error_shapes_are_what_the_sdks_parse(proxy: FaultProxy) -> None:
    """ServerBusy as Azure Storage sends it: the SDKs read the code from the body and header
    (and retry it: the third 503 in a row reaches the caller only with retries spent)."""
    journal = _journal(proxy)
    try:
        await journal.ensure()
        proxy.script("503", service="table", method="GET", count=20)
        with pytest.raises(HttpResponseError) as raised:
            await journal.get_item("p", "r")
        assert raised.value.status_code == 503
        assert raised.value.error_code == "ServerBusy"
        assert proxy.fault_counts()["table:503"] >= 2  # the SDK retried before giving up
    finally:
        await journal._storage.close()


async def test_renewal_whose_answer_was_lost_keeps_the_lease(proxy: FaultProxy) -> None:
    """The renewal reaches Table storage but its answer is lost; the SDK resends it with the
    old ETag and gets 412. The lease is still this owner's: renew must say so (before, it
    said "lost", and the run's delivery stopped and let its message go)."""
    journal = _journal(proxy)
    try:
        lease = Lease(journal, "run-x", "lease", 60, owner="me")
        assert await lease.acquire()
        proxy.script("drop_after", service="table", method="PUT", path_regex="lease")
        assert await lease.renew(), "a renewal whose answer was lost counted as a lost lease"
        assert proxy.fault_counts() == {"table:drop_after": 1}
        other = Lease(journal, "run-x", "lease", 60, owner="someone else")
        assert await other.try_acquire() > 0  # still held
        assert await lease.renew()
        await lease.release()
        assert await other.acquire()
        assert not await lease.renew()  # now really lost
    finally:
        await journal._storage.close()


async def test_a_delivery_that_cannot_renew_its_lease_hands_the_request_back(
        proxy: FaultProxy, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Table storage refuses every renewal of the run's lease until it runs out (nobody else
    takes the run over): the delivery stops, and must leave the request on the queue. Before,
    it returned as if done, the host deleted its message, and the run stayed `running`
    with no message left to finish it."""
    import asyncio
    import json

    from shared.playbook import runner
    from shared.playbook.registry import REGISTRY
    from shared.playbook.worker import handle_message
    from tests.playbook.conftest import MEGAN, build_services

    monkeypatch.setattr(runner, "RUN_LEASE_SECONDS", 1.5)  # renewed every 0.5 s
    settings = make_settings(None, emulator, AzureWebJobsStorage=proxy.connection_string)
    services = build_services(settings)
    try:
        await services.journal.ensure()
        await services.storage.ensure_queue(settings.remediation_queue)
        cls = REGISTRY["enable_mailbox_audit"]
        original = cls.plan

        async def slow(self: Any, ctx: Any) -> Any:  # the run outlasts its lease
            await asyncio.sleep(20)
            return await original(self, ctx)

        monkeypatch.setattr(cls, "plan", slow)
        proxy.script("503", service="table", method="PUT", path_regex="RowKey='lease'",
                     count=1000)
        body = {"user": MEGAN, "requestId": "renew-1",
                "actions": ["revoke_sessions", "enable_mailbox_audit"]}
        outcome = await asyncio.wait_for(handle_message(services, json.dumps(body)), 60)
        proxy.configure(enabled=False)
        for fault in proxy._script:
            fault.count = 0
        run = await services.journal.get_run("renew-1")
        assert run is not None
        kinds = [e["kind"] for e in await services.journal.events("renew-1")]
        assert "lease-lost" in kinds, (outcome, kinds)
        if run.state not in runner.TERMINAL_RUN_STATES:
            queue = services.storage.queue(settings.remediation_queue)
            props = await queue.get_queue_properties()
            assert props.approximate_message_count == 1, (
                f"run {run.state} and no message will ever finish it")
    finally:
        await services.close()


async def test_the_last_delivery_failing_to_take_the_run_lease_poisons_the_run(
        emulator: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Table storage refuses the run lease on every delivery (also the lease row riding in
    the run's creating transaction): the host poisons the message after the last one, and
    the run must say so (before, it stayed `running`)."""
    import json

    from shared.playbook.worker import handle_message
    from tests.playbook.conftest import MEGAN, build_services

    services = build_services(make_settings(azurite, emulator))

    async def refused(self: Lease) -> float:
        raise HttpResponseError(message="Server Busy (storage unavailable)")

    monkeypatch.setattr(Lease, "try_acquire", refused)
    monkeypatch.setattr(Lease, "took", lambda self, answers: False)
    body = json.dumps({"user": MEGAN, "requestId": "acquire-1", "actions": ["revoke_sessions"]})
    try:
        for delivery in (1, 5):
            with pytest.raises(HttpResponseError):
                await handle_message(services, body, dequeue_count=delivery)
            run = await services.journal.get_run("acquire-1")
            assert run is not None
            if delivery == 1:
                assert run.state == "running" and "will retry" in run.reason
        assert run.state == "poisoned", run
        assert "maxDequeueCount" in run.reason and "HttpResponseError" in run.reason
    finally:
        await services.close()


async def test_a_storage_blip_inside_a_step_is_retried_not_recorded_as_failed(
        emulator: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evidence upload hits a dropped connection once (the SDK does not resend it): the
    delivery fails and the redelivery finishes the run. Before, the step was recorded
    `failed` ("internal error") and the whole run ended `failed` for a passing blip."""
    from azure.core.exceptions import ServiceRequestError

    from shared.state.journal import Journal as JournalType
    from tests.playbook.conftest import MEGAN, build_services, run_via_queue

    services = build_services(make_settings(azurite, emulator))
    original = JournalType.put_evidence
    calls: list[str] = []

    async def flaky(self: JournalType, run_id: str, name: str, document: Any) -> str:
        calls.append(name)
        if len(calls) == 1:
            raise ServiceRequestError("Server disconnected")
        return await original(self, run_id, name, document)

    monkeypatch.setattr(JournalType, "put_evidence", flaky)
    from functions import runtime

    runtime.use_services(services)
    try:
        stats = await run_via_queue(services, {"user": MEGAN, "requestId": "blip-1",
                                               "actions": ["collect_evidence"]})
        run = await services.journal.get_run("blip-1")
        assert run is not None and run.state == "finished", (run, stats)
        assert stats.failed == 1 and stats.succeeded == 1
    finally:
        runtime.use_services(None)
        await services.close()
