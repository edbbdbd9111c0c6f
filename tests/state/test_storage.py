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
