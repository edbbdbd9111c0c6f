"""Azurite round trip: what the project enqueues is what the Functions host decodes."""

from __future__ import annotations

import base64
import json

from azure.storage.queue.aio import QueueClient

from shared.models import RemediationRequest
from shared.state.storage import create_storage, encode_message


async def test_enqueued_message_reads_back_as_the_host_decodes_it(settings, azurite):
    storage = create_storage(settings)
    body = RemediationRequest(user="o'brien@contoso.com", requestId="r-1").to_message()
    try:
        await storage.enqueue(settings.remediation_queue, body)
        # Read raw, without any decode policy: the host base64-decodes what it finds.
        raw = QueueClient.from_connection_string(azurite.connection_string,
                                                 settings.remediation_queue)
        async with raw:
            got = [m async for m in raw.receive_messages()]
        assert len(got) == 1
        decoded = base64.b64decode(got[0].content).decode("utf-8")
        assert json.loads(decoded) == {"schemaVersion": 1, "user": "o'brien@contoso.com",
                                       "requestId": "r-1", "dryRun": False,
                                       "action": "remediate"}
        assert got[0].content == encode_message(body)
    finally:
        await storage.close()


async def test_the_local_host_creates_each_queue_once_and_again_after_it_was_deleted(
        settings, azurite):
    """Polling asks for a queue's creation the first time only (the Functions host does not
    create its queues on every poll); a queue deleted meanwhile is created on the poll
    after the 404."""
    import function_app
    from devtools.localhost import LocalHost

    creates: list[str] = []

    def queue_hook(request) -> None:
        req = request.http_request
        if req.method == "PUT" and "/messages" not in req.url and "comp=" not in req.url:
            creates.append(req.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])

    storage = create_storage(settings, request_hooks={"queue": queue_hook})
    try:
        host = LocalHost(function_app.app, storage,
                         {"REMEDIATION_QUEUE": settings.remediation_queue})
        for _ in range(5):
            assert await host.poll_once() == 0
        polled = {qf.queue for qf in host.functions}
        assert settings.remediation_queue in polled
        assert sorted(creates) == sorted(polled), creates  # once each, in five polls

        await storage.queue(settings.remediation_queue).delete_queue()
        creates.clear()
        assert await host.poll_once() == 0  # the 404: forgotten
        assert await host.poll_once() == 0  # created again
        assert creates == [settings.remediation_queue]
        props = await storage.queue(settings.remediation_queue).get_queue_properties()
        assert props.name == settings.remediation_queue
    finally:
        await storage.close()
